// Package window keeps per-card event-time tumbling windows in Redis: how many payments a card made
// in the window of each payment's own timestamp, counted once per payment id however often the
// payment is delivered.
//
// Layout. A card belongs to one of Config.Buckets small hashes, fd:{<bucket>}: the hash tag keeps
// all of a card's state in one Redis Cluster slot, and sharing a key among some dozen cards spreads
// the ~130 bytes that Redis spends on every key (keyspace and expiry entries, object, name), while
// a small hash stays in Redis's compact listpack encoding. Fields are binary: the window counter
// is <card tag, 6 bytes><window, 2 bytes>; the dedupe marker of a payment is the counter's name
// followed by 6 bytes of the payment id's hash, and holds the count the payment got. Window numbers
// are kept modulo 65536, which is unambiguous because nothing older than a few windows is kept.
//
// A Lua script reads the marker and, for a new payment, increments the counter and writes the
// marker, atomically. A batch is one round trip: one script call for all of it on a single Redis,
// a pipeline of one call per bucket on a Redis Cluster. When a card opens a new
// window, the fields of every window of the bucket that can no longer take payments are dropped,
// so memory is bounded by the payments of the open windows. The key lives until the newest window
// written to it closes, plus the allowed lateness and a margin.
package window

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
	// KeyPrefix starts every key, before the bucket's hash tag.
	KeyPrefix string `yaml:"key_prefix" env:"KEY_PREFIX"`
	// Buckets is how many hashes the cards share. About one per 16 cards active at once keeps
	// each in Redis's compact encoding (hash-max-listpack-entries, 128 by default). Changing it
	// moves cards to other buckets: their open windows start again from zero.
	Buckets int `yaml:"buckets" env:"BUCKETS"`
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Length < time.Second || c.Length%time.Second != 0 || time.Hour*24%c.Length != 0:
		return fmt.Errorf("window.length: must be whole seconds, at least 1s, and divide a day evenly, got %s", c.Length)
	case c.Threshold < 1:
		return fmt.Errorf("window.threshold: must be at least 1, got %d", c.Threshold)
	case c.AllowedLateness < 0:
		return fmt.Errorf("window.allowed_lateness: must not be negative, got %s", c.AllowedLateness)
	case (c.AllowedLateness+expiryMargin)/c.Length+3 >= windowWrap/2:
		return fmt.Errorf("window.allowed_lateness: at most %d windows of %s", windowWrap/2-4, c.Length)
	case c.KeyPrefix == "":
		return errors.New("window.key_prefix: must not be empty")
	case c.Buckets < 1 || c.Buckets > 1<<24:
		return fmt.Errorf("window.buckets: must be from 1 to 16777216, got %d", c.Buckets)
	}
	return nil
}

// maxPerCall bounds the payments of one script call: Redis runs nothing else while a script
// runs (about 8 ms for 500 payments on the benchmark machine), so a batch is cut into calls that
// other clients can come in between. They still travel in one pipeline.
const maxPerCall = 100

// windowWrap: window numbers are stored modulo this.
const windowWrap = 1 << 16

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
	Ahead  bool      // too far ahead of the service's clock to count: Count is 0
}

// Store keeps the windows.
type Store struct {
	rdb     redis.UniversalClient
	cfg     Config
	now     func() time.Time
	script  *redis.Script
	loaded  atomic.Bool // the script was loaded once; NOSCRIPT loads it again
	cluster bool        // a Redis Cluster: one script call per bucket
}

// NewStore returns a store on rdb. now is the clock that lateness is judged by.
func NewStore(rdb redis.UniversalClient, cfg Config, now func() time.Time) *Store {
	_, cluster := rdb.(*redis.ClusterClient)
	return &Store{rdb: rdb, cfg: cfg, now: now, script: redis.NewScript(observeScript), cluster: cluster}
}

