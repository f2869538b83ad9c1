// Package window keeps per-card state in Redis: the event-time tumbling window count of each
// payment, counted once per payment id however often the payment is delivered, and the
// aggregates of a card's and a merchant's history that the model uses.
//
// Layout. A card belongs to one of Config.Buckets hashes, <prefix>:{<bucket>}, where it has one
// field, its 6-byte tag, holding its history: an entry of 24 bytes for every payment counted in
// the last 30 days, in the order counted (see entrySize). The hash tag keeps all of a card's
// state in one Redis Cluster slot, and sharing a key among cards spreads the ~130 bytes Redis
// spends on every key. The entry holds the payment id's tag, which is the dedupe marker: a
// payment whose tag is in its card's history is not counted again, and gets back the window
// count and aggregates it got the first time, since both are computed from the entries before
// its own. A merchant's key, <prefix>:m:{<merchant tag>}, holds its payment counts for the last
// 32 days, a day a slot.
//
// A Lua script looks every payment up in its card's history, appends the new ones, and counts
// them for their merchants, atomically; it returns the histories and the merchants' days, from
// which Go computes the counts and the aggregates. A batch is one round trip: one script call
// per 100 cards, pipelined, on a single Redis; one per bucket and one per merchant on a Redis
// Cluster, whose scripts may only touch keys of one slot (there, a redelivered payment can count
// twice for its merchant; nothing of the card's can). Entries older than 30 days and the
// allowed lateness are dropped when their card is written; a card with no such entry is
// dropped when its bucket is swept, once a day by each instance that writes to it; every key
// expires after 30 days without writes.
package window

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

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
	// Buckets is how many hashes the cards share. Changing it moves cards to other buckets: their
	// history starts again from nothing.
	Buckets int `yaml:"buckets" env:"BUCKETS"`
	// MaxPaymentsPerCard bounds a card's history (24 bytes a payment): past it, the oldest
	// payments are forgotten, and the aggregates undercount.
	MaxPaymentsPerCard int `yaml:"max_payments_per_card" env:"MAX_PAYMENTS_PER_CARD"`
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
	case c.AllowedLateness > 7*24*time.Hour:
		return fmt.Errorf("window.allowed_lateness: at most 168h, got %s", c.AllowedLateness)
	case c.KeyPrefix == "":
		return errors.New("window.key_prefix: must not be empty")
	case c.Buckets < 1 || c.Buckets > 1<<24:
		return fmt.Errorf("window.buckets: must be from 1 to 16777216, got %d", c.Buckets)
	case c.MaxPaymentsPerCard < 16 || c.MaxPaymentsPerCard > 1<<20:
		return fmt.Errorf("window.max_payments_per_card: must be from 16 to 1048576, got %d", c.MaxPaymentsPerCard)
	}
	return nil
}

// maxPerCall bounds the cards of one script call: Redis runs nothing else while a script runs,
// so a batch is cut into calls that other clients can come in between. They still travel in one
// pipeline.
const maxPerCall = 100

// expiryMargin keeps state a little past the time it can last be needed, for clocks that differ.
const expiryMargin = 10 * time.Minute

// Event is one payment as the windows see it.
type Event struct {
	PaymentID string
	Card      string
	Time      time.Time // event time
	Amount    decimal.Decimal
	// Optional: "" when the payment does not say.
	Country, Merchant, Device string
}

// Result is what the windows say about one payment.
type Result struct {
	Window time.Time // start of the payment's window
	Count  int64     // payments of the card in that window, this one included, as first counted
	Late   bool      // too late to count: Count is 0
	Ahead  bool      // too far ahead of the service's clock to count: Count is 0
	Aggregates
}

// Store keeps the windows.
type Store struct {
	rdb     redis.UniversalClient
	cfg     Config
	now     func() time.Time
	script  *redis.Script
	loaded  atomic.Bool // the script was loaded once; NOSCRIPT loads it again
	cluster bool        // a Redis Cluster: one script call per slot
	swept   sweeps
}

// NewStore returns a store on rdb. now is the clock that lateness is judged by.
func NewStore(rdb redis.UniversalClient, cfg Config, now func() time.Time) *Store {
	_, cluster := rdb.(*redis.ClusterClient)
	return &Store{rdb: rdb, cfg: cfg, now: now, script: redis.NewScript(observeScript), cluster: cluster,
		swept: sweeps{bits: make([]atomic.Uint64, cfg.Buckets/64+1)}}
}

