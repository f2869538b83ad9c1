package pipeline

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/redistest"
	"github.com/paysentry/fraud-detector/internal/window"
)

// These tests run the pipeline's card state stage against a real redis-server (scripts/stack.sh up
// starts one; redistest says how when it is missing).

// muteProxy stands between the client and Redis. While muted it still passes every request on,
// so Redis applies it, but drops the replies: the client's call times out with its outcome
// unknown, as when a reply is lost on the network.
type muteProxy struct {
	addr     string
	mute     atomic.Bool
	requests chan struct{} // one per request that went through while muted
}

func newMuteProxy(t *testing.T, target string) *muteProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &muteProxy{addr: ln.Addr().String(), requests: make(chan struct{}, 1024)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			wg.Add(2)
			go func() { // requests: always passed on
				defer wg.Done()
				defer server.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := client.Read(buf)
					if n > 0 {
						if _, werr := server.Write(buf[:n]); werr != nil {
							return
						}
						if p.mute.Load() {
							select {
							case p.requests <- struct{}{}:
							default:
							}
						}
					}
					if err != nil {
						return
					}
				}
			}()
			go func() { // replies: dropped while muted
				defer wg.Done()
				defer client.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := server.Read(buf)
					if n > 0 && !p.mute.Load() {
						if _, werr := client.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

// stateRig is a handler whose windows are a window.Store on rdb, at a fixed clock.
type stateRig struct {
	p     *Pipeline
	m     *Metrics
	dec   *payment.Decoder
	store *window.Store
	logs  *bytes.Buffer
	now   time.Time
}

func newStateRig(t *testing.T, rdb *redis.Client, prefix, policy string) *stateRig {
	t.Helper()
	now := time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)
	store := window.NewStore(rdb, window.Config{Length: time.Hour, AllowedLateness: time.Hour,
		KeyPrefix: prefix, Buckets: 16, MaxPaymentsPerCard: 4096}, func() time.Time { return now })
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&syncWriter{w: &logs}, nil))
	m := NewMetrics(prometheus.NewRegistry())
	p := New(Config{StateRetryBudget: 400 * time.Millisecond, StateFailurePolicy: policy}, store, nil, defaultRules(t), nil, m, log)
	return &stateRig{p: p, m: m, dec: payment.NewDecoder([]byte("test-key-0123456789"), 64<<10), store: store, logs: &logs, now: now}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// newProxiedRig is a rig whose Redis client goes through a muteProxy (100 ms read timeout, one
