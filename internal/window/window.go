// Package window keeps per-card state in Redis: the event-time tumbling window count of each
// payment, counted once per payment id however often the payment is delivered, and the
// aggregates of a card's and a merchant's history that the model uses.
//
// Layout. A card belongs to one of Config.Buckets hashes, <prefix>:{<bucket>} (on a Redis Cluster
// <prefix>:{<shard>}:<bucket>, one of 128 shards), where its history is kept: an entry of 24 bytes
// for every payment counted in the last 30 days, in the order counted (see entrySize). A history
// of up to 20 entries is the field named by the card's 6-byte tag; a longer one is a head in that
// field (a short header and the newest entries) and sealed chunks of 21 entries in a list of its
// own beside the bucket (see cardLua). The hash tag keeps all of a card's state in one Redis
// Cluster slot, and sharing a key among cards spreads the ~130 bytes Redis spends on every key. The
// entry holds the payment id's tag, which is the dedupe marker: a payment whose tag is in its
// card's history is not counted again, and gets back the window count and aggregates it got the
// first time, since both are computed from the entries before its own.
//
// A batch is one round trip: one script call per 100 cards (per shard on a Redis Cluster, whose
// scripts may only touch keys of one slot), pipelined. A short history comes back whole. Of a long
// one, each process keeps a copy (Config.CacheMB), finds the new payments in it, and sends them
// with the header its copy has; when the head in Redis still has that header, the script appends
// them to the head (sealing a chunk when it fills), so that what a card costs Redis does not grow
// with its history. When it has not (a card new to the process, forgotten, or written by another
// instance since, after a rebalance), the script looks every payment up in the whole history and
// returns it. Go computes the counts and the aggregates from the history, a long one through an
// index kept with the copy (see index). Sealed chunks are dropped whole once all their entries are
// older than 30 days and the allowed lateness (or past Config.MaxPaymentsPerCard); a card with no
// newer entry is dropped when its bucket is swept, once a day by each instance that writes to it;
// a bucket expires 31 days after it was last swept or a card joined it.
//
// Merchants. The script also pushes, for every new payment with a merchant, an item <day,
// merchant tag> onto a pending list (<prefix>:pending; on a Redis Cluster the shard's,
// <prefix>:{<shard>}:p), in the same atomic step; Fold (every second, any instance) adds the items
// up into the merchant's hash <prefix>:m:{<tag>}, a field a day, in one script on a single Redis
// and in three idempotent steps on a Redis Cluster (see takeScript). A payment's merchant counts
// are of whole days before its own, from a snapshot per merchant and day that snapshotScript
// takes, in the same round trip, for the first payment of that day at the merchant and returns
// unchanged to every later one (so a redelivered payment gets the counts it got the first time);
// the store keeps the snapshots it has read, and asks only for new ones. Payments of the days
// before that were not read and folded yet when the snapshot was taken (the last fold interval,
// and whatever the stream had not read) are missing from it.
package window

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	// AllowedLateness: a payment still counts in its window until this long after the window's end
	// (by the service's clock); later ones are decided without a window, as late events.
	AllowedLateness time.Duration `yaml:"allowed_lateness" env:"ALLOWED_LATENESS"`
	// KeyPrefix starts every key, before the bucket's hash tag.
	KeyPrefix string `yaml:"key_prefix" env:"KEY_PREFIX"`
	// Buckets is how many hashes the cards share. Changing it moves cards to other buckets: their
	// history starts again from nothing.
	Buckets int `yaml:"buckets" env:"BUCKETS"`
	// MaxPaymentsPerCard bounds a card's history (24 bytes a payment): past it, the oldest
	// payments are forgotten, and the aggregates undercount. Payments that may still be
	// redelivered into their window are kept past it, up to four times it; past that, a card's
	// redelivered payments may count again.
	MaxPaymentsPerCard int `yaml:"max_payments_per_card" env:"MAX_PAYMENTS_PER_CARD"`
	// CacheMB is the memory, in MiB, for the copies of card histories that a process keeps so
	// that a batch sends Redis only its new payments; 0 means 256. A card whose copy is not
	// kept (never seen, forgotten, or written by another process since) is read whole once.
	CacheMB int `yaml:"cache_mb" env:"CACHE_MB"`
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Length < time.Second || c.Length%time.Second != 0 || time.Hour*24%c.Length != 0:
		return fmt.Errorf("window.length: must be whole seconds, at least 1s, and divide a day evenly, got %s", c.Length)
	case c.AllowedLateness < 0:
		return fmt.Errorf("window.allowed_lateness: must not be negative, got %s", c.AllowedLateness)
	case c.AllowedLateness > 7*24*time.Hour:
		return fmt.Errorf("window.allowed_lateness: at most 168h, got %s", c.AllowedLateness)
	case c.KeyPrefix == "":
		return errors.New("window.key_prefix: must not be empty")
	case c.Buckets < 1 || c.Buckets > 1<<24:
		return fmt.Errorf("window.buckets: must be from 1 to 16777216, got %d", c.Buckets)
	case c.MaxPaymentsPerCard < 256 || c.MaxPaymentsPerCard > 1<<18:
		return fmt.Errorf("window.max_payments_per_card: must be from 256 to 262144, got %d", c.MaxPaymentsPerCard)
	case c.CacheMB < 0 || c.CacheMB > 1<<20:
		return fmt.Errorf("window.cache_mb: must be from 0 (the default, 256) to 1048576, got %d", c.CacheMB)
	}
	return nil
}

// maxPerCall bounds the cards of one script call: Redis runs nothing else while a script runs,
// so a batch is cut into calls that other clients can come in between. They still travel in one
// pipeline.
const maxPerCall = 100

// expiryMargin keeps state a little past the time it can last be needed, for clocks that differ.
const expiryMargin = 10 * time.Minute