// sweeps remembers the buckets this process swept today.
type sweeps struct {
	day  atomic.Int64
	bits []atomic.Uint64
}

// due reports whether bucket b is yet to be swept today, and takes it if so.
func (w *sweeps) due(b uint32, today int64) bool {
	if old := w.day.Load(); old != today && w.day.CompareAndSwap(old, today) {
		for i := range w.bits {
			w.bits[i].Store(0)
		}
	}
	bit := uint64(1) << (b % 64)
	return w.bits[b/64].Or(bit)&bit == 0
}

// Key is the Redis key of the bucket that holds a card's history.
func (s *Store) Key(card string) string {
	sum := sha256.Sum256([]byte(card))
	key, _ := s.key(&sum)
	return key
}

func (s *Store) key(sum *[32]byte) (string, uint32) {
	bucket := binary.BigEndian.Uint32(sum[:4]) % uint32(s.cfg.Buckets)
	return s.cfg.KeyPrefix + ":{" + strconv.FormatUint(uint64(bucket), 10) + "}", bucket
}

func (s *Store) merchantKey(merchant string) string {
	sum := sha256.Sum256([]byte(merchant))
	return s.cfg.KeyPrefix + ":m:{" + hex.EncodeToString(sum[:8]) + "}"
}

// Observe counts each event in its window and fills out[i] for events[i], in one round trip to
// Redis. asked reports whether Redis was asked anything.
func (s *Store) Observe(ctx context.Context, events []Event, out []Result) (asked bool, err error) {
	if len(events) == 0 {
		return false, nil
	}
	if !s.loaded.Load() {
		if err := s.script.Load(ctx, s.rdb).Err(); err != nil {
			return true, fmt.Errorf("load window script: %w", err)
		}
		s.loaded.Store(true)
	}
	err = s.observe(ctx, events, out)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The server restarted, or failed over: load the script and go again.
		// Counting is idempotent, so the calls that did run count nothing twice.
		if err := s.script.Load(ctx, s.rdb).Err(); err != nil {
			return true, fmt.Errorf("load window script: %w", err)
		}
		err = s.observe(ctx, events, out)
	}
	return true, err
}

// A call is one script call: its cards, and the merchants of their payments.
type call struct {
	cards     []*cardCall
	byCard    map[string]*cardCall
	merchants []string       // keys
	byKey     map[string]int // merchant key -> 1-based index
	days      [][]int64      // per merchant: days counted unconditionally (Redis Cluster)
}

type cardCall struct {
	key, field string
	sweep      bool
	events     []int    // indexes into the batch
	entries    [][]byte // their entries
	modes      []int    // -1 look up only; 0 count; m > 0 count, and for merchant m
}

func (c *call) merchant(key string) int {
	m, ok := c.byKey[key]
	if !ok {
		c.merchants = append(c.merchants, key)
		c.days = append(c.days, nil)
		m = len(c.merchants)
		c.byKey[key] = m
	}
	return m
}

func newCall() *call { return &call{byCard: map[string]*cardCall{}, byKey: map[string]int{}} }

