package e2e

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/paysentry/fraud-detector/internal/paygen"
)

// amountOnly is the setting of a rules file whose velocity rule is out of reach, for tests of
// delivery rather than windows.
func amountOnly(t *testing.T) string {
	return rulesEnv(t, "expression: card.window_count > 10", "expression: card.window_count > 1000000000")
}

// TestCrashMidStream kills the service with SIGKILL while 50,000 payments stream in, starts it
// again, and requires every payment over the threshold on high-risk-payments at least once and the
// group caught up. Duplicates are allowed (at-least-once) and reported.
func TestCrashMidStream(t *testing.T) {
	const total = 50_000
	tp := newTopics(t, 6)
	client := newClient(t)
	// This test is about delivery: only the amount rule flags (the velocity tests are in window_test.go).
	svc := startService(t, tp, amountOnly(t))

	gen := paygen.New(paygen.Config{Seed: 42, Cards: 5_000, BurstShare: 0.002, CardNumberShare: 0.1, Clock: time.Now})
	shouldFlag := map[string]bool{}
	w, closeKcat := kcatPipe(t, tp.payments)
	began := time.Now()
	killed := false
	for i := range total {
		r := gen.Next()
		if overThreshold(t, r.Amount) {
			shouldFlag[r.ID] = true
		}
		fmt.Fprintf(w, "%s\t%s\n", r.Key, r.Value)
		// Pace the input at about 10,000/s so that the service is mid-stream when it dies.
		if i%500 == 499 {
			w.Flush()
			if d := time.Until(began.Add(time.Duration(i+1) * 100 * time.Microsecond)); d > 0 {
				time.Sleep(d)
			}
		}
		if i == total*2/5 {
			w.Flush()
			waitForOutput(t, client, tp.highRisk, 100)
			svc.kill(t)
			killed = true
			t.Logf("killed the service with SIGKILL after %d of %d payments were written", i+1, total)
		}
	}
	closeKcat()
	if !killed {
		t.Fatal("the service was never killed")
	}
	l, end := lag(t, client, newAdmin(t), tp.group, tp.payments)
	if l == 0 {
		t.Fatalf("nothing left to do after the crash (lag 0 of %d): the test did not kill mid-stream", end)
	}
	t.Logf("after the crash: %d of %d payments not committed", l, end)

	svc = startService(t, tp, amountOnly(t))
	waitCaughtUp(t, svc, tp, 120*time.Second)

	duplicates, missing := flaggedAtLeastOnce(t, decisionCounts(t, client, tp.highRisk), shouldFlag)
	t.Logf("crash result: %d payments, %d should be flagged, %d decisions written, %d duplicates (%.2f%%), %d missing",
		total, len(shouldFlag), len(shouldFlag)+duplicates, duplicates, 100*float64(duplicates)/float64(len(shouldFlag)), missing)
	if dlq := readAll(t, client, tp.dlq); len(dlq) != 0 {
		t.Errorf("%d dead letters from valid payments, first: %s", len(dlq), header(dlq[0], "error.message"))
	}
	svc.stop(t)
}

// flaggedAtLeastOnce requires every payment of shouldFlag decided, and nothing else, and counts
// the decisions written more than once and the payments missing.
func flaggedAtLeastOnce(t *testing.T, seen map[string]int, shouldFlag map[string]bool) (duplicates, missing int) {
	t.Helper()
	for id, n := range seen {
		if !shouldFlag[id] {
			t.Errorf("%s flagged but not over the threshold", id)
		}
		duplicates += n - 1
	}
	for id := range shouldFlag {
		if seen[id] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("%s should be flagged and is not on high-risk-payments", id)
			}
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d flagged payments missing", missing, len(shouldFlag))
	}
	return duplicates, missing
}

// waitForOutput waits until topic holds at least n records.
func waitForOutput(t *testing.T, client sarama.Client, topic string, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		sum := endOffsets(t, client, topic)
		if sum >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %d records after 30 s, want %d", topic, sum, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStopDrainsAndCommits sends SIGTERM while the service works through a backlog. It must exit 0,
// and because a clean stop waits for the outputs in flight and commits their offsets, the restart
// must decide the rest without repeating any decision: every flagged payment exactly once.
func TestStopDrainsAndCommits(t *testing.T) {
	const total = 60_000
	tp := newTopics(t, 6)
	client := newClient(t)
	gen := paygen.New(paygen.Config{Seed: 9, Cards: 5_000, CardNumberShare: 0.1, Clock: time.Now})
	shouldFlag := map[string]bool{}
	w, closeKcat := kcatPipe(t, tp.payments)
	for range total {
		r := gen.Next()
		if overThreshold(t, r.Amount) {
			shouldFlag[r.ID] = true
		}
		fmt.Fprintf(w, "%s\t%s\n", r.Key, r.Value)
	}
	closeKcat()

	// Small batches, one in flight per partition: slow enough that SIGTERM lands mid-backlog.
	slow := []string{"FRAUD_STREAM_BATCH_SIZE=20", "FRAUD_STREAM_MAX_IN_FLIGHT_BATCHES=1", amountOnly(t)}
	svc := startService(t, tp, slow...)
	waitForOutput(t, client, tp.highRisk, 200)
	svc.stop(t) // requires exit 0
	l, end := lag(t, client, newAdmin(t), tp.group, tp.payments)
	if l == 0 {
		t.Fatalf("the backlog of %d was done before SIGTERM: the test did not stop mid-stream", end)
	}
	t.Logf("stopped with SIGTERM, %d of %d payments left", l, end)

	svc = startService(t, tp, amountOnly(t))
	waitCaughtUp(t, svc, tp, 120*time.Second)
	seen := decisionCounts(t, client, tp.highRisk)
	for id := range shouldFlag {
		if seen[id] != 1 {
			t.Errorf("%s decided %d times, want exactly once after a clean stop", id, seen[id])
		}
	}
	if len(seen) != len(shouldFlag) {
		t.Errorf("%d payments decided, %d should be", len(seen), len(shouldFlag))
	}
	svc.stop(t)
}

// decisionCounts reads topic and counts the decisions of each payment.
func decisionCounts(t *testing.T, client sarama.Client, topic string) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for _, m := range readAll(t, client, topic) {
		var d decisionRecord
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatalf("decision is not JSON: %v: %s", err, m.Value)
		}
		seen[d.PaymentID]++
	}
	return seen
}