// chunkEntries is how many entries a sealed chunk of a card's history holds: with its time, 508
// bytes, which Redis's allocator keeps in its 512-byte size class. The open entries, fewer than this, are
// rewritten with every payment of the card.
const chunkEntries = 21

// headerSize is the size of a card's header (see cardLua).
const headerSize = 12

// hardCap: a card's history keeps up to this many times Config.MaxPaymentsPerCard entries when
// the ones past the cap can still be redelivered into their window; past it, even those go.
const hardCap = 4

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
	rdb      redis.UniversalClient
	cfg      Config
	now      func() time.Time
	script   *redis.Script
	fold     *redis.Script
	label    *redis.Script
	hist     *redis.Script
	snapshot *redis.Script
	take     *redis.Script // a Redis Cluster's fold: take, apply, done
	apply    *redis.Script
	done     *redis.Script
	loaded   atomic.Bool // the scripts were loaded once; NOSCRIPT loads them again
	cluster  bool        // a Redis Cluster: one script call per shard, and a fold in three steps
	swept    sweeps
	epoch    epoch
	snaps    snapshotCache
	cards    *cardCache
	fast     atomic.Int64 // cards appended to as this process's copy had them
	whole    atomic.Int64 // cards read whole
}

// Reads reports how many times a card's new payments were appended as this process's copy of its
// history had it (fast), and how many times its history was read whole: the card was not in the
// copies, or another process had written to it since, or Redis had lost it.
func (s *Store) Reads() (fast, whole int64) { return s.fast.Load(), s.whole.Load() }

// snapshotCache keeps the merchant snapshots this process has read: a snapshot never changes once
// taken, so a batch asks Redis only for the ones it has not seen. Forgotten all at once when full,
// and when Redis is found to have lost its data (the snapshots there are gone too).
type snapshotCache struct {
	mu sync.RWMutex // every payment with a merchant reads; a merchant's first of a day writes
	m  map[merchantDay]*merchantCounts
}

type merchantDay struct {
	merchant string
	day      int64
}

type merchantCounts struct {
	count1d, count7d, count30d, fraud30d int64
	delayed                              MerchantDelayed
}

// maxCachedSnapshots bounds the snapshot cache: about 150 bytes each.
const maxCachedSnapshots = 500_000

func (c *snapshotCache) get(k merchantDay) *merchantCounts {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.m[k]
}

func (c *snapshotCache) put(k merchantDay, v merchantCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCachedSnapshots {
		c.m = map[merchantDay]*merchantCounts{}
	}
	c.m[k] = &v
}

func (c *snapshotCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

// epoch tells that Redis lost its data. The key <prefix>:epoch holds a random value, written by
// the first instance that finds it missing; every batch reads it in its round trip (refreshing its
// TTL), and an instance that finds it missing or changed since it last read it counts a loss.
type epoch struct {
	value  atomic.Pointer[string] // as last read; nil before the first batch
	losses atomic.Int64
	last   atomic.Int64 // Unix nanoseconds of the last loss found
}

// Losses reports how many times this store found that Redis had lost its data, and when it last
// did. A Redis that comes back empty while no instance runs looks like a first start, and is not
// counted.
func (s *Store) Losses() (int64, time.Time) {
	n := s.epoch.losses.Load()
	if n == 0 {
		return 0, time.Time{}
	}
	return n, time.Unix(0, s.epoch.last.Load()).UTC()
}

func (s *Store) epochKey() string { return s.cfg.KeyPrefix + ":epoch" }

// checkEpoch compares the epoch a batch read (nil: missing) with known, the one last read when the
// batch was sent, and writes a new one if it is missing. A loss counts only for the batch that
// moves the store from known to the new epoch: batches of other partitions that were in flight
// across the loss, on either side of it, count nothing and change nothing.
func (s *Store) checkEpoch(ctx context.Context, known, read *string) error {
	if read != nil && known != nil && *read == *known {
		return nil
	}
	if read == nil {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("new epoch: %w", err)
		}
		// Another instance may have written one since: SET NX, then read whichever won.
		if err := s.rdb.SetNX(ctx, s.epochKey(), hex.EncodeToString(b[:]), s.ttl()).Err(); err != nil {
			return fmt.Errorf("write epoch: %w", err)
		}
		v, err := s.rdb.Get(ctx, s.epochKey()).Result()
		if err != nil {
			return fmt.Errorf("read epoch: %w", err)
		}
		if known != nil && v == *known {
			return nil // back as it was (a replica, or the data reloaded): nothing was lost
		}
		read = &v
	}
	if known != nil && s.epoch.value.CompareAndSwap(known, read) {
		s.snaps.clear()
		s.cards.clear()
		s.epoch.last.Store(s.now().UnixNano())
		s.epoch.losses.Add(1)
		return nil
	}
	s.epoch.value.CompareAndSwap(nil, read) // the first batch: whatever is there is the epoch
	return nil
}