func (s *Store) observe(ctx context.Context, events []Event, out []Result) error {
	now := s.now()
	length := s.cfg.Length
	// How far ahead of the clock an event time may be and still count: further ahead is a
	// wrong clock, and counting it would keep state for as long.
	ahead := now.Add(length + expiryMargin)
	today := now.Unix() / day

	var calls []*call
	bySlot := map[string]*call{} // Redis Cluster: the call of each bucket
	var single *call
	var merchantCalls []*call // Redis Cluster: a call per merchant
	byMerchant := map[string]*call{}
	for i := range events {
		e := &events[i]
		start := e.Time.Truncate(length)
		out[i] = Result{Window: start}
		mode := 0
		switch end := start.Add(length); {
		case e.Time.After(ahead):
			out[i].Ahead = true
			mode = -1
		case !end.Add(s.cfg.AllowedLateness).After(now):
			mode = -1 // late: counted only if it was counted before it was late
		}
		cardSum := sha256.Sum256([]byte(e.Card))
		key, bucket := s.key(&cardSum)
		var c *call
		if s.cluster {
			if c = bySlot[key]; c == nil {
				c = newCall()
				bySlot[key] = c
				calls = append(calls, c)
			}
		} else {
			if single == nil || (len(single.cards) == maxPerCall && single.byCard[e.Card] == nil) {
				single = newCall()
				calls = append(calls, single)
			}
			c = single
		}
		cc := c.byCard[e.Card]
		if cc == nil {
			cc = &cardCall{key: key, field: string(cardSum[4:10]), sweep: s.swept.due(bucket, today)}
			c.byCard[e.Card] = cc
			c.cards = append(c.cards, cc)
		}
		pid := sha256.Sum256([]byte(e.PaymentID))
		if e.Merchant != "" {
			mkey := s.merchantKey(e.Merchant)
			if s.cluster {
				mc := byMerchant[mkey]
				if mc == nil {
					mc = newCall()
					mc.merchant(mkey)
					byMerchant[mkey] = mc
					merchantCalls = append(merchantCalls, mc)
				}
				if mode == 0 {
					mc.days[0] = append(mc.days[0], e.Time.Unix()/day)
				}
			} else if m := c.merchant(mkey); mode == 0 {
				mode = m
			}
		}
		cc.events = append(cc.events, i)
		cc.entries = append(cc.entries, entry(e, &pid))
		cc.modes = append(cc.modes, mode)
	}
	calls = append(calls, merchantCalls...)

	cutoff := now.Add(-month*time.Second - s.cfg.AllowedLateness - expiryMargin).Unix()
	ttl := (month*time.Second + s.cfg.AllowedLateness + length + 2*expiryMargin).Milliseconds()
	merchantTTL := ((merchantDays+1)*day*time.Second + s.cfg.AllowedLateness).Milliseconds()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for k, c := range calls {
		keys := make([]string, 0, len(c.cards)+len(c.merchants))
		args := []any{cutoff, s.cfg.MaxPaymentsPerCard, ttl, merchantTTL, len(c.cards)}
		for _, cc := range c.cards {
			keys = append(keys, cc.key)
			sweep := 0
			if cc.sweep {
				sweep = 1
			}
			args = append(args, cc.field, len(cc.entries), sweep)
			for j, en := range cc.entries {
				args = append(args, en, cc.modes[j])
			}
		}
		args = append(args, len(c.merchants))
		for m, key := range c.merchants {
			keys = append(keys, key)
			args = append(args, len(c.days[m]))
			for _, d := range c.days[m] {
				args = append(args, d)
			}
		}
		cmds[k] = s.script.EvalSha(ctx, pipe, keys, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("observe %d payments: %w", len(events), err)
	}

	lengthSec := int64(length / time.Second)
	merchants := map[string]string{}
	for k, c := range calls {
		res, err := cmds[k].Slice()
		if err != nil || len(res) != len(c.cards)+len(c.merchants) {
			return fmt.Errorf("observe %d payments: %d results for %d cards and %d merchants, %v",
				len(events), len(res), len(c.cards), len(c.merchants), err)
		}
		for m, key := range c.merchants {
			blob, _ := res[len(c.cards)+m].(string)
			merchants[key] = blob
		}
		for j, cc := range c.cards {
			history, _ := res[j].(string)
			for n, i := range cc.events {
				agg, count, found := read(history, cc.entries[n], lengthSec, cutoff)
				out[i].Aggregates = agg
				switch {
				case out[i].Ahead:
				case found:
					out[i].Count = count
				default:
					out[i].Late = true
				}
			}
		}
	}
	for i := range events {
		if events[i].Merchant != "" {
			merchantCounts(&out[i].Aggregates, merchants[s.merchantKey(events[i].Merchant)], events[i].Time)
		}
	}
	return nil
}

// Counts returns the counts of a card's windows in its history, by window start.
func (s *Store) Counts(ctx context.Context, card string) (map[time.Time]int64, error) {
	sum := sha256.Sum256([]byte(card))
	key, _ := s.key(&sum)
	history, err := s.rdb.HGet(ctx, key, string(sum[4:10])).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("window counts: %w", err)
	}
	counts := map[time.Time]int64{}
	for off := 0; off+entrySize <= len(history); off += entrySize {
		t := time.Unix(int64(u32(history, off)), 0).UTC()
		counts[t.Truncate(s.cfg.Length)]++
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
