package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// privateRedis is a redis-server of one test's own, with its state on disk (append-only file), so
// that the test can stop and restart it without touching the stack's.
type privateRedis struct {
	addr, dir string
	cmd       *exec.Cmd
}

func startPrivateRedis(t *testing.T) *privateRedis {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	r := &privateRedis{addr: addr, dir: t.TempDir()}
	r.start(t)
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *privateRedis) start(t *testing.T) {
	t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--dir", r.dir,
		"--save", "", "--appendonly", "yes", "--appendfsync", "always")
	r.cmd.SysProcAttr = dieWithTest()
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start redis-server (scripts/stack.sh up installs it): %v", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	defer rdb.Close()
	deadline := time.Now().Add(10 * time.Second)
	for rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer", r.addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *privateRedis) stop(t *testing.T) {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Signal(syscall.SIGTERM)
	r.cmd.Wait()
	r.cmd = nil
}

// windowKey, windowField and cardHistories are the documented layout of the card state
// (internal/window): bucket = first 4 bytes of SHA-256(card) mod window.buckets (65536); the
// card's field = the next 6 bytes; its history = 24 bytes a payment counted, starting with the
// event time in Unix seconds, big-endian, kept in the card's field (the head: a header and the
// newest entries) and its sealed chunks. Written out again here so that the test checks the layout
// rather than shares it.
func windowKey(prefix, card string) string {
	sum := sha256.Sum256([]byte(card))
	return fmt.Sprintf("%s:{%d}", prefix, binary.BigEndian.Uint32(sum[:4])%65536)
}

func windowField(card string) string {
	sum := sha256.Sum256([]byte(card))
	return string(sum[4:10])
}