// NewStore returns a store on rdb. now is the clock that lateness is judged by.
func NewStore(rdb redis.UniversalClient, cfg Config, now func() time.Time) *Store {
	_, cluster := rdb.(*redis.ClusterClient)
	mb := cfg.CacheMB
	if mb == 0 {
		mb = 256
	}
	return &Store{rdb: rdb, cfg: cfg, now: now, cluster: cluster,
		script: redis.NewScript(observeScript), fold: redis.NewScript(foldScript), label: redis.NewScript(labelScript),
		hist: redis.NewScript(historyScript), snapshot: redis.NewScript(snapshotScript),
		take: redis.NewScript(takeScript), apply: redis.NewScript(applyScript), done: redis.NewScript(doneScript), swept: sweeps{bits: make([]atomic.Uint64, cfg.Buckets/64+1)},
		cards: newCardCache(int64(mb) << 20)}
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

// undo gives back bucket b's sweep of today.
func (w *sweeps) undo(b uint32) { w.bits[b/64].And(^(uint64(1) << (b % 64))) }

// Key is the Redis key of the bucket that holds a card's history.
func (s *Store) Key(card string) string {
	sum := sha256.Sum256([]byte(card))
	key, _ := s.key(&sum)
	return key
}

// clusterShards: on a Redis Cluster, the card buckets share this many hash tags, each with its
// own pending list of merchant items (a script reaches the keys of one slot only).
const clusterShards = 128

// key is the bucket of a card, by the SHA-256 of its id: <prefix>:{<bucket>}, or on a Redis
// Cluster <prefix>:{<shard>}:<bucket>.
func (s *Store) key(sum *[32]byte) (string, uint32) {
	bucket := binary.BigEndian.Uint32(sum[:4]) % uint32(s.cfg.Buckets)
	b := strconv.FormatUint(uint64(bucket), 10)
	if s.cluster {
		return s.cfg.KeyPrefix + ":{" + strconv.Itoa(int(bucket%clusterShards)) + "}:" + b, bucket
	}
	return s.cfg.KeyPrefix + ":{" + b + "}", bucket
}

// pendingKey is the list of merchant items that a bucket's new payments go to: one for all, or on
// a Redis Cluster one per shard, <prefix>:{<shard>}:p (beside it, :f holds the items a fold took
// and is adding up, and :seq numbers the folds).
func (s *Store) pendingKey(bucket uint32) string {
	if s.cluster {
		return s.shardKey(int(bucket%clusterShards), "p")
	}
	return s.cfg.KeyPrefix + ":pending"
}

func (s *Store) shardKey(shard int, name string) string {
	return s.cfg.KeyPrefix + ":{" + strconv.Itoa(shard) + "}:" + name
}

// probeScript writes a short-lived key from a script, as the stream's calls do.
var probeScript = redis.NewScript(`return redis.call('SET', KEYS[1], '1', 'PX', 10000)`)

// Probe checks that Redis takes the stream's kind of call: a script that writes. A PING is not
// enough: a full Redis (noeviction), a read-only replica or a user without scripts answers it.
func (s *Store) Probe(ctx context.Context) error {
	if err := probeScript.Run(ctx, s.rdb, []string{s.cfg.KeyPrefix + ":{probe}"}).Err(); err != nil {
		return fmt.Errorf("probe redis: %w", err)
	}
	return nil
}

// appendMerchantTag appends the tag that names a merchant in its pending items and its key: 16 hex
// digits of SHA-256, or on a Redis Cluster the 8 hex digits of the FNV tag its payments' entries
// hold, so that its counts share a slot with its fraud labels, which are found from an entry.
func (s *Store) appendMerchantTag(b []byte, id string) []byte {
	if s.cluster {
		return fmt.Appendf(b, "%08x", tag4(id))
	}
	sum := sha256.Sum256([]byte(id))
	return hex.AppendEncode(b, sum[:8])
}

// merchantKeys are a merchant's keys: its day counts and snapshots <prefix>:m:{<tag>}, and its
// fraud labels <prefix>:mf:{<FNV tag of the id, hex>}.
func (s *Store) merchantKeys(id string) (key, fraudKey string) {
	fraudKey = fmt.Sprintf("%s:mf:{%08x}", s.cfg.KeyPrefix, tag4(id))
	if s.cluster {
		return fmt.Sprintf("%s:m:{%08x}", s.cfg.KeyPrefix, tag4(id)), fraudKey
	}
	sum := sha256.Sum256([]byte(id))
	return s.cfg.KeyPrefix + ":m:{" + hex.EncodeToString(sum[:8]) + "}", fraudKey
}

// load loads the scripts that the stream's pipelines call by their hash (on every node of a
// Redis Cluster).
func (s *Store) load(ctx context.Context) error {
	for _, sc := range []*redis.Script{s.script, s.snapshot, s.fold, s.take, s.apply, s.done} {
		if err := sc.Load(ctx, s.rdb).Err(); err != nil {
			return fmt.Errorf("load window scripts: %w", err)
		}
	}
	s.loaded.Store(true)
	return nil
}

// Observe counts each event in its window and fills out[i] for events[i], in one round trip to
// Redis. asked reports whether Redis was asked anything.
func (s *Store) Observe(ctx context.Context, events []Event, out []Result) (asked bool, err error) {
	if len(events) == 0 {
		return false, nil
	}
	if !s.loaded.Load() {
		if err := s.load(ctx); err != nil {
			return true, err
		}
	}
	err = s.observe(ctx, events, out)
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The server restarted, or failed over: load the script and go again.
		// Counting is idempotent, so the calls that did run count nothing twice.
		if err := s.load(ctx); err != nil {
			return true, err
		}
		err = s.observe(ctx, events, out)
	}
	return true, err
}

// A call is one script call: some cards and their payments, and where their merchant items go.
type call struct {
	cards   []*cardCall
	pending string // the pending list
	snaps   []int  // on a single Redis: the snapshots it takes, indexes into plan.snapshots
}

// cardCall is a card's part of a call: its payments, and what this process's copy of its history
// says about them.
type cardCall struct {
	key, field string
	id         string // the card's key in the cache
	bucket     uint32
	sweep      bool
	gen        string   // the generation its history gets if it begins now
	events     []int    // indexes into the batch
	entries    [][]byte // their entries
	items      [][]byte // "-": look up only; "+" or "=" (new, or counted in the copy), then the merchant's item
	counted    []bool   // by payment: it may be counted (not late, not ahead)
	// A copy of the history, if the process has one, its index if this batch took it, and the
	// entries of the payments new to it.
	cached *cardState
	idx    *index
	fresh  [][]byte
}