// retry, as the service's client), with one payment of card c1 counted.
func newProxiedRig(t *testing.T, policy string) (*stateRig, *muteProxy) {
	t.Helper()
	base, prefix := redistest.New(t, "fdstate")
	proxy := newMuteProxy(t, base.Options().Addr)
	rdb := redis.NewClient(&redis.Options{Addr: proxy.addr, ReadTimeout: 100 * time.Millisecond, MaxRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	r := newStateRig(t, rdb, prefix, policy)
	if o, err := r.decide(t, context.Background(), "warm-up"); err != nil || count(o) != 1 {
		t.Fatalf("warm-up: %+v, %v", o, err)
	}
	return r, proxy
}

// decide decides one payment of card c1, ten minutes before the rig's clock.
func (r *stateRig) decide(t *testing.T, ctx context.Context, id string) (Decision, error) {
	t.Helper()
	ts := r.now.Add(-10 * time.Minute).Format(time.RFC3339)
	pm, err := r.dec.Decode([]byte(`{"payment_id":"` + id + `","card_id":"c1","amount":"10","currency":"EUR","timestamp":"` + ts + `"}`))
	if err != nil {
		t.Fatalf("%s: %v", id, err)
	}
	out := make([]Decision, 1)
	if err := r.p.Decide(ctx, []*payment.Payment{&pm}, out); err != nil {
		return Decision{}, err
	}
	return out[0], nil
}

func hasReason(o Decision, code string) bool {
	for _, r := range o.Reasons {
		if r.Code == code {
			return true
		}
	}
	return false
}

func count(o Decision) int64 {
	if o.WindowCount == nil {
		return -1
	}
	return *o.WindowCount
}

// fail_open with a call whose outcome is unknown: Redis applied it, but the reply never came. The
// payment is decided without its card's state (degraded_state) and is counted once all the same:
// the card's next payment sees it, and its redelivery finds it and gets its count.
func TestFailOpenWhenTheOutcomeIsUnknown(t *testing.T) {
	r, proxy := newProxiedRig(t, FailOpen)
	ctx := context.Background()
	proxy.mute.Store(true)
	first, err := r.decide(t, ctx, "p1")
	if err != nil {
		t.Fatal(err)
	}
	proxy.mute.Store(false)
	if !hasReason(first, decision.CodeDegraded) || first.WindowCount != nil || !r.p.Degraded() {
		t.Fatalf("p1 while the replies are lost: %+v, want degraded_state without a count", first)
	}
	select {
	case <-proxy.requests:
	default:
		t.Fatal("no request reached Redis while the replies were lost")
	}
	next, err := r.decide(t, ctx, "p2")
	if err != nil || count(next) != 3 || hasReason(next, decision.CodeDegraded) {
		t.Fatalf("p2: %+v, %v; want count 3 (warm-up, p1 and p2)", next, err)
	}
	again, err := r.decide(t, ctx, "p1")
	if err != nil || count(again) != 2 || hasReason(again, decision.CodeDegraded) {
		t.Errorf("p1 redelivered: %+v, %v; want its count as first counted, 2", again, err)
	}
	counts, err := r.store.Counts(ctx, "c1")
	if err != nil || counts[r.now.Truncate(time.Hour)] != 3 {
		t.Errorf("window counts %v, %v; want 3", counts, err)
	}
}

// fail_closed with calls whose outcome is unknown: the batch waits, trying again, until Redis
// answers, and its payment is then counted once, with the count it got when first applied.
func TestFailClosedWhenTheOutcomeIsUnknown(t *testing.T) {
	r, proxy := newProxiedRig(t, FailClosed)
	ctx := context.Background()
	proxy.mute.Store(true)
	type result struct {
		o   Decision
		err error
	}
	done := make(chan result, 1)
	go func() {
		o, err := r.decide(t, ctx, "p1")
		done <- result{o, err}
	}()
	// Wait for two tries to reach Redis with their replies lost, then let replies through.
	deadline := time.After(30 * time.Second)
	for range 2 {
		select {
		case <-proxy.requests:
		case res := <-done:
			t.Fatalf("decided while no reply came: %+v, %v", res.o, res.err)
		case <-deadline:
			t.Fatal("the batch did not try Redis twice within 30 s")
		}
	}
	for !r.p.Degraded() { // set once a try has failed
		select {
		case res := <-done:
			t.Fatalf("decided while no reply came: %+v, %v", res.o, res.err)
		case <-deadline:
			t.Fatal("not degraded within 30 s while holding")
		case <-time.After(5 * time.Millisecond):
		}
	}
	proxy.mute.Store(false)
	var res result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("not decided within 30 s of Redis answering again")
	}
	if res.err != nil || count(res.o) != 2 || hasReason(res.o, decision.CodeDegraded) {
		t.Fatalf("p1: %+v, %v; want count 2, not degraded", res.o, res.err)
	}
	counts, err := r.store.Counts(ctx, "c1")
	if err != nil || counts[r.now.Truncate(time.Hour)] != 2 {
		t.Errorf("window counts %v, %v; want 2: p1 counted once however often it was applied", counts, err)
	}
}

// Redis losing its data mid-stream is found by the next batch, logged once, counted in
// fraud_state_losses_total and reported by StateLost; the stream goes on from nothing.
func TestStateLossIsReported(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: redistest.Start(t, "--port")})
	t.Cleanup(func() { rdb.Close() })
	r := newStateRig(t, rdb, "fd", FailOpen)
	ctx := context.Background()
	for _, id := range []string{"p1", "p2"} {
		if _, err := r.decide(t, ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if !r.p.StateLost().IsZero() || testutil.ToFloat64(r.m.stateLosses) != 0 {
		t.Fatal("a loss reported before any")
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	o, err := r.decide(t, ctx, "p3")
	if err != nil || count(o) != 1 {
		t.Fatalf("p3 after the flush: %+v, %v; want count 1", o, err)
	}
	for _, id := range []string{"p4", "p5"} {
		if _, err := r.decide(t, ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if got := testutil.ToFloat64(r.m.stateLosses); got != 1 {
		t.Errorf("fraud_state_losses_total %v, want 1", got)
	}
	if lost := r.p.StateLost(); !lost.Equal(r.now) {
		t.Errorf("StateLost %s, want the store's clock %s", lost, r.now)
	}
	if n := strings.Count(r.logs.String(), "redis lost its data"); n != 1 {
		t.Errorf("%d log lines about the loss, want 1:\n%s", n, r.logs)
	}
}
