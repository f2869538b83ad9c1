package window

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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

func newTestStore(t *testing.T, now time.Time) (*Store, *redis.Client, *pipelines, *clock) {
	t.Helper()
	rdb, p := testRedis(t)
	c := &clock{now}
	prefix := fmt.Sprintf("fdtest%d", rand.Int64())
	s := NewStore(rdb, Config{Length: time.Hour, Threshold: 10, AllowedLateness: time.Hour, KeyPrefix: prefix}, c.now)
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
	if err := s.Observe(context.Background(), events, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEleventhPaymentOfTheHourIsOverTheThreshold(t *testing.T) {
	s, _, p, _ := newTestStore(t, at("2026-03-01T10:30:00Z"))
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
	if res[9].Count > s.cfg.Threshold || res[10].Count <= s.cfg.Threshold {
		t.Errorf("10th count %d flagged or 11th count %d not", res[9].Count, res[10].Count)
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
	s, _, _, _ := newTestStore(t, at("2026-03-01T11:30:00Z"))
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
	s, _, _, _ := newTestStore(t, at("2026-03-01T12:30:00Z"))
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
	s, rdb, _, _ := newTestStore(t, at("2026-03-01T12:30:00Z"))
	rng := rand.New(rand.NewPCG(1, 2))
	var events []Event
	for i := range 1000 {
		events = append(events, Event{PaymentID: fmt.Sprintf("p%04d", i), Card: fmt.Sprintf("c%02d", rng.IntN(50)),
			Time: at("2026-03-01T11:00:00Z").Add(time.Duration(rng.IntN(90*60)) * time.Second)})
	}
	first := make(map[string]int64)
	for i := 0; i < len(events); i += 100 {
		for j, r := range observe(t, s, events[i:i+100]...) {
			first[events[i+j].PaymentID] = r.Count
		}
	}
	snapshot := func() map[string]map[string]string {
		keys, err := rdb.Keys(context.Background(), s.cfg.KeyPrefix+":*").Result()
		if err != nil {
			t.Fatal(err)
		}
		all := map[string]map[string]string{}
		for _, k := range keys {
			all[k], _ = rdb.HGetAll(context.Background(), k).Result()
		}
		return all
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
	after := snapshot()
	if fmt.Sprint(before) != fmt.Sprint(after) {
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

func TestEveryKeyExpiresAndOldWindowsAreDropped(t *testing.T) {
	s, rdb, _, c := newTestStore(t, at("2026-03-01T10:30:00Z"))
	observe(t, s, Event{PaymentID: "a", Card: "c1", Time: at("2026-03-01T10:10:00Z")}, Event{PaymentID: "b", Card: "c2", Time: at("2026-03-01T10:20:00Z")})
	c.t = at("2026-03-01T13:30:00Z") // 10:00's window is over, lateness included
	observe(t, s, Event{PaymentID: "c", Card: "c1", Time: at("2026-03-01T13:10:00Z")})
	keys, err := rdb.Keys(context.Background(), s.cfg.KeyPrefix+":*").Result()
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	for _, k := range keys {
		ttl, err := rdb.PTTL(context.Background(), k).Result()
		// c1's newest window is 13:00-14:00: it lives until 15:00 plus the margin, 1h40m from 13:30.
		if err != nil || ttl <= 0 || ttl > 2*time.Hour {
			t.Errorf("%s: TTL %s (%v)", k, ttl, err)
		}
	}
	fields, _ := rdb.HKeys(context.Background(), s.Key("c1")).Result()
	for _, f := range fields {
		if !strings.HasPrefix(f, fmt.Sprint("w", s.index(at("2026-03-01T13:00:00Z")))) && !strings.HasPrefix(f, fmt.Sprint("p", s.index(at("2026-03-01T13:00:00Z")))) {
			t.Errorf("field %q of a window that is over was kept", f)
		}
	}
	if len(fields) != 2 {
		t.Errorf("fields %q, want the 13:00 window and its one marker", fields)
	}
}