// freshIn returns the entries of the card's payments that are new to a history: those that may be
// counted whose payment id is neither in it nor earlier in the batch, as observeScript finds them.
func (cc *cardCall) freshIn(history string, x *index) [][]byte {
	var out [][]byte
	var seen map[string]bool // past a few payments, rather than a search of out
	for n, en := range cc.entries {
		if !cc.counted[n] {
			continue
		}
		pid := en[8:14]
		if (x != nil && x.holds(pid)) || (x == nil && holds(history, pid)) {
			continue
		}
		switch {
		case seen != nil:
			if seen[string(pid)] {
				continue
			}
		case len(out) >= 16:
			seen = map[string]bool{}
			for _, e := range out {
				seen[string(e[8:14])] = true
			}
			if seen[string(pid)] {
				continue
			}
		default:
			if slices.ContainsFunc(out, func(e []byte) bool { return string(e[8:14]) == string(pid) }) {
				continue
			}
		}
		if seen != nil {
			seen[string(pid)] = true
		}
		out = append(out, en)
	}
	return out
}

// snapshot asks for a merchant's counts of the days before one day: snapshotScript returns the
// ones taken by the first payment of that day at the merchant, taking them now if there are none.
type snapshot struct {
	key, fraudKey string
	day           int64
	md            merchantDay
}

var lookUp = []byte("-")

// slot is where an event's merchant snapshot comes from: a snapshot asked for (snap, an index into
// plan.snapshots), or the cache (cached); neither (snap -1, cached nil) for no merchant.
type slot struct {
	snap   int
	cached *merchantCounts
}

// plan is a batch's script calls, the merchant snapshots it asks for, where each event's snapshot
// comes from, and the cutoffs the calls apply.
type plan struct {
	calls     []*call
	snapshots []snapshot
	snaps     []slot // by event
	// Entries are kept while a payment that can still be counted may look back to them: its 30
	// days, from a window and the lateness (and a margin for clocks) before now.
	countable, cutoff, sweepCutoff int64 // Unix seconds
}

// observe counts a batch in one round trip: plan the script calls, run them, read the answers.
func (s *Store) observe(ctx context.Context, events []Event, out []Result) error {
	p := s.planBatch(s.now(), events, out)
	replies, snaps, err := s.runBatch(ctx, p)
	if err == nil {
		err = s.readBatch(p, replies, snaps, out)
	}
	if err != nil {
		return fmt.Errorf("observe %d payments: %w", len(events), err)
	}
	return nil
}

// planBatch groups the events into script calls (up to maxPerCall cards a call; one a shard on a
// Redis Cluster), encodes their entries, finds which are new in this process's copies of their
// cards' histories, and starts out[i] with its window and whether it is too far ahead to count.
func (s *Store) planBatch(now time.Time, events []Event, out []Result) *plan {
	length := s.cfg.Length
	// How far ahead of the clock an event time may be and still count: further ahead is a
	// wrong clock, and counting it would keep state for as long.
	ahead := now.Add(length + expiryMargin)
	today := now.Unix() / day
	countable := now.Add(-length - s.cfg.AllowedLateness - expiryMargin)
	cutoff := countable.Add(-month * time.Second).Unix()
	p := &plan{snaps: make([]slot, len(events)), countable: countable.Unix(), cutoff: cutoff,
		sweepCutoff: cutoff - int64((2*length+s.cfg.AllowedLateness+expiryMargin)/time.Second)}

	byShard := map[uint32]*call{} // Redis Cluster: the call of each shard
	byCard := map[string]*cardCall{}
	bySnap := map[merchantDay]int{} // index into p.snapshots
	var current *call
	buf := make([]byte, len(events)*entrySize)
	itemBuf := make([]byte, 0, len(events)*(1+4+16)) // every item's bytes: items must not move
	var gens [2]byte
	for i := range events {
		e := &events[i]
		start := e.Time.Truncate(length)
		out[i] = Result{Window: start}
		counted := true
		switch end := start.Add(length); {
		case e.Time.After(ahead):
			out[i].Ahead = true
			counted = false
		case !end.Add(s.cfg.AllowedLateness).After(now):
			counted = false // late: counted only if it was counted before it was late
		}
		cc := byCard[e.Card]
		if cc == nil {
			cardSum := sha256.Sum256([]byte(e.Card))
			key, bucket := s.key(&cardSum)
			var c *call
			switch {
			case s.cluster:
				if c = byShard[bucket%clusterShards]; c == nil {
					c = &call{pending: s.pendingKey(bucket)}
					byShard[bucket%clusterShards] = c
					p.calls = append(p.calls, c)
				}
			default:
				if current == nil || len(current.cards) == maxPerCall {
					current = &call{pending: s.pendingKey(bucket)}
					p.calls = append(p.calls, current)
				}
				c = current
			}
			binary.BigEndian.PutUint16(gens[:], uint16(mrand.Uint32()))
			cc = &cardCall{key: key, field: string(cardSum[4:10]), id: string(cardSum[:10]), bucket: bucket,
				sweep: s.swept.due(bucket, today), gen: string(gens[:])}
			cc.cached = s.cards.get(cc.id)
			byCard[e.Card] = cc
			c.cards = append(c.cards, cc)
		}
		pid := sha256.Sum256([]byte(e.PaymentID))
		en := buf[i*entrySize : (i+1)*entrySize : (i+1)*entrySize]
		encode(en, e, &pid)
		item := lookUp
		p.snaps[i] = slot{snap: -1}
		// A payment too far ahead to count takes no snapshot: it would fix a day not yet begun
		// (its merchant counts are 0; the model does not score it).
		if e.Merchant != "" && !out[i].Ahead {
			d := e.Time.Unix() / day
			md := merchantDay{e.Merchant, d}
			if v := s.snaps.get(md); v != nil {
				p.snaps[i].cached = v
			} else {
				k, ok := bySnap[md]
				if !ok {
					mkey, fkey := s.merchantKeys(e.Merchant)
					k = len(p.snapshots)
					bySnap[md] = k
					p.snapshots = append(p.snapshots, snapshot{key: mkey, fraudKey: fkey, day: d, md: md})
					if !s.cluster { // in the card call's script; on a cluster, in the keys' slot
						current.snaps = append(current.snaps, k)
					}
				}
				p.snaps[i].snap = k
			}
			if counted {
				from := len(itemBuf)
				itemBuf = append(itemBuf, '+')
				itemBuf = binary.BigEndian.AppendUint32(itemBuf, uint32(d))
				itemBuf = s.appendMerchantTag(itemBuf, e.Merchant)
				item = itemBuf[from:len(itemBuf):len(itemBuf)]
			}
		} else if counted {
			itemBuf = append(itemBuf, '+')
			item = itemBuf[len(itemBuf)-1 : len(itemBuf) : len(itemBuf)]
		}
		cc.events = append(cc.events, i)
		cc.entries = append(cc.entries, en)
		cc.items = append(cc.items, item)
		cc.counted = append(cc.counted, counted)
	}
	// With a copy of a card's history: which payments are new to it ("+"), and which it has ("=").
	for _, c := range p.calls {
		for _, cc := range c.cards {
			if cc.cached == nil {
				continue
			}
			if len(cc.cached.history) >= indexFrom*entrySize {
				cc.idx = cc.cached.take()
			}
			cc.fresh = cc.freshIn(cc.cached.history, cc.idx)
			k := 0
			for n, en := range cc.entries {
				if !cc.counted[n] {
					continue
				}
				if k < len(cc.fresh) && &cc.fresh[k][0] == &en[0] {
					k++
				} else {
					cc.items[n][0] = '='
				}
			}
		}
	}
	return p
}

