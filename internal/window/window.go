// Package window keeps per-card event-time tumbling windows in Redis: how many payments a card made
// in the window of each payment's own timestamp, counted once per payment id however often the
// payment is delivered.
//
// Each card has one small hash, fd:{<card hash>}, so that all of a card's state lives in one Redis
// Cluster slot and in Redis's compact hash encoding. Its fields are the window counters
// (w<window index>) and a dedupe marker per payment (p<window index>:<8-byte payment hash>) that
// holds the count the payment got. A Lua script reads the marker and, for a new payment, increments
// the counter and writes the marker atomically; a batch's scripts go to Redis in one pipeline. The
// key lives until the end of its newest window plus the allowed lateness plus a margin, and the
// fields of windows that are over are dropped when a card opens a new window, so a card's memory
// is bounded by its payments in the live windows.
package window

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/decision"
)

// Config sets the windows.
type Config struct {
	// Length of a tumbling window, aligned to the epoch (an hour: aligned to the hour).
	Length time.Duration `yaml:"length" env:"LENGTH"`
	// Threshold: a payment whose window count is greater than this is flagged.
	Threshold int64 `yaml:"threshold" env:"THRESHOLD"`
	// AllowedLateness: a payment still counts in its window until this long after the window's end
	// (by the service's clock); later ones are decided without a window, as late events.
	AllowedLateness time.Duration `yaml:"allowed_lateness" env:"ALLOWED_LATENESS"`
	// KeyPrefix starts every key, before the card's hash tag.
	KeyPrefix string `yaml:"key_prefix" env:"KEY_PREFIX"`
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Length < time.Second || time.Hour*24%c.Length != 0:
		return fmt.Errorf("window.length: must be at least 1s and divide a day evenly, got %s", c.Length)
	case c.Threshold < 1:
		return fmt.Errorf("window.threshold: must be at least 1, got %d", c.Threshold)
	case c.AllowedLateness < 0:
		return fmt.Errorf("window.allowed_lateness: must not be negative, got %s", c.AllowedLateness)
	case c.KeyPrefix == "":
		return errors.New("window.key_prefix: must not be empty")
	}
	return nil
}

// expiryMargin keeps a key a little past the time its last window can still be written, so that
// a redelivery at the edge still finds its dedupe marker.
const expiryMargin = 10 * time.Minute

// Event is one payment as the windows see it.
type Event struct {
	PaymentID string
	Card      string
	Time      time.Time // event time
}

// Result is what the windows say about one payment.
type Result struct {
	Window time.Time // start of the payment's window
	Count  int64     // payments of the card in that window, this one included, as first counted
	Late   bool      // too late to count: Count is 0
}

// Store keeps the windows.
type Store struct {
	rdb    redis.UniversalClient
	cfg    Config
	now    func() time.Time
	script *redis.Script
	loaded atomic.Bool // the script was loaded once; NOSCRIPT loads it again
}

// NewStore returns a store on rdb. now is the clock that lateness is judged by.
func NewStore(rdb redis.UniversalClient, cfg Config, now func() time.Time) *Store {
	return &Store{rdb: rdb, cfg: cfg, now: now, script: redis.NewScript(observeScript)}
}

// observeScript counts one payment in its card's window, once.
// KEYS[1] card hash; ARGV[1] window index, ARGV[2] payment hash, ARGV[3] how long the key must
// live at least (ms), ARGV[4] the oldest window index still open. Returns the payment's count.
const observeScript = `
local key = KEYS[1]
local marker = 'p' .. ARGV[1] .. ':' .. ARGV[2]
local seen = redis.call('HGET', key, marker)
if seen then
  return tonumber(seen)
end
local n = redis.call('HINCRBY', key, 'w' .. ARGV[1], 1)
redis.call('HSET', key, marker, n)
if n == 1 then
  local oldest = tonumber(ARGV[4])
  for _, f in ipairs(redis.call('HKEYS', key)) do
    local w = tonumber(string.match(f, '^[wp](%d+)'))
    if w and w < oldest then
      redis.call('HDEL', key, f)
    end
  end
end
local ttl = tonumber(ARGV[3])
if redis.call('PTTL', key) < ttl then
  redis.call('PEXPIRE', key, ttl)
end
return n
`