// cardHistories reads the histories of a bucket's cards, by card field. A card with fewer than 21
// payments has its entries alone in its field. A longer one's head is a header of 12 bytes
// (generation, 2; the number of sealed chunks, 2; the last event time, 4; the oldest chunk's
// newest time, 4) and the newest entries; its sealed chunks are the list <bucket key>:<card field,
// hex>, oldest first, each its newest event time (4 bytes) and entries.
func cardHistories(t *testing.T, rdb *redis.Client, key string) map[string]string {
	t.Helper()
	ctx := context.Background()
	fields, err := rdb.HGetAll(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for f, head := range fields {
		if len(head)%24 == 0 { // a history shorter than a chunk: its entries alone
			out[f] = head
			continue
		}
		n := int(binary.BigEndian.Uint16([]byte(head[2:4])))
		chunks, err := rdb.LRange(ctx, fmt.Sprintf("%s:%x", key, f), 0, -1).Result()
		if err != nil || len(chunks) != n {
			t.Fatalf("%s: card %x has %d sealed chunks (%v), its head says %d", key, f, len(chunks), err, n)
		}
		var h strings.Builder
		for _, c := range chunks {
			h.WriteString(c[4:]) // after its newest time
		}
		h.WriteString(head[12:])
		out[f] = h.String()
	}
	return out
}

type outagePayment struct {
	id, card string
	at       time.Time
}

func outagePayments(rng *rand.Rand, set string, n int) ([]outagePayment, []string) {
	now := time.Now().UTC()
	var ps []outagePayment
	var lines []string
	for i := range n {
		p := outagePayment{id: fmt.Sprintf("%s-%04d", set, i), card: fmt.Sprintf("card-%02d", rng.IntN(40)),
			at: now.Add(-time.Duration(rng.IntN(1800)) * time.Second)}
		ps = append(ps, p)
		lines = append(lines, payment(p.id, p.card, fmt.Sprintf("%d.50", 1+rng.IntN(150)), p.at))
	}
	return ps, lines
}

// checkCounts requires the stored windows to equal a count by hand of the payments given.
func checkCounts(t *testing.T, r *privateRedis, prefix string, counted []outagePayment) {
	t.Helper()
	type window struct {
		key, field string
		hour       int64
	}
	want := map[window]int64{}
	for _, p := range counted {
		want[window{windowKey(prefix, p.card), windowField(p.card), p.at.Unix() / 3600}]++
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), prefix+":{[0-9]*}").Result() // the card buckets (not their cards' chunk lists)
	if err != nil {
		t.Fatal(err)
	}
	got := map[window]int64{}
	for _, k := range keys {
		for f, history := range cardHistories(t, rdb, k) {
			for off := 0; off+24 <= len(history); off += 24 {
				got[window{k, f, int64(binary.BigEndian.Uint32([]byte(history[off:off+4]))) / 3600}]++
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d windows stored, %d expected", len(got), len(want))
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("window %v: %d stored, %d payments", k, got[k], n)
		}
	}
}

func waitForLog(t *testing.T, s *service, text string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.logs.String(), text) {
		if time.Now().After(deadline) || !s.running() {
			t.Fatalf("the service did not log %q", text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fail_closed: while Redis is down nothing is decided or marked; after it returns every payment is
// counted exactly once.
func TestRedisOutageFailClosed(t *testing.T) {
	r := startPrivateRedis(t)
	tp := newTopics(t, 3)
	svc := startService(t, tp, "FRAUD_REDIS_ADDRS="+r.addr, "FRAUD_STREAM_STATE_FAILURE_POLICY=fail_closed",
		"FRAUD_STREAM_STATE_RETRY_BUDGET=1s")
	rng := rand.New(rand.NewPCG(5, 6))
	before, lines := outagePayments(rng, "before", 1500)
	kcatProduce(t, tp.payments, lines, false)
	waitCaughtUp(t, svc, tp, 60*time.Second)

	r.stop(t)
	during, lines := outagePayments(rng, "during", 1500)
	kcatProduce(t, tp.payments, lines, false)
	waitForLog(t, svc, "holding the partitions until it answers (fail_closed)")
	if l, _ := lag(t, newClient(t), newAdmin(t), tp.group, tp.payments); l == 0 {
		t.Fatal("payments were committed while Redis was down")
	}

	r.start(t)
	waitCaughtUp(t, svc, tp, 60*time.Second)
	waitForLog(t, svc, "redis answers again")
	checkCounts(t, r, tp.group, append(before, during...))
	for _, d := range windowDecisions(t, newClient(t), tp.highRisk) {
		for _, reason := range d.Reasons {
			if reason.Code == "degraded_state" {
				t.Errorf("%s decided degraded under fail_closed", d.PaymentID)
			}
		}
	}
	if n := strings.Count(svc.logs.String(), "redis unavailable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	svc.stop(t)
}

// fail_open: while Redis is down payments are decided on the rules with degraded_state and are
// not counted; before and after, every payment is counted exactly once.
func TestRedisOutageFailOpen(t *testing.T) {
	r := startPrivateRedis(t)
	tp := newTopics(t, 3)
	svc := startService(t, tp, "FRAUD_REDIS_ADDRS="+r.addr, "FRAUD_STREAM_STATE_FAILURE_POLICY=fail_open",
		"FRAUD_STREAM_STATE_RETRY_BUDGET=1s")
	rng := rand.New(rand.NewPCG(7, 8))
	before, lines := outagePayments(rng, "before", 1500)
	kcatProduce(t, tp.payments, lines, false)
	waitCaughtUp(t, svc, tp, 60*time.Second)

	r.stop(t)
	_, lines = outagePayments(rng, "during", 1500)
	kcatProduce(t, tp.payments, lines, false)
	waitCaughtUp(t, svc, tp, 60*time.Second) // consumed while Redis is down

	r.start(t)
	after, lines := outagePayments(rng, "after", 1500)
	kcatProduce(t, tp.payments, lines, false)
	waitCaughtUp(t, svc, tp, 60*time.Second)
	waitForLog(t, svc, "redis answers again")

	checkCounts(t, r, tp.group, append(before, after...))
	degraded := 0
	for _, d := range windowDecisions(t, newClient(t), tp.highRisk) {
		isDuring := strings.HasPrefix(d.PaymentID, "during-")
		hasDegraded := false
		for _, reason := range d.Reasons {
			hasDegraded = hasDegraded || reason.Code == "degraded_state"
		}
		if isDuring != hasDegraded || isDuring && d.WindowCount != nil {
			t.Errorf("%s: reasons %+v, window count %v", d.PaymentID, d.Reasons, d.WindowCount)
		}
		if hasDegraded {
			degraded++
		}
	}
	if degraded == 0 {
		t.Error("no degraded decision during the outage")
	}
	if n := strings.Count(svc.logs.String(), "redis unavailable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once", n)
	}
	t.Logf("%d decisions made without the windows during the outage", degraded)
	svc.stop(t)
}