// runBatch sends the plan's calls, its snapshots and the epoch's read in one pipeline, checks the
// epoch, and returns each call's replies and each snapshot.
func (s *Store) runBatch(ctx context.Context, p *plan) ([][]any, []string, error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(p.calls))
	for k, c := range p.calls {
		keys := make([]string, 0, len(c.cards)+1)
		args := make([]any, 0, 8+len(c.cards)+2*len(p.snaps))
		args = append(args, p.cutoff, p.sweepCutoff, p.countable, s.cfg.MaxPaymentsPerCard, hardCap*s.cfg.MaxPaymentsPerCard,
			s.ttl().Milliseconds(), len(c.cards), chunkEntries)
		for _, cc := range c.cards {
			keys = append(keys, cc.key)
			sweep := 0
			if cc.sweep {
				sweep = 1
			}
			card := make([]byte, 0, 15+headerSize)
			card = append(append(append(card, cc.field...), cc.gen...), byte('0'+sweep))
			card = binary.BigEndian.AppendUint16(card, uint16(len(cc.entries)))
			if cc.cached != nil {
				card = binary.BigEndian.AppendUint32(card, uint32(cc.cached.headLen()))
				card = append(card, cc.cached.header...)
			} else {
				card = binary.BigEndian.AppendUint32(card, 0)
			}
			args = append(args, card)
			for j, en := range cc.entries {
				args = append(args, en, cc.items[j])
			}
		}
		keys = append(keys, c.pending)
		if len(c.snaps) > 0 {
			args = append(args, s.merchantTTL().Milliseconds(), len(c.snaps), LabelDelayDays)
			for _, k := range c.snaps {
				sn := &p.snapshots[k]
				args = append(args, sn.key, sn.fraudKey, sn.day)
			}
		}
		cmds[k] = s.script.EvalSha(ctx, pipe, keys, args...)
	}
	var snapCmds []*redis.Cmd // a Redis Cluster's
	if s.cluster {
		for _, sn := range p.snapshots {
			snapCmds = append(snapCmds, s.snapshot.EvalSha(ctx, pipe, []string{sn.key, sn.fraudKey}, s.merchantTTL().Milliseconds(), LabelDelayDays, sn.day))
		}
	}
	// Last, so that a missing epoch (redis.Nil) is not the error Exec reports for a failed script.
	epochCmd := pipe.GetEx(ctx, s.epochKey(), s.ttl())
	known := s.epoch.value.Load()
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		for _, c := range p.calls {
			for _, cc := range c.cards {
				if cc.sweep {
					s.swept.undo(cc.bucket) // perhaps not swept after all
				}
			}
		}
		return nil, nil, err
	}
	replies := make([][]any, len(p.calls))
	snaps := make([]string, len(p.snapshots))
	for k, c := range p.calls {
		res, err := cmds[k].Slice()
		if err != nil {
			return nil, nil, err
		}
		if len(res) != len(c.cards)+len(c.snaps) {
			return nil, nil, fmt.Errorf("%d replies for %d cards and %d merchants", len(res), len(c.cards), len(c.snaps))
		}
		replies[k] = res
		for j, sn := range c.snaps {
			snaps[sn], _ = res[len(c.cards)+j].(string)
		}
	}
	for k, c := range snapCmds {
		v, err := c.Text()
		if err != nil {
			return nil, nil, fmt.Errorf("merchant snapshot: %w", err)
		}
		snaps[k] = v
	}
	var epoch *string
	switch v, err := epochCmd.Result(); {
	case err == nil:
		epoch = &v
	case !errors.Is(err, redis.Nil):
		return nil, nil, fmt.Errorf("read epoch: %w", err)
	}
	return replies, snaps, s.checkEpoch(ctx, known, epoch)
}