// Key is the Redis key of a card's windows.
func (s *Store) Key(card string) string {
	sum := sha256.Sum256([]byte(card))
	return s.cfg.KeyPrefix + ":{" + base64.RawURLEncoding.EncodeToString(sum[:9]) + "}"
}

// Observe counts each event in its window and fills out[i] for events[i], in one round trip to
// Redis. Events too late to count are not sent to Redis at all.
func (s *Store) Observe(ctx context.Context, events []Event, out []Result) error {
	if !s.loaded.Load() {
		if err := s.script.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("load window script: %w", err)
		}
		s.loaded.Store(true)
	}
	err := s.observe(ctx, events, out)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The server restarted, or failed over: load the script and go again.
		// Counting is idempotent, so the calls that did run count nothing twice.
		if err := s.script.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("load window script: %w", err)
		}
		err = s.observe(ctx, events, out)
	}
	return err
}

func (s *Store) observe(ctx context.Context, events []Event, out []Result) error {
	now := s.now()
	length := s.cfg.Length
	// The oldest window that can still take a payment: its end plus the lateness is after now.
	oldest := now.Add(-s.cfg.AllowedLateness).Add(-length).Truncate(length)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(events))
	for i, e := range events {
		start := e.Time.Truncate(length)
		out[i] = Result{Window: start}
		end := start.Add(length)
		if !end.Add(s.cfg.AllowedLateness).After(now) {
			out[i].Late = true
			continue
		}
		ph := sha256.Sum256([]byte(e.PaymentID))
		// The TTL is relative to the service's clock, not an instant: Redis judges instants by
		// its own clock, which a replay of old payments (or a test's clock) does not share.
		ttl := end.Add(s.cfg.AllowedLateness + expiryMargin).Sub(now)
		cmds[i] = s.script.EvalSha(ctx, pipe, []string{s.Key(e.Card)},
			s.index(start), ph[:8], ttl.Milliseconds(), s.index(oldest))
	}
	if pipe.Len() == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("observe %d payments: %w", pipe.Len(), err)
	}
	for i, c := range cmds {
		if c == nil {
			continue
		}
		n, err := c.Int64()
		if err != nil {
			return fmt.Errorf("observe payment %d of %d: %w", i, len(events), err)
		}
		out[i].Count = n
	}
	return nil
}

// index numbers the window that starts at start.
func (s *Store) index(start time.Time) int64 { return start.Unix() / int64(s.cfg.Length/time.Second) }

// Counts returns a card's open windows and their counts, newest first.
func (s *Store) Counts(ctx context.Context, card string) (map[time.Time]int64, error) {
	fields, err := s.rdb.HGetAll(ctx, s.Key(card)).Result()
	if err != nil {
		return nil, fmt.Errorf("window counts: %w", err)
	}
	counts := map[time.Time]int64{}
	for f, v := range fields {
		var idx, n int64
		if _, err := fmt.Sscanf(f, "w%d", &idx); err != nil {
			continue
		}
		fmt.Sscan(v, &n)
		counts[time.Unix(idx*int64(s.cfg.Length/time.Second), 0).UTC()] = n
	}
	return counts, nil
}

// Reasons says what a result means for the decision: card_velocity_1h when the count is over the
// threshold, late_event when the payment came too late to count.
func (s *Store) Reasons(r Result) []decision.Reason {
	switch {
	case r.Late:
		return []decision.Reason{{Code: decision.CodeLate, Detail: fmt.Sprintf(
			"event time in the window from %s, which closed more than %s ago: not counted",
			r.Window.UTC().Format(time.RFC3339), s.cfg.AllowedLateness)}}
	case r.Count > s.cfg.Threshold:
		return []decision.Reason{{Code: decision.CodeVelocity, Detail: fmt.Sprintf(
			"%d payments on this card in the %s window from %s, over the limit of %d",
			r.Count, s.cfg.Length, r.Window.UTC().Format(time.RFC3339), s.cfg.Threshold)}}
	}
	return nil
}