// observeScript counts payments in their cards' windows, each once. For payment i: KEYS[i] its
// bucket; ARGV[3i], ARGV[3i+1], ARGV[3i+2] its counter field, its marker field and how long the
// key must live at least (ms), or -1 to only look the marker up (a late payment, which may have
// been counted before it was late). ARGV[1] is the number (mod 65536) of the window that holds
// now, ARGV[2] how many windows back from it are kept. Returns the payments' counts (0: none).
// Several payments a call spread the cost of a call, which is most of a payment's cost in Redis.
const observeScript = `
local now, open = tonumber(ARGV[1]), tonumber(ARGV[2])
local counts, ttls = {}, {}
for i, key in ipairs(KEYS) do
  local field, marker, ttl = ARGV[3 * i], ARGV[3 * i + 1], tonumber(ARGV[3 * i + 2])
  local seen = redis.call('HGET', key, marker)
  if seen then
    counts[i] = tonumber(seen)
  elseif ttl < 0 then
    counts[i] = 0 -- a late payment, only looked up: it was never counted
  else
    local n = redis.call('HINCRBY', key, field, 1)
    redis.call('HSET', key, marker, n)
    if n == 1 then
      for _, f in ipairs(redis.call('HKEYS', key)) do
        if #f == 8 or #f == 14 then
          local hi, lo = string.byte(f, 7, 8)
          local age = (now - (hi * 256 + lo)) % 65536
          if age > open and age < 32768 then
            redis.call('HDEL', key, f)
          end
        end
      end
    end
    counts[i] = n
    if (ttls[key] or 0) < ttl then
      ttls[key] = ttl
    end
  end
end
for key, ttl in pairs(ttls) do
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
return counts
`

// Key is the Redis key of the bucket that holds a card's windows.
func (s *Store) Key(card string) string {
	sum := sha256.Sum256([]byte(card))
	return s.key(&sum)
}

func (s *Store) key(sum *[32]byte) string {
	bucket := binary.BigEndian.Uint32(sum[:4]) % uint32(s.cfg.Buckets)
	return s.cfg.KeyPrefix + ":{" + strconv.FormatUint(uint64(bucket), 10) + "}"
}

// counter is the field of a card's counter for window number w: the card's tag and w mod 65536.
func counter(sum *[32]byte, w int64) []byte {
	f := make([]byte, 8, 14)
	copy(f, sum[4:10])
	binary.BigEndian.PutUint16(f[6:], uint16(w%windowWrap))
	return f
}

// Observe counts each event in its window and fills out[i] for events[i], in one round trip to
// Redis. Events long past their window, or far ahead of the clock, are not sent at all; asked
// reports whether Redis was asked anything.
func (s *Store) Observe(ctx context.Context, events []Event, out []Result) (asked bool, err error) {
	if !s.loaded.Load() {
		if err := s.script.Load(ctx, s.rdb).Err(); err != nil {
			return true, fmt.Errorf("load window script: %w", err)
		}
		s.loaded.Store(true)
	}
	asked, err = s.observe(ctx, events, out)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The server restarted, or failed over: load the script and go again.
		// Counting is idempotent, so the calls that did run count nothing twice.
		if err := s.script.Load(ctx, s.rdb).Err(); err != nil {
			return true, fmt.Errorf("load window script: %w", err)
		}
		asked, err = s.observe(ctx, events, out)
	}
	return asked, err
}