// readBatch fills each event's result from its card's history and its merchant's snapshot.
func (s *Store) readBatch(p *plan, replies [][]any, snaps []string, out []Result) error {
	lengthSec := int64(s.cfg.Length / time.Second)
	for k, c := range p.calls {
		for j, cc := range c.cards {
			reply, _ := replies[k][j].(string)
			a, err := s.remember(cc, reply)
			if err != nil {
				return err
			}
			s.results(cc, a, lengthSec, p.cutoff, out)
		}
	}
	counts := make([]merchantCounts, len(snaps))
	for k, v := range snaps {
		var err error
		if counts[k], err = parseSnapshot(v); err != nil {
			return err
		}
		s.snaps.put(p.snapshots[k].md, counts[k])
	}
	for i, sl := range p.snaps {
		var m merchantCounts
		switch {
		case sl.cached != nil:
			m = *sl.cached
		case sl.snap >= 0:
			m = counts[sl.snap]
		default:
			continue
		}
		a := &out[i].Aggregates
		a.MerchantCount1d, a.MerchantCount7d, a.MerchantCount30d, a.MerchantFraud30d = m.count1d, m.count7d, m.count30d, m.fraud30d
		a.MerchantDelayed = m.delayed
	}
	return nil
}

// results fills the results of a card's payments, from its history after the call. They are
// read's (each payment's count and aggregates from the entries before its own, or from all of
// them for one not counted), but a long history is not read once per payment: an index of it
// (see index) answers for each payment new to it and no earlier than any it holds, and read is
// left the others (a redelivery, one out of order) and the batches whose call dropped payments
// that can still be counted (past the cap).
func (s *Store) results(cc *cardCall, a after, length, cutoff int64, out []Result) {
	var x *index
	if len(a.base) >= indexFrom*entrySize && !dropsCountable(a.dropped, cutoff) {
		if x = cc.idx; x == nil {
			x = newIndex(a.base)
		}
	}
	set := func(i int, agg Aggregates, count int64, counted bool) {
		out[i].Aggregates = agg
		switch {
		case out[i].Ahead:
		case counted:
			out[i].Count = count
		default:
			out[i].Late = true
		}
	}
	// The new payments first, in order, each against the index of what came before it.
	k := 0
	done := make([]bool, len(cc.events))
	for n, i := range cc.events {
		if k == len(a.fresh) || &a.fresh[k][0] != &cc.entries[n][0] {
			continue
		}
		k++
		en := cc.entries[n]
		if x != nil && int64(u32(string(en[:4]), 0)) >= x.maxT {
			agg, count := x.read(en, length, cutoff)
			set(i, agg, count+1, true)
			x.add(en)
			done[n] = true
			continue
		}
		x = nil // out of order: read is left the rest
		agg, count, found := read(a.history, en, length, cutoff)
		set(i, agg, count, found)
		done[n] = true
	}
	// The others: one not counted that is no earlier than everything gets all of the history.
	for n, i := range cc.events {
		if done[n] {
			continue
		}
		en := cc.entries[n]
		if x != nil && !out[i].Ahead && int64(u32(string(en[:4]), 0)) >= x.maxT && !x.holds(en[8:14]) {
			agg, _ := x.read(en, length, cutoff)
			set(i, agg, 0, false)
			continue
		}
		agg, count, found := read(a.history, en, length, cutoff)
		set(i, agg, count, found)
	}
	if x != nil && a.st != nil && len(a.dropped) == 0 && x.n*entrySize == len(a.st.history) {
		a.st.idx.Store(x)
	}
}

// dropsCountable reports whether entries dropped from a history hold one from cutoff on.
func dropsCountable(dropped string, cutoff int64) bool {
	for off := 0; off+entrySize <= len(dropped); off += entrySize {
		if int64(u32(dropped, off)) >= cutoff {
			return true
		}
	}
	return false
}

// holds reports whether a history holds an entry with the payment id tag pid.
func holds(history string, pid []byte) bool {
	for off := 0; ; {
		k := strings.Index(history[off:], string(pid))
		if k < 0 {
			return false
		}
		if (off+k)%entrySize == 8 {
			return true
		}
		off += k + 1
	}
}

// after is what a card's call left: its history before and after, the entries appended, those
// dropped from the front (of before and appended), and the copy kept, if one is.
type after struct {
	history, base, dropped string
	fresh                  [][]byte
	st                     *cardState
}

// remember reads a card's reply (see observeScript), keeps the card's history as it is now in the
// cache, and returns it.
func (s *Store) remember(cc *cardCall, reply string) (after, error) {
	if reply == "F" { // as the copy had it, grown; the header changed in its last time alone
		s.fast.Add(1)
		st := &cardState{header: cc.cached.header, history: cc.grow(cc.cached.history)}
		if len(cc.fresh) > 0 {
			h := []byte(st.header)
			copy(h[4:8], cc.fresh[len(cc.fresh)-1][:4])
			st.header = string(h)
		}
		return after{history: st.history, base: cc.cached.history, fresh: cc.fresh, st: s.keep(cc, st)}, nil
	}
	if len(reply) > 0 && reply[0] == 'H' { // a short history, as it was: find the new in it
		s.whole.Add(1)
		prior := reply[1:]
		if cc.cached != nil {
			s.cards.drop(cc.id)
		}
		fresh := cc.freshIn(prior, nil)
		return after{history: grow(prior, fresh), base: prior, fresh: fresh}, nil
	}
	const end = 3 + headerSize
	if len(reply) < end || (reply[0] != 'R' && reply[0] != 'S') || (reply[0] == 'R' && cc.cached == nil) {
		return after{}, fmt.Errorf("card history reply of %d bytes", len(reply))
	}
	open := int(binary.BigEndian.Uint16([]byte(reply[1:3])))
	sealed := int(binary.BigEndian.Uint16([]byte(reply[5:7])))
	keep := (sealed*chunkEntries + open) * entrySize
	a := after{base: reply[end:], fresh: cc.fresh}
	var grown string
	if reply[0] == 'R' { // as the copy had it, and rebuilt: a chunk sealed or dropped
		s.fast.Add(1)
		a.base = cc.cached.history
		grown = cc.grow(a.base)
	} else { // not as the copy had it, if there was one: the history as it was, to find the new in
		s.whole.Add(1)
		cc.idx = nil // of another history
		if len(a.base) >= indexFrom*entrySize {
			cc.idx = newIndex(a.base)
		}
		a.fresh = cc.freshIn(a.base, cc.idx)
		grown = grow(a.base, a.fresh)
	}
	if keep > len(grown) {
		// The head counts chunks that its list no longer has (evicted, deleted): decide on what
		// there is, keep no copy, and read the card whole again next time.
		s.cards.drop(cc.id)
		a.history = grown
		return a, nil
	}
	a.history, a.dropped = grown[len(grown)-keep:], grown[:len(grown)-keep]
	a.st = s.keep(cc, &cardState{header: strings.Clone(reply[3:end]), history: a.history})
	return a, nil
}

