package e2e

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/paysentry/fraud-detector/internal/paygen"
)

// TestRestartWithStaticMembership kills the service with SIGKILL mid-stream and starts it again
// with the same kafka.group_instance_id. The broker hands the new process the dead one's
// partitions without waiting for its session to time out, so every partition must move on well
// within half the session timeout of the restart (a dynamic member would wait for the dead one's
// session to expire). Every payment over the threshold must be decided; the duplicates, the
// decisions whose offsets were not committed before the kill, are reported.
func TestRestartWithStaticMembership(t *testing.T) {
	const (
		before, after  = 20_000, 20_000
		sessionTimeout = 30 * time.Second
	)
	tp := newTopics(t, 6)
	client, admin := newClient(t), newAdmin(t)
	settings := []string{amountOnly(t), "FRAUD_KAFKA_GROUP_INSTANCE_ID=e2e-a",
		fmt.Sprintf("FRAUD_KAFKA_SESSION_TIMEOUT=%s", sessionTimeout)}
	svc := startService(t, tp, settings...)

	// Event times in the last hour, so that the windows are written as in production; only the
	// amount flags, so the verdicts do not depend on the time.
	gen := paygen.New(paygen.Config{Seed: 11, Cards: 5_000, CardNumberShare: 0.1,
		Start: time.Now().Add(-time.Hour), Interval: 50 * time.Millisecond})
	shouldFlag := map[string]bool{}
	write := func(n int, paced bool) {
		w, closeKcat := kcatPipe(t, tp.payments)
		began := time.Now()
		for i := range n {
			r := gen.Next()
			if overThreshold(t, r.Amount) {
				shouldFlag[r.ID] = true
			}
			fmt.Fprintf(w, "%s\t%s\n", r.Key, r.Value)
			// About 10,000/s, so that the service is busy deciding and committing when it dies.
			if paced && i%500 == 499 {
				w.Flush()
				if d := time.Until(began.Add(time.Duration(i+1) * 100 * time.Microsecond)); d > 0 {
					time.Sleep(d)
				}
			}
		}
		closeKcat()
	}

	write(before, true)
	waitForOutput(t, client, tp.highRisk, 100)
	svc.kill(t)
	killedAt := time.Now()
	uncommitted, end := lag(t, client, admin, tp.group, tp.payments)
	t.Logf("killed with SIGKILL: %d of %d payments not committed", uncommitted, end)

	// A backlog on every partition, so that each must be taken up again.
	committed := committedOffsets(t, client, admin, tp)
	write(after, false)
	decided := endOffsets(t, client, tp.highRisk)

	restartedAt := time.Now()
	svc = startService(t, tp, settings...)
	firstDecision, allMoved := waitForProgress(t, svc, client, admin, tp, committed, decided, 2*sessionTimeout)
	t.Logf("restart with the same group instance id: first new decision %s after the restart, every partition committed again after %s (%s after the kill; session timeout %s)",
		firstDecision.Round(time.Millisecond), allMoved.Round(time.Millisecond), restartedAt.Add(allMoved).Sub(killedAt).Round(time.Millisecond), sessionTimeout)
	if allMoved >= sessionTimeout/2 {
		t.Errorf("the partitions moved on %s after the restart, want well within the session timeout (%s): the restarted member waited for the dead one's session",
			allMoved.Round(time.Millisecond), sessionTimeout)
	}

	waitCaughtUp(t, svc, tp, 120*time.Second)
	duplicates, _ := flaggedAtLeastOnce(t, decisionCounts(t, client, tp.highRisk), shouldFlag)
	t.Logf("after the kill and restart: %d payments, %d should be flagged, %d duplicate decisions (%.2f%%; %d payments were decided again at most)",
		before+after, len(shouldFlag), duplicates, 100*float64(duplicates)/float64(len(shouldFlag)), uncommitted)
	svc.stop(t)
}

// committedOffsets is the group's committed offset of each partition of the payments topic.
func committedOffsets(t *testing.T, client sarama.Client, admin sarama.ClusterAdmin, tp topics) map[int32]int64 {
	t.Helper()
	parts, err := client.Partitions(tp.payments)
	if err != nil {
		t.Fatal(err)
	}
	res, err := admin.ListConsumerGroupOffsets(tp.group, map[string][]int32{tp.payments: parts})
	if err != nil {
		t.Fatalf("committed offsets of %s: %v", tp.group, err)
	}
	offsets := map[int32]int64{}
	for _, p := range parts {
		offsets[p] = 0
		if b := res.GetBlock(tp.payments, p); b != nil && b.Offset >= 0 {
			offsets[p] = b.Offset
		}
	}
	return offsets
}

// endOffsets is the sum of the newest offsets of topic's partitions: how many records it holds.
func endOffsets(t *testing.T, client sarama.Client, topic string) int64 {
	t.Helper()
	if err := client.RefreshMetadata(topic); err != nil {
		t.Fatal(err)
	}
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, p := range parts {
		// A topic just made may not have its leaders known yet to this client: a stale leader
		// answers "not the leader", and the metadata read again names the right one.
		o, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		for try := 0; errors.Is(err, sarama.ErrNotLeaderForPartition) && try < 50; try++ {
			client.RefreshMetadata(topic)
			time.Sleep(100 * time.Millisecond) // the broker's metadata, not an event this test can await
			o, err = client.GetOffset(topic, p, sarama.OffsetNewest)
		}
		if err != nil {
			t.Fatal(err)
		}
		sum += o
	}
	return sum
}

// waitForProgress polls, from its call, until the high-risk topic holds more than decided records
// and the group has committed past committed on every partition, and returns how long each took.
func waitForProgress(t *testing.T, s *service, client sarama.Client, admin sarama.ClusterAdmin, tp topics,
	committed map[int32]int64, decided int64, within time.Duration) (firstDecision, allMoved time.Duration) {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	moved := map[int32]bool{}
	for {
		if firstDecision == 0 && endOffsets(t, client, tp.highRisk) > decided {
			firstDecision = time.Since(start)
		}
		for p, o := range committedOffsets(t, client, admin, tp) {
			if o > committed[p] {
				moved[p] = true
			}
		}
		if allMoved == 0 && len(moved) == len(committed) {
			allMoved = time.Since(start)
		}
		if firstDecision != 0 && allMoved != 0 {
			return firstDecision, allMoved
		}
		if !s.running() {
			t.Fatalf("the service exited (%v) before every partition moved on (%d of %d)", s.err, len(moved), len(committed))
		}
		select {
		case <-deadline.C:
			t.Fatalf("within %s of the restart: %d of %d partitions committed again, first new decision after %s",
				within, len(moved), len(committed), firstDecision)
		case <-tick.C:
		}
	}
}