func (s *Store) observe(ctx context.Context, events []Event, out []Result) (bool, error) {
	now := s.now()
	length := s.cfg.Length
	nowIdx := s.index(now.Truncate(length))
	// How many windows back from now's are kept: those that can still take payments, and those
	// whose markers a redelivery may still look up (the lateness plus the margin).
	open := nowIdx - s.index(now.Add(-s.cfg.AllowedLateness-expiryMargin).Truncate(length))
	// How far ahead of the clock an event time may be. Further ahead is a wrong clock: counting
	// it would keep the key for as long, and wrap the stored window numbers.
	ahead := now.Add(length + expiryMargin)

	// One script call takes the payments of one bucket on a Redis Cluster (a script's keys must
	// share a slot), and all of the batch's on a single Redis.
	type call struct {
		keys []string
		args []any
		idx  []int // the events it carries
	}
	var calls []*call
	byKey := map[string]*call{}
	for i, e := range events {
		start := e.Time.Truncate(length)
		out[i] = Result{Window: start}
		end := start.Add(length)
		if e.Time.After(ahead) {
			out[i].Ahead = true
			continue
		}
		late := !end.Add(s.cfg.AllowedLateness).After(now)
		if late && !end.Add(s.cfg.AllowedLateness+expiryMargin).After(now) {
			out[i].Late = true // its marker, if any, is gone: it cannot have been counted since
			continue
		}
		card := sha256.Sum256([]byte(e.Card))
		pay := sha256.Sum256([]byte(e.PaymentID))
		key := s.key(&card)
		field := counter(&card, s.index(start))
		marker := append(field[:8:14], pay[:6]...)
		// The TTL is relative to the service's clock, not an instant: Redis judges instants by
		// its own clock, which a replay of old payments (or a test's clock) does not share.
		ttl := end.Add(s.cfg.AllowedLateness + expiryMargin).Sub(now)
		group := ""
		if s.cluster {
			group = key
		}
		c := byKey[group]
		if c == nil || len(c.idx) == maxPerCall {
			c = &call{args: []any{nowIdx % windowWrap, open}}
			byKey[group] = c
			calls = append(calls, c)
		}
		ms := ttl.Milliseconds()
		if late {
			ms = -1 // a redelivery of a payment counted before the window closed gets its count back
		}
		c.keys = append(c.keys, key)
		c.args = append(c.args, field, marker, ms)
		c.idx = append(c.idx, i)
	}
	if len(calls) == 0 {
		return false, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for k, c := range calls {
		cmds[k] = s.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return true, fmt.Errorf("observe %d payments: %w", len(events), err)
	}
	for k, c := range calls {
		counts, err := cmds[k].Int64Slice()
		if err != nil || len(counts) != len(c.idx) {
			return true, fmt.Errorf("observe %d payments: %d counts back, %v", len(c.idx), len(counts), err)
		}
		for j, i := range c.idx {
			out[i].Count = counts[j]
			out[i].Late = counts[j] == 0
		}
	}
	return true, nil
}

// index numbers the window that starts at start.
func (s *Store) index(start time.Time) int64 { return start.Unix() / int64(s.cfg.Length/time.Second) }

// Counts returns the counts of a card's windows that Redis still holds, by window start.
func (s *Store) Counts(ctx context.Context, card string) (map[time.Time]int64, error) {
	sum := sha256.Sum256([]byte(card))
	fields, err := s.rdb.HGetAll(ctx, s.key(&sum)).Result()
	if err != nil {
		return nil, fmt.Errorf("window counts: %w", err)
	}
	nowIdx := s.index(s.now().Truncate(s.cfg.Length))
	counts := map[time.Time]int64{}
	for f, v := range fields {
		if len(f) != 8 || f[:6] != string(sum[4:10]) {
			continue // another card's, or a marker
		}
		// The window number is stored mod 65536; the one meant is the nearest to now's.
		w := int64(binary.BigEndian.Uint16([]byte(f[6:])))
		back := (nowIdx - w) % windowWrap
		if back < 0 {
			back += windowWrap
		}
		if back >= windowWrap/2 {
			back -= windowWrap
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("window counts: field of %s holds %q", card, v)
		}
		counts[time.Unix((nowIdx-back)*int64(s.cfg.Length/time.Second), 0).UTC()] = n
	}
	return counts, nil
}

// Reasons says what a result means for the decision: card_velocity_1h when the count is over the
// threshold, late_event when the payment came too late to count.
func (s *Store) Reasons(r Result) []decision.Reason {
	switch {
	case r.Ahead:
		return []decision.Reason{{Code: decision.CodeLate, Detail: fmt.Sprintf(
			"event time in the window from %s, more than a window ahead of the service's clock: not counted",
			r.Window.UTC().Format(time.RFC3339))}}
	case r.Late:
		return []decision.Reason{{Code: decision.CodeLate, Detail: fmt.Sprintf(
			"event time in the window from %s, which closed more than %s ago: not counted",
			r.Window.UTC().Format(time.RFC3339), short(s.cfg.AllowedLateness))}}
	case r.Count > s.cfg.Threshold:
		return []decision.Reason{{Code: decision.CodeVelocity, Detail: fmt.Sprintf(
			"%d payments on this card in the %s window from %s, over the limit of %d",
			r.Count, short(s.cfg.Length), r.Window.UTC().Format(time.RFC3339), s.cfg.Threshold)}}
	}
	return nil
}

// short writes a duration without its zero parts: 1h, not 1h0m0s.
func short(d time.Duration) string {
	str := d.String()
	if strings.HasSuffix(str, "m0s") {
		str = strings.TrimSuffix(str, "0s")
	}
	if strings.HasSuffix(str, "h0m") {
		str = strings.TrimSuffix(str, "0m")
	}
	return str
}