// keep keeps a copy of a card's history if it has sealed chunks, and returns it: a shorter one is
// all in its head, which comes back whole at no more cost than a copy would save.
func (s *Store) keep(cc *cardCall, st *cardState) *cardState {
	switch {
	case st.header[2:4] != "\x00\x00": // sealed chunks
		s.cards.put(cc.id, st)
		return st
	case cc.cached != nil:
		s.cards.drop(cc.id)
	}
	return nil
}

// grow returns the card's copy of its history with the batch's new payments appended: in place,
// in the buffer of the index the batch took, if it did.
func (cc *cardCall) grow(history string) string {
	if cc.idx != nil {
		return cc.idx.grow(history, cc.fresh)
	}
	return grow(history, cc.fresh)
}

// grow returns a history with entries appended.
func grow(history string, entries [][]byte) string {
	if len(entries) == 0 {
		return history
	}
	var b strings.Builder
	b.Grow(len(history) + len(entries)*entrySize)
	b.WriteString(history)
	for _, e := range entries {
		b.Write(e)
	}
	return b.String()
}

// parseSnapshot reads a merchant snapshot, "<1d>,<7d>,<30d>,<fraud 30d>" and the delayed counts
// and frauds of 1, 7 and 30 days (see observeScript).
func parseSnapshot(v string) (merchantCounts, error) {
	parts := strings.Split(v, ",")
	if len(parts) != 10 {
		return merchantCounts{}, fmt.Errorf("merchant snapshot %q: want 10 counts", v)
	}
	var n [10]int64
	for k, part := range parts {
		var err error
		if n[k], err = strconv.ParseInt(part, 10, 64); err != nil {
			return merchantCounts{}, fmt.Errorf("merchant snapshot %q: %w", v, err)
		}
	}
	return merchantCounts{count1d: n[0], count7d: n[1], count30d: n[2], fraud30d: n[3],
		delayed: MerchantDelayed{Count: [3]int64{n[4], n[6], n[8]}, Fraud: [3]int64{n[5], n[7], n[9]}}}, nil
}

// LabelDelayDays is how many days analysts' verdicts take to be all in: a merchant's delayed counts
// (Aggregates.MerchantDelayed) are of the days before these, whose labels are as complete as they
// will be. Training replays labels with the same delay (replay -label-delay).
const LabelDelayDays = 7

// merchantDays is how many days before its newest a merchant keeps: the 30 of its delayed counts
// after the label delay, and the day before them.
const merchantDays = LabelDelayDays + 31

// merchantTTL is how long a merchant's keys live after its last day count or snapshot: the days
// it keeps, the allowed lateness and two days of margin.
func (s *Store) merchantTTL() time.Duration {
	return (merchantDays+2)*day*time.Second + s.cfg.AllowedLateness
}

// ttl is how long a card bucket lives after it was last given a TTL: 30 days, the allowed
// lateness, a window and margins, and a day, since a bucket's TTL is set when a card joins it
// and when it is swept, at most daily, rather than on every write.
func (s *Store) ttl() time.Duration {
	return month*time.Second + s.cfg.AllowedLateness + s.cfg.Length + 2*expiryMargin + day*time.Second
}

// Label records an analyst's verdict on a payment, for the merchant's fraud counts: a payment
// labelled fraud counts for its merchant on the payment's day, from the next time the merchant
// is read; one labelled legitimate (after all) no longer does. Verdicts are idempotent. It
// reports false when the store does not know the payment (its card's history no longer holds
// it, or it had no merchant).
func (s *Store) Label(ctx context.Context, card, paymentID string, fraud bool) (bool, error) {
	cardSum := sha256.Sum256([]byte(card))
	pid := sha256.Sum256([]byte(paymentID))
	key, _ := s.key(&cardSum)
	history, err := s.hist.Run(ctx, s.rdb, []string{key}, string(cardSum[4:10])).Text()
	if err != nil {
		return false, fmt.Errorf("label %s: %w", paymentID, err)
	}
	off := -1
	for k := 0; ; {
		i := strings.Index(history[k:], string(pid[:6]))
		if i < 0 {
			return false, nil
		}
		if (k+i)%entrySize == 8 {
			off = k + i - 8
			break
		}
		k += i + 1
	}
	merchant := u32(history, off+16)
	if merchant == 0 {
		return false, nil
	}
	d := int64(u32(history, off)) / day
	flag := 0
	if fraud {
		flag = 1
	}
	fraudKey := fmt.Sprintf("%s:mf:{%08x}", s.cfg.KeyPrefix, merchant)
	field := fmt.Sprintf("%d:%x", d, pid[:6])
	if err := s.label.Run(ctx, s.rdb, []string{fraudKey}, field, flag, s.merchantTTL().Milliseconds(), merchantDays, d).Err(); err != nil {
		return false, fmt.Errorf("label %s: %w", paymentID, err)
	}
	return true, nil
}

// foldBatch is the most pending merchant items one script call of a fold takes: Redis runs nothing
// else while a script runs, and an item costs up to 10 µs here (a merchant's first of a day).
const foldBatch = 50

