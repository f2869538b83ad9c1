package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRedeliveredDecisionsEqualTheFirst kills the service with SIGKILL at moments drawn from a
// seed (logged; FD_E2E_SEED repeats a run) while it decides two simulated days of payments that
// cross a UTC midnight, with the shipped model and the merchants' counts folding as they go, and
// restarts it each time. Every payment decided more than once must get the same decision each
// time, decided_at aside: the same window count, score, reasons and payment; and no decision may
// give a reason twice.
func TestRedeliveredDecisionsEqualTheFirst(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FD_E2E_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("FD_E2E_SEED: %v", err)
		}
	}
	t.Logf("seed %d (FD_E2E_SEED=%d repeats this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 1))

	// Two days ending at the last UTC midnight, so the stream crosses the midnight before it and
	// whatever the wall clock says, its shape is the same: the windows must count it all.
	start := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	dir := t.TempDir()
	gen := exec.Command("go", "run", "../cmd/paygen", "-world", "-start", start.Format(time.RFC3339), "-days", "2",
		"-cards", "1500", "-merchants", "200", "-fraud-scale", "30", "-seed", fmt.Sprint(seed%1000), "-keyed",
		"-out", filepath.Join(dir, "payments.tsv"))
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("paygen: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "payments.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	tp := newTopics(t, 6)
	client, admin := newClient(t), newAdmin(t)

	// Every payment flagged, so that every redelivery shows on high-risk-payments; small batches,
	// one in flight, so that a kill lands with decisions written and not committed.
	env := []string{"FRAUD_MODEL_PATH=" + shippedModel, "FRAUD_WINDOW_ALLOWED_LATENESS=72h",
		rulesEnv(t, "expression: payment.amount > 100", "expression: payment.amount > 0"), "FRAUD_STREAM_BATCH_SIZE=20", "FRAUD_STREAM_MAX_IN_FLIGHT_BATCHES=1",
		"FRAUD_KAFKA_GROUP_INSTANCE_ID=redelivery"} // a restart takes its partitions back at once
	// The payments go in four parts; the service is killed in each of the first three once a
	// number of decisions drawn from the seed is written, and started again. The second part
	// starts just before the midnight, so its kill lands among the first payments after it.
	midnight := start.AddDate(0, 0, 1)
	mid := slices.IndexFunc(lines, func(l string) bool { return !eventTime(t, l).Before(midnight) })
	if mid < 500 || mid > len(lines)-1000 {
		t.Fatalf("the midnight is at payment %d of %d", mid, len(lines))
	}
	b1 := mid - 10 - rng.IntN(40)
	b2 := b1 + 400
	b3 := b2 + rng.IntN(len(lines)-b2-100)
	parts := [][]string{lines[:b1], lines[b1:b2], lines[b2:b3], lines[b3:]}
	svc := startService(t, tp, env...)
	sent := 0
	for k, part := range parts {
		waitCommitted(t, svc, tp, int64(sent)) // the part before is done
		before := endOffsets(t, client, tp.highRisk)
		kcatProduce(t, tp.payments, part, false)
		sent += len(part)
		if k == len(parts)-1 {
			break
		}
		upTo := int64(len(part) / 2)
		if k == 1 {
			upTo = 40 // among the part's first payments: the ones around the midnight
		}
		waitForOutput(t, client, tp.highRisk, before+1+rng.Int64N(upTo))
		svc.kill(t)
		l, end := lag(t, client, admin, tp.group, tp.payments)
		t.Logf("kill %d: %d of %d payments committed, %d decisions written", k+1, end-l, end, endOffsets(t, client, tp.highRisk))
		svc = startService(t, tp, env...)
	}
	waitCaughtUp(t, svc, tp, 180*time.Second)
	svc.stop(t)

	first := map[string][]byte{}
	again, differ, nearMidnight := 0, 0, 0
	for _, m := range readAll(t, client, tp.highRisk) {
		var d map[string]any
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatalf("decision is not JSON: %v", err)
		}
		id, _ := d["payment_id"].(string)
		if d["score"] == nil {
			t.Fatalf("%s: decided without a score: %s", id, m.Value)
		}
		codes := map[any]bool{}
		reasons, _ := d["reasons"].([]any)
		for _, r := range reasons {
			c := r.(map[string]any)["code"]
			if codes[c] {
				t.Errorf("%s: reason %v twice: %s", id, c, m.Value)
			}
			codes[c] = true
		}
		delete(d, "decided_at")
		canon, _ := json.Marshal(d) // map keys sorted
		prev, seen := first[id]
		if !seen {
			first[id] = canon
			continue
		}
		again++
		if p, _ := d["payment"].(map[string]any); p != nil {
			ts, _ := p["timestamp"].(string)
			if at, err := time.Parse(time.RFC3339, ts); err == nil && at.Sub(midnight).Abs() <= time.Hour {
				nearMidnight++
			}
		}
		if !bytes.Equal(prev, canon) {
			differ++
			if differ <= 5 {
				t.Errorf("%s decided differently when redelivered:\nfirst %s\nagain %s", id, prev, canon)
			}
		}
	}
	if len(first) != len(lines) {
		t.Errorf("%d payments decided, %d sent", len(first), len(lines))
	}
	if again == 0 || nearMidnight == 0 {
		t.Fatalf("%d payments decided twice, %d of them within an hour of the midnight: the kills did not land mid-stream", again, nearMidnight)
	}
	if differ > 0 {
		t.Errorf("%d of %d redelivered decisions differ from the first", differ, again)
	}
	t.Logf("%d payments, %d decided again (%d of them within an hour of the midnight), %d differ", len(first), again, nearMidnight, differ)
}

// waitCommitted waits until the service's group has committed at least n payments.
func waitCommitted(t *testing.T, s *service, tp topics, n int64) {
	t.Helper()
	client, admin := newClient(t), newAdmin(t)
	deadline := time.Now().Add(120 * time.Second)
	for {
		l, end := lag(t, client, admin, tp.group, tp.payments)
		if end-l >= n {
			return
		}
		if !s.running() {
			t.Fatalf("service exited (%v) with %d of %d payments committed", s.err, end-l, end)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d payments committed after 120 s, want %d", end-l, end, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventTime is the timestamp of a KEY<TAB>VALUE payment line.
func eventTime(t *testing.T, line string) time.Time {
	t.Helper()
	_, v, _ := strings.Cut(line, "\t")
	var p struct {
		Timestamp time.Time `json:"timestamp"`
	}
	if err := json.Unmarshal([]byte(v), &p); err != nil {
		t.Fatalf("payment line %q: %v", line, err)
	}
	return p.Timestamp
}
