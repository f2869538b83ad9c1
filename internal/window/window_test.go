package window

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"
)

// These tests run against a real redis-server: scripts/stack.sh up starts one on 127.0.0.1:6379,
// or set FD_TEST_REDIS. Each test writes under its own key prefix.

func testRedis(t *testing.T) (*redis.Client, *pipelines) {
	t.Helper()
	addr := os.Getenv("FD_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("redis at %s: %v (start it with scripts/stack.sh up, or set FD_TEST_REDIS)", addr, err)
	}
	p := &pipelines{}
	rdb.AddHook(p)
	t.Cleanup(func() { rdb.Close() })
	return rdb, p
}

// pipelines counts the round trips that carry a pipeline.
type pipelines struct{ n atomic.Int64 }

func (p *pipelines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (p *pipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (p *pipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		p.n.Add(1)
		return next(ctx, cmds)
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestStore(t *testing.T, now time.Time, buckets int) (*Store, *redis.Client, *pipelines, *clock) {
	t.Helper()
	rdb, p := testRedis(t)
	c := &clock{now}
	prefix := fmt.Sprintf("fdtest%d", rand.Int64())
	s := NewStore(rdb, Config{Length: time.Hour, AllowedLateness: time.Hour, KeyPrefix: prefix, Buckets: buckets, MaxPaymentsPerCard: 4096}, c.now)
	t.Cleanup(func() {
		keys, _ := rdb.Keys(context.Background(), prefix+":*").Result()
		if len(keys) > 0 {
			rdb.Del(context.Background(), keys...)
		}
	})
	return s, rdb, p, c
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func observe(t *testing.T, s *Store, events ...Event) []Result {
	t.Helper()
	out := make([]Result, len(events))
	if _, err := s.Observe(context.Background(), events, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEleventhPaymentOfTheHourCountsEleven(t *testing.T) {
	s, _, p, _ := newTestStore(t, at("2026-03-01T10:30:00Z"), 1024)
	var events []Event
	for i := range 12 {
		events = append(events, Event{PaymentID: fmt.Sprintf("p%d", i), Card: "c1", Time: at("2026-03-01T10:00:00Z").Add(time.Duration(i) * time.Minute)})
	}
	res := observe(t, s, events...)
	for i, r := range res {
		if r.Count != int64(i+1) || r.Late {
			t.Fatalf("payment %d: %+v", i, r)
		}
	}
	if _, ok := s.Note(res[10]); ok || !res[10].Window.Equal(at("2026-03-01T10:00:00Z")) {
		t.Errorf("11th payment: %+v", res[10])
	}
	// A batch is one round trip. (Counted on a warm client: a new connection's handshake is a
	// pipeline of its own.)
	before := p.n.Load()
	observe(t, s, Event{PaymentID: "p12", Card: "c1", Time: at("2026-03-01T10:50:00Z")}, Event{PaymentID: "q", Card: "c2", Time: at("2026-03-01T10:50:00Z")})
	if trips := p.n.Load() - before; trips != 1 {
		t.Errorf("%d round trips for one batch, want 1", trips)
	}
}

func TestWindowsAreAlignedToTheHour(t *testing.T) {
	s, _, _, _ := newTestStore(t, at("2026-03-01T11:30:00Z"), 1024)
	res := observe(t, s,
		Event{PaymentID: "a", Card: "c1", Time: at("2026-03-01T10:59:59Z")},
		Event{PaymentID: "b", Card: "c1", Time: at("2026-03-01T11:00:00Z")},
		Event{PaymentID: "c", Card: "c1", Time: at("2026-03-01T10:00:00Z")})
	if res[0].Count != 1 || res[1].Count != 1 || res[2].Count != 2 {
		t.Errorf("counts %d %d %d, want 1 1 2", res[0].Count, res[1].Count, res[2].Count)
	}
	if !res[0].Window.Equal(at("2026-03-01T10:00:00Z")) || !res[1].Window.Equal(at("2026-03-01T11:00:00Z")) {
		t.Errorf("windows %v %v", res[0].Window, res[1].Window)
	}
}

func TestOutOfOrderAndLate(t *testing.T) {
	s, _, _, _ := newTestStore(t, at("2026-03-01T12:30:00Z"), 1024)
	res := observe(t, s,
		Event{PaymentID: "now", Card: "c1", Time: at("2026-03-01T12:20:00Z")},
		Event{PaymentID: "earlier", Card: "c1", Time: at("2026-03-01T11:10:00Z")},  // window ends 12:00, +1h lateness: counts
		Event{PaymentID: "same", Card: "c1", Time: at("2026-03-01T11:59:59Z")},     // same window as "earlier"
		Event{PaymentID: "too-late", Card: "c1", Time: at("2026-03-01T10:20:00Z")}, // window ends 11:00, +1h = 12:00 < 12:30
		Event{PaymentID: "edge", Card: "c1", Time: at("2026-03-01T10:59:59.999Z")}) // still 10:00's window: late
	want := []Result{{Count: 1}, {Count: 1}, {Count: 2}, {Late: true}, {Late: true}}
	for i, w := range want {
		if res[i].Count != w.Count || res[i].Late != w.Late {
			t.Errorf("event %d: %+v, want %+v", i, res[i], w)
		}
	}
}

// A replay of the same payments, in other batches and another order, counts nothing again and
// gives every payment the count it got the first time.
func TestReplayChangesNothing(t *testing.T) {
	s, rdb, _, _ := newTestStore(t, at("2026-03-01T12:30:00Z"), 16) // 50 cards share 16 buckets
	rng := rand.New(rand.NewPCG(1, 2))
	var events []Event
	for i := range 1000 {
		events = append(events, Event{PaymentID: fmt.Sprintf("p%04d", i), Card: fmt.Sprintf("c%02d", rng.IntN(50)),
			Time:     at("2026-03-01T11:00:00Z").Add(time.Duration(rng.IntN(90*60)) * time.Second),
			Merchant: fmt.Sprintf("m%d", rng.IntN(5)), Amount: decimal.New(int64(rng.IntN(10000)), -2)})
	}
	first := make(map[string]int64)
	for i := 0; i < len(events); i += 100 {
		for j, r := range observe(t, s, events[i:i+100]...) {
			first[events[i+j].PaymentID] = r.Count
		}
	}
	snapshot := func() map[string]string {
		keys, err := rdb.Keys(context.Background(), s.cfg.KeyPrefix+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		all := map[string]string{}
		for _, k := range keys {
			all[k], _ = rdb.Dump(context.Background(), k).Result()
		}
		return all
	}
	if _, err := s.Fold(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := snapshot()
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	for i := 0; i < len(events); i += 37 {
		batch := events[i:min(i+37, len(events))]
		for j, r := range observe(t, s, batch...) {
			if r.Count != first[batch[j].PaymentID] {
				t.Fatalf("%s: count %d on replay, %d the first time", batch[j].PaymentID, r.Count, first[batch[j].PaymentID])
			}
		}
	}
	if _, err := s.Fold(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := snapshot()
	if len(before) < 10 || fmt.Sprint(before) != fmt.Sprint(after) {
		t.Error("replay changed the stored windows")
	}
	// The counts are what counting by hand gives.
	perWindow := map[string]int64{}
	for _, e := range events {
		perWindow[e.Card+e.Time.Truncate(time.Hour).String()]++
	}
	for _, e := range events[:50] {
		counts, err := s.Counts(context.Background(), e.Card)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := counts[e.Time.Truncate(time.Hour)], perWindow[e.Card+e.Time.Truncate(time.Hour).String()]; got != want {
			t.Errorf("card %s window %s: %d, want %d", e.Card, e.Time.Truncate(time.Hour), got, want)
		}
	}
}

func TestEveryKeyExpiresAndOldPaymentsAreDropped(t *testing.T) {
	// One bucket for all cards: sweeping it drops the cards that paid nothing for 30 days.
	s, rdb, _, c := newTestStore(t, at("2026-03-01T10:30:00Z"), 1)
	ctx := context.Background()
	observe(t, s, Event{PaymentID: "a", Card: "c1", Time: at("2026-03-01T10:10:00Z"), Merchant: "m1"},
		Event{PaymentID: "b", Card: "c2", Time: at("2026-03-01T10:20:00Z")})
	// The bucket, the pending list, the merchant's snapshot of the day and the epoch, before any fold.
	keys, err := rdb.Keys(ctx, s.cfg.KeyPrefix+":*").Result()
	if err != nil || len(keys) != 4 {
		t.Fatalf("keys %v, %v: want the bucket, the pending list, the merchant's and the epoch", keys, err)
	}
	for _, k := range keys {
		if ttl, err := rdb.PTTL(ctx, k).Result(); err != nil || ttl <= 0 {
			t.Errorf("key %q: TTL %s (%v)", k, ttl, err)
		}
	}
	c.t = at("2026-03-20T10:30:00Z")
	observe(t, s, Event{PaymentID: "c", Card: "c1", Time: at("2026-03-20T10:10:00Z")})
	// a and b are older than 30 days before the oldest event time that can still be counted
	// (14:50 on the 31st: 2h10m before now), and b older than what a sweep keeps, 3h10m more.
	c.t = at("2026-03-31T17:00:00Z")
	observe(t, s, Event{PaymentID: "d", Card: "c1", Time: at("2026-03-31T16:50:00Z")})
	if n, err := s.Fold(ctx); n != 1 || err != nil {
		t.Fatalf("folded %d merchant counts (%v), want a's", n, err)
	}
	keys, err = rdb.Keys(ctx, s.cfg.KeyPrefix+":*").Result()
	if err != nil || len(keys) != 3 {
		t.Fatalf("keys %v, %v: want the bucket, the merchant's and the epoch", keys, err)
	}
	for _, k := range keys {
		ttl, err := rdb.PTTL(ctx, k).Result()
		if err != nil || ttl <= 0 {
			t.Errorf("key %q: TTL %s (%v)", k, ttl, err)
		}
	}
	if ttl := rdb.PTTL(ctx, s.Key("c1")).Val(); ttl < 31*24*time.Hour || ttl > 32*24*time.Hour {
		t.Errorf("bucket TTL %s, want 31 days and the lateness, a window and margins", ttl)
	}
	// The bucket was swept on the first write of the 31st: c2's history is gone; c1's lost a.
	if n := rdb.HLen(ctx, s.Key("c1")).Val(); n != 1 {
		t.Errorf("%d cards in the bucket, want c1 alone", n)
	}
	counts, err := s.Counts(ctx, "c1")
	if err != nil || len(counts) != 2 || counts[at("2026-03-20T10:00:00Z")] != 1 || counts[at("2026-03-31T16:00:00Z")] != 1 {
		t.Errorf("counts %v, %v", counts, err)
	}
}

// BenchmarkMemoryPerCardHour writes FD_BENCH_CARDS cards (default 1,000,000) with
// FD_BENCH_PER_CARD payments each (default 1) into one hour, and reports the Redis memory this
// adds per active card-hour. Run it alone on a Redis with nothing else writing:
//
//	go test -run '^$' -bench MemoryPerCardHour -benchtime 1x ./internal/window
func BenchmarkMemoryPerCardHour(b *testing.B) {
	cards, perCard := envInt("FD_BENCH_CARDS", 1_000_000), envInt("FD_BENCH_PER_CARD", 1)
	addr := os.Getenv("FD_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		b.Fatalf("redis at %s: %v (scripts/stack.sh up)", addr, err)
	}
	prefix := fmt.Sprintf("b%d", rand.IntN(10)) // as short as the default "fd": the key is part of what is measured
	now := at("2026-03-01T10:30:00Z")
	// One bucket per 16 cards, as configs/config.yaml advises.
	s := NewStore(rdb, Config{Length: time.Hour, AllowedLateness: time.Hour, KeyPrefix: prefix, Buckets: max(1, cards/16), MaxPaymentsPerCard: 4096}, func() time.Time { return now })
	used := func() int64 {
		info, _ := rdb.Info(ctx, "memory").Result()
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return 0
	}
	for b.Loop() {
		before := used()
		events := make([]Event, 0, 500)
		out := make([]Result, 500)
		began := time.Now()
		for i := range cards * perCard {
			card := i % cards
			events = append(events, Event{PaymentID: fmt.Sprintf("pay-%09d", i), Card: fmt.Sprintf("tok_%032x", card),
				Time: at("2026-03-01T10:00:00Z").Add(time.Duration(i%3600) * time.Second)})
			if len(events) == cap(events) || i == cards*perCard-1 {
				if _, err := s.Observe(ctx, events, out[:len(events)]); err != nil {
					b.Fatal(err)
				}
				events = events[:0]
			}
		}
		took := time.Since(began)
		after := used()
		b.ReportMetric(float64(after-before)/float64(cards), "bytes/card-hour")
		b.ReportMetric(float64(cards*perCard)/took.Seconds(), "payments/s")
		b.Logf("%d cards x %d payments: %d bytes more in Redis", cards, perCard, after-before)
	}
	unlinkPrefix(b, rdb, prefix)
}

func envInt(k string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil && v > 0 {
		return v
	}
	return def
}

// A payment counted just before its window closed, redelivered just after, gets the same count
// back (and so the same decision), not late_event.
func TestRedeliveryAfterTheWindowClosedKeepsItsCount(t *testing.T) {
	s, _, _, c := newTestStore(t, at("2026-03-01T11:59:00Z"), 1024)
	var events []Event
	for i := range 11 {
		events = append(events, Event{PaymentID: fmt.Sprintf("p%d", i), Card: "c1", Time: at("2026-03-01T10:30:00Z")})
	}
	first := observe(t, s, events...)
	c.t = at("2026-03-01T12:00:01Z") // 10:00's window closed, lateness included
	again := observe(t, s, events[10], Event{PaymentID: "new", Card: "c1", Time: at("2026-03-01T10:31:00Z")})
	if again[0] != first[10] || again[0].Count != 11 {
		t.Errorf("redelivered: %+v, first %+v", again[0], first[10])
	}
	if !again[1].Late || again[1].Count != 0 {
		t.Errorf("a new payment after the window closed: %+v, want late", again[1])
	}
}

func TestEventsFarAheadAreNotCounted(t *testing.T) {
	s, rdb, _, _ := newTestStore(t, at("2026-03-01T10:30:00Z"), 1024)
	res := observe(t, s,
		Event{PaymentID: "soon", Card: "c1", Time: at("2026-03-01T11:20:00Z")}, // a clock a little ahead: counted
		Event{PaymentID: "far", Card: "c2", Time: at("2126-03-01T10:00:00Z")},  // a wrong clock
		Event{PaymentID: "wrap", Card: "c3", Time: at("2033-08-27T10:30:00Z")}) // 65,536 hours ahead
	if res[0].Count != 1 || res[0].Ahead || !res[1].Ahead || !res[2].Ahead || res[1].Count != 0 {
		t.Errorf("results %+v", res)
	}
	if r, ok := s.Note(res[1]); !ok || r.Code != "late_event" {
		t.Errorf("reasons %v", r)
	}
	if n, _ := rdb.Exists(context.Background(), s.Key("c2"), s.Key("c3")).Result(); n != 0 && s.Key("c2") != s.Key("c1") {
		t.Errorf("state written for events far ahead")
	}
}

// Redis restarted without its scripts: the store loads it again and counts once.
func TestScriptLoadedAgain(t *testing.T) {
	s, rdb, _, _ := newTestStore(t, at("2026-03-01T10:30:00Z"), 1024)
	observe(t, s, Event{PaymentID: "a", Card: "c1", Time: at("2026-03-01T10:00:00Z")})
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	res := observe(t, s, Event{PaymentID: "a", Card: "c1", Time: at("2026-03-01T10:00:00Z")}, Event{PaymentID: "b", Card: "c1", Time: at("2026-03-01T10:00:00Z")})
	if res[0].Count != 1 || res[1].Count != 2 {
		t.Errorf("counts %d %d after the script was flushed, want 1 2", res[0].Count, res[1].Count)
	}
}

// BenchmarkObserve sends batches of 500 payments of 200,000 cards at 5,000 merchants, as the
// drain benchmark does, and reports the Redis CPU time a payment costs (from INFO cpu: run it on a
// Redis with nothing else to do).
//
//	go test -run '^$' -bench Observe ./internal/window
func BenchmarkObserve(b *testing.B) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		b.Fatalf("redis: %v (scripts/stack.sh up)", err)
	}
	prefix := fmt.Sprintf("bo%d", rand.IntN(1000))
	now := time.Now()
	s := NewStore(rdb, Config{Length: time.Hour, AllowedLateness: time.Hour, KeyPrefix: prefix, Buckets: 65536, MaxPaymentsPerCard: 4096}, func() time.Time { return now })
	cpu := func() float64 {
		info, _ := rdb.Info(ctx, "cpu").Result()
		var total float64
		for _, line := range strings.Split(info, "\r\n") {
			for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
				if v, ok := strings.CutPrefix(line, k); ok {
					f, _ := strconv.ParseFloat(v, 64)
					total += f
				}
			}
		}
		return total
	}
	rng := rand.New(rand.NewPCG(1, 1))
	events := make([]Event, 500)
	out := make([]Result, 500)
	before := cpu()
	n := 0
	for b.Loop() {
		for i := range events {
			card := rng.IntN(200_000)
			events[i] = Event{PaymentID: fmt.Sprintf("pay-%d", n), Card: fmt.Sprintf("tok_%032x", card), Time: now.Add(-time.Duration(rng.IntN(3600)) * time.Second),
				Amount: decimal.New(int64(rng.IntN(20000)), -2), Country: "DE", Merchant: fmt.Sprintf("m-%05d", rng.IntN(5000)), Device: fmt.Sprintf("dev-%d", card)}
			n++
		}
		if _, err := s.Observe(ctx, events, out); err != nil {
			b.Fatal(err)
		}
		if os.Getenv("FD_NOFOLD") == "" && n%(50*len(events)) == 0 { // the service folds every second, some 50 batches at this rate
			if _, err := s.Fold(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric((cpu()-before)*1e6/float64(n), "redis-µs/payment")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/payment")
	unlinkPrefix(b, rdb, prefix)
}

// A bucket swept on a day when its cards only look payments up still gets its TTL again.
func TestSweepSetsTheTTLWithoutNewPayments(t *testing.T) {
	s, rdb, _, c := newTestStore(t, at("2026-03-01T10:30:00Z"), 1)
	ctx := context.Background()
	a := Event{PaymentID: "a", Card: "c1", Time: at("2026-03-01T10:10:00Z")}
	observe(t, s, a)
	rdb.PExpire(ctx, s.Key("c1"), time.Hour)
	c.t = at("2026-03-02T00:05:00Z") // the next day: its first write sweeps
	if r := observe(t, s, a); r[0].Late || r[0].Count != 1 {
		t.Fatalf("redelivered: %+v", r[0])
	}
	if ttl := rdb.PTTL(ctx, s.Key("c1")).Val(); ttl < 30*24*time.Hour {
		t.Errorf("bucket TTL %s after the day's sweep, want about 31 days", ttl)
	}
}

// Past window.max_payments_per_card a history drops its oldest payments, but not those that
// can still be redelivered into their window: those count once however often they come.
func TestCapKeepsRedeliverablePayments(t *testing.T) {
	s, _, _, c := newTestStore(t, at("2026-03-01T10:59:00Z"), 16)
	s.cfg.MaxPaymentsPerCard = 256
	var events []Event
	for i := range 300 {
		events = append(events, Event{PaymentID: fmt.Sprintf("p%03d", i), Card: "c1", Time: at("2026-03-01T10:00:00Z").Add(time.Duration(i) * time.Second)})
	}
	for round := range 2 {
		for i := 0; i < len(events); i += 100 {
			for j, r := range observe(t, s, events[i:i+100]...) {
				if r.Count != int64(i+j+1) {
					t.Fatalf("round %d, payment %d: count %d", round, i+j, r.Count)
				}
			}
		}
	}
	if n := kept(t, s, "c1"); n != 300 {
		t.Errorf("%d payments kept, want all 300 while they can be redelivered", n)
	}
	c.t = at("2026-03-01T13:20:00Z") // 10:00's window can no longer take payments
	observe(t, s, Event{PaymentID: "q", Card: "c1", Time: at("2026-03-01T13:10:00Z")})
	if n := kept(t, s, "c1"); n < 256 || n >= 256+chunkEntries {
		t.Errorf("%d payments kept, want the cap, 256, and less than a chunk more", n)
	}
}

// kept is how many payments a card's history keeps in Redis.
func kept(t *testing.T, s *Store, card string) int {
	t.Helper()
	h, err := s.hist.Run(context.Background(), s.rdb, []string{s.Key(card)}, string(cardTag(card))).Text()
	if err != nil {
		t.Fatal(err)
	}
	return len(h) / entrySize
}

func cardTag(card string) []byte {
	sum := sha256.Sum256([]byte(card))
	return sum[4:10]
}

// unlinkPrefix deletes, in the background of the server, every key under a prefix.
func unlinkPrefix(b *testing.B, rdb *redis.Client, prefix string) {
	ctx := context.Background()
	iter := rdb.Scan(ctx, 0, prefix+":*", 10000).Iterator()
	for iter.Next(ctx) {
		rdb.Unlink(ctx, iter.Val())
	}
	if err := iter.Err(); err != nil {
		b.Fatal(err)
	}
}

// Probe writes through a script, with a TTL, as the stream's calls do.
func TestProbe(t *testing.T) {
	s, rdb, _, _ := newTestStore(t, time.Now(), 16)
	if err := s.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
	key := s.cfg.KeyPrefix + ":{probe}"
	if ttl := rdb.PTTL(context.Background(), key).Val(); ttl <= 0 || ttl > 10*time.Second {
		t.Errorf("probe key TTL %v, want up to 10s", ttl)
	}
}

// Redis losing its data is found by the next batch of every instance, once each, and counted;
// an instance that starts on Redis as it is finds nothing lost.
func TestLostDataIsFound(t *testing.T) {
	a, rdb, _, _ := newTestStore(t, at("2026-03-01T10:30:00Z"), 4)
	b := NewStore(rdb, a.cfg, a.now)
	ctx := context.Background()
	e := func(id string) Event {
		return Event{PaymentID: id, Card: "c1", Time: at("2026-03-01T10:10:00Z"), Merchant: "m1"}
	}
	observe(t, a, e("p1"))
	observe(t, b, e("p2"))
	if n, _ := a.Losses(); n != 0 {
		t.Fatalf("%d losses before any", n)
	}
	if n, _ := b.Losses(); n != 0 {
		t.Fatalf("the second instance found %d losses at its start", n)
	}
	// What FLUSHALL, or a restart without persistence, does to this store's keys.
	keys, err := rdb.Keys(ctx, a.cfg.KeyPrefix+":*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	if err := rdb.Del(ctx, keys...).Err(); err != nil {
		t.Fatal(err)
	}
	if r := observe(t, a, e("p3"))[0]; r.Count != 1 {
		t.Errorf("count %d after the loss, want 1 (the state starts again)", r.Count)
	}
	observe(t, b, e("p4"))
	observe(t, a, e("p5"))
	for name, s := range map[string]*Store{"a": a, "b": b} {
		if n, when := s.Losses(); n != 1 || !when.Equal(at("2026-03-01T10:30:00Z")) {
			t.Errorf("instance %s: %d losses, last at %s; want 1, at the clock's time", name, n, when)
		}
	}
	c := NewStore(rdb, a.cfg, a.now)
	observe(t, c, e("p6"))
	if n, _ := c.Losses(); n != 0 {
		t.Errorf("a third instance found %d losses at its start", n)
	}
}

// Batches of other partitions in flight across a loss count nothing: one read the old epoch before
// the flush, another the new one that a third wrote; the loss counts once and the new epoch stays.
func TestLossCountedOnceAcrossBatchesInFlight(t *testing.T) {
	s, rdb, _, _ := newTestStore(t, at("2026-03-01T10:30:00Z"), 4)
	ctx := context.Background()
	observe(t, s, Event{PaymentID: "p1", Card: "c1", Time: at("2026-03-01T10:10:00Z")})
	old := s.epoch.value.Load()
	if old == nil {
		t.Fatal("no epoch after a batch")
	}
	if err := rdb.Del(ctx, s.epochKey()).Err(); err != nil { // the flush
		t.Fatal(err)
	}
	// All three batches were sent with old as the known epoch.
	if err := s.checkEpoch(ctx, old, nil); err != nil { // read after the flush: writes a new one
		t.Fatal(err)
	}
	current := s.epoch.value.Load()
	stale := *old
	if err := s.checkEpoch(ctx, old, &stale); err != nil { // read before the flush
		t.Fatal(err)
	}
	fresh := *current
	if err := s.checkEpoch(ctx, old, &fresh); err != nil { // read the new one
		t.Fatal(err)
	}
	if n, _ := s.Losses(); n != 1 || *s.epoch.value.Load() != *current || *current == *old {
		t.Errorf("%d losses, epoch %q (old %q, new %q); want 1 and the new one", n, *s.epoch.value.Load(), *old, *current)
	}
}

// A history written before histories had chunks (every entry in the card's field, no header) is
// read as it is, and rewritten in chunks the first time the card gets a payment.
func TestHistoryFromBeforeChunks(t *testing.T) {
	s, rdb, _, _ := newTestStore(t, at("2026-03-01T10:59:00Z"), 16)
	ctx := context.Background()
	var old []byte
	var events []Event
	for i := range 50 {
		e := Event{PaymentID: fmt.Sprintf("p%02d", i), Card: "c1", Time: at("2026-03-01T10:00:00Z").Add(time.Duration(i) * time.Second)}
		pid := sha256.Sum256([]byte(e.PaymentID))
		en := make([]byte, entrySize)
		encode(en, &e, &pid)
		old = append(old, en...)
		events = append(events, e)
	}
	if err := rdb.HSet(ctx, s.Key("c1"), string(cardTag("c1")), old).Err(); err != nil {
		t.Fatal(err)
	}
	events = append(events, Event{PaymentID: "new", Card: "c1", Time: at("2026-03-01T10:58:00Z")})
	for round := range 2 { // the first reads the old history, the second appends to its copy
		for i, r := range observe(t, s, events...) {
			if r.Count != int64(i+1) {
				t.Fatalf("round %d, payment %d: count %d, want %d", round, i, r.Count, i+1)
			}
		}
	}
	if n := kept(t, s, "c1"); n != 51 {
		t.Errorf("%d payments kept, want 51", n)
	}
	if fast, whole := s.Reads(); fast != 1 || whole != 1 {
		t.Errorf("appended from the copy %d times, read whole %d times; want once each", fast, whole)
	}
	if n := rdb.HLen(ctx, s.Key("c1")).Val(); n != 1 {
		t.Errorf("%d fields in the bucket, want the head alone", n)
	}
	list := fmt.Sprintf("%s:%x", s.Key("c1"), cardTag("c1"))
	if n := rdb.LLen(ctx, list).Val(); n != 2 {
		t.Errorf("%d sealed chunks in %s, want 2", n, list)
	}
	if ttl := rdb.PTTL(ctx, list).Val(); ttl < 30*24*time.Hour {
		t.Errorf("the chunks' TTL: %s", ttl)
	}
}