// clusterFoldBatch is the most items a shard's fold takes on a Redis Cluster.
const clusterFoldBatch = 2000

// Fold adds the payments counted since the last fold to their merchants' day counts, and reports
// how many it added. Any number of instances may fold at once.
func (s *Store) Fold(ctx context.Context) (int, error) {
	if !s.loaded.Load() {
		if err := s.load(ctx); err != nil {
			return 0, err
		}
	}
	if s.cluster {
		n, err := s.foldShards(ctx)
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// A node restarted, or failed over: load the scripts and go again (a fold repeats
			// nothing it did).
			if err := s.load(ctx); err != nil {
				return n, err
			}
			var m int
			m, err = s.foldShards(ctx)
			n += m
		}
		return n, err
	}
	ttl := s.merchantTTL().Milliseconds()
	total := 0
	for {
		n, err := s.fold.Run(ctx, s.rdb, []string{s.pendingKey(0)}, s.cfg.KeyPrefix, foldBatch, ttl, merchantDays).Int()
		if err != nil {
			return total, fmt.Errorf("fold merchant counts: %w", err)
		}
		total += n
		if n < foldBatch {
			return total, nil
		}
	}
}

// foldShards folds every shard's pending items on a Redis Cluster, in three pipelines a round (see
// takeScript): take each shard's items, add them to each merchant, end each shard's fold. A step
// that fails leaves the fold in progress, and whichever instance folds next finishes it.
func (s *Store) foldShards(ctx context.Context) (int, error) {
	ttl := s.merchantTTL().Milliseconds()
	total := 0
	for {
		pipe := s.rdb.Pipeline()
		takes := make([]*redis.Cmd, clusterShards)
		for sh := range clusterShards {
			takes[sh] = s.take.EvalSha(ctx, pipe, []string{s.shardKey(sh, "p"), s.shardKey(sh, "f"), s.shardKey(sh, "seq")}, clusterFoldBatch, ttl)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return total, fmt.Errorf("fold merchant counts: take: %w", err)
		}
		type fold struct {
			shard int
			n     string
		}
		var folds []fold
		more := false
		apply := s.rdb.Pipeline()
		for sh, c := range takes {
			list, err := c.StringSlice()
			if err != nil {
				return total, fmt.Errorf("fold merchant counts: take: %w", err)
			}
			if len(list) < 2 {
				continue
			}
			n, items := list[0], list[1:]
			folds = append(folds, fold{sh, n})
			total += len(items)
			more = more || len(items) == clusterFoldBatch
			// By merchant, then day.
			byMerchant := map[string]map[uint32]int{}
			for _, it := range items {
				if len(it) < 5 {
					continue
				}
				tag, d := it[4:], binary.BigEndian.Uint32([]byte(it[:4]))
				if byMerchant[tag] == nil {
					byMerchant[tag] = map[uint32]int{}
				}
				byMerchant[tag][d]++
			}
			for tag, days := range byMerchant {
				args := []any{sh, n, ttl, merchantDays}
				for d, k := range days {
					args = append(args, d, k)
				}
				s.apply.EvalSha(ctx, apply, []string{s.cfg.KeyPrefix + ":m:{" + tag + "}", s.cfg.KeyPrefix + ":ma:{" + tag + "}"}, args...)
			}
		}
		if len(folds) == 0 {
			return total, nil
		}
		if _, err := apply.Exec(ctx); err != nil {
			return total, fmt.Errorf("fold merchant counts: add: %w", err)
		}
		done := s.rdb.Pipeline()
		for _, f := range folds {
			s.done.EvalSha(ctx, done, []string{s.shardKey(f.shard, "f")}, f.n)
		}
		if _, err := done.Exec(ctx); err != nil {
			return total, fmt.Errorf("fold merchant counts: end: %w", err)
		}
		if !more {
			return total, nil
		}
	}
}

// RunFold folds every interval until ctx ends. Items wait in Redis until a fold takes them, so a
// failed fold loses nothing; it is logged when folding stops working and when it works again.
func (s *Store) RunFold(ctx context.Context, interval time.Duration, log *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_, err := s.Fold(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			log.Warn("merchant counts not folded; the payments wait in redis", "err", err)
		case err == nil && failing:
			log.Info("merchant counts folded again")
		}
		failing = err != nil
	}
}

// Counts returns the counts of a card's windows in its history, by window start.
func (s *Store) Counts(ctx context.Context, card string) (map[time.Time]int64, error) {
	sum := sha256.Sum256([]byte(card))
	key, _ := s.key(&sum)
	history, err := s.hist.Run(ctx, s.rdb, []string{key}, string(sum[4:10])).Text()
	if err != nil {
		return nil, fmt.Errorf("window counts: %w", err)
	}
	counts := map[time.Time]int64{}
	for off := 0; off+entrySize <= len(history); off += entrySize {
		t := time.Unix(int64(u32(history, off)), 0).UTC()
		counts[t.Truncate(s.cfg.Length)]++
	}
	return counts, nil
}

// Note explains a result that is not in its card's state: late_event when the payment came too
// late to count, or too far ahead of the service's clock.
func (s *Store) Note(r Result) (decision.Reason, bool) {
	switch {
	case r.Ahead:
		return decision.Reason{Code: decision.CodeLate, Detail: fmt.Sprintf(
			"event time in the window from %s, more than a window ahead of the service's clock: not counted",
			r.Window.UTC().Format(time.RFC3339))}, true
	case r.Late:
		return decision.Reason{Code: decision.CodeLate, Detail: fmt.Sprintf(
			"event time in the window from %s, which closed more than %s ago: not counted",
			r.Window.UTC().Format(time.RFC3339), short(s.cfg.AllowedLateness))}, true
	}
	return decision.Reason{}, false
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
