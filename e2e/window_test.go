package e2e

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
)

// windowDecision is the part of a decision these tests read.
type windowDecision struct {
	PaymentID   string `json:"payment_id"`
	CardID      string `json:"card_id"`
	WindowCount *int64 `json:"window_count"`
	Reasons     []struct {
		Code, Detail string
	} `json:"reasons"`
}

func windowDecisions(t *testing.T, client sarama.Client, topic string) []windowDecision {
	t.Helper()
	var ds []windowDecision
	for _, m := range readAll(t, client, topic) {
		var d windowDecision
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return ds
}

// payment is a valid payment record line for kcat: KEY<TAB>VALUE.
func payment(id, card, amount string, at time.Time) string {
	return card + "\t" + `{"payment_id":"` + id + `","card_id":"` + card + `","amount":"` + amount +
		`","currency":"EUR","timestamp":"` + at.UTC().Format(time.RFC3339Nano) + `"}`
}

func TestVelocityFlagsTheEleventhAndTwelfth(t *testing.T) {
	tp := newTopics(t, 6)
	svc := startService(t, tp)
	hour := time.Now().UTC().Truncate(time.Hour)
	var lines []string
	for i := range 12 {
		lines = append(lines, payment(fmt.Sprintf("v-%02d", i+1), "card-busy", "10.00", hour.Add(time.Duration(i)*time.Second)))
		lines = append(lines, payment(fmt.Sprintf("q-%02d", i+1), fmt.Sprintf("card-quiet-%d", i), "10.00", hour))
	}
	kcatProduce(t, tp.payments, lines, false)
	waitCaughtUp(t, svc, tp, 60*time.Second)

	ds := windowDecisions(t, newClient(t), tp.highRisk)
	if len(ds) != 2 {
		t.Fatalf("%d decisions, want 2: %+v", len(ds), ds)
	}
	for _, d := range ds {
		want := map[string]int64{"v-11": 11, "v-12": 12}[d.PaymentID]
		if want == 0 || d.WindowCount == nil || *d.WindowCount != want || len(d.Reasons) != 1 ||
			d.Reasons[0].Code != "card_velocity_1h" || !strings.Contains(d.Reasons[0].Detail, fmt.Sprintf("%d payments", want)) {
			t.Errorf("decision %+v", d)
		}
	}
	svc.stop(t)
}

// sibling is another group reading the same payments, writing to topics of its own and keeping
// its windows under its own key prefix.
func (tp topics) sibling(t *testing.T) topics {
	other := newTopics(t, 1)
	other.payments, other.partitions = tp.payments, tp.partitions
	return other
}

// windowCounts counts the payments in every card's history under a key prefix, by window: bucket,
// card field and hour -> count. (The layout: see windowKey in outage_test.go.)
func windowCounts(t *testing.T, prefix string) map[string]string {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	ctx := context.Background()
	keys, err := rdb.Keys(ctx, prefix+":{[0-9]*}").Result() // the card buckets (not their cards' chunk lists)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]string{}
	for _, k := range keys {
		n := map[string]int{}
		for f, history := range cardHistories(t, rdb, k) {
			for off := 0; off+24 <= len(history); off += 24 {
				hour := binary.BigEndian.Uint32([]byte(history[off:off+4])) / 3600
				n[fmt.Sprintf("%s %x %d", strings.TrimPrefix(k, prefix), f, hour)]++
			}
		}
		for w, c := range n {
			counts[w] = strconv.Itoa(c)
		}
	}
	return counts
}

// A run killed with SIGKILL mid-stream and restarted ends with exactly the window counts of a run
// over the same payments without the crash, and gives every payment the same count.
func TestCrashLeavesTheSameWindowCounts(t *testing.T) {
	const total = 20_000
	calm := newTopics(t, 6)
	crashed := calm.sibling(t)
	client := newClient(t)

	// 300 cards, a few of them busy, in the current hour and the one before (still open).
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Now().UTC()
	var lines []string
	for i := range total {
		card := fmt.Sprintf("card-%03d", int(300*rng.Float64()*rng.Float64()))
		at := now.Add(-time.Duration(rng.IntN(int(time.Hour/time.Second))) * time.Second)
		lines = append(lines, payment(fmt.Sprintf("w-%05d", i), card, fmt.Sprintf("%d.00", 1+rng.IntN(99)), at))
	}
	kcatProduce(t, calm.payments, lines, false)

	a := startService(t, calm)
	waitCaughtUp(t, a, calm, 120*time.Second)
	a.stop(t)

	// Small batches, one in flight: the kill lands mid-stream.
	slow := []string{"FRAUD_STREAM_BATCH_SIZE=20", "FRAUD_STREAM_MAX_IN_FLIGHT_BATCHES=1"}
	b := startService(t, crashed, slow...)
	waitForOutput(t, client, crashed.highRisk, 50)
	b.kill(t)
	l, end := lag(t, client, newAdmin(t), crashed.group, crashed.payments)
	if l == 0 {
		t.Fatal("the crashed run had finished before the kill")
	}
	t.Logf("killed with %d of %d payments not committed", l, end)
	b = startService(t, crashed)
	waitCaughtUp(t, b, crashed, 120*time.Second)
	b.stop(t)

	want, got := windowCounts(t, calm.group), windowCounts(t, crashed.group)
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("%d windows after the crash, %d without", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("window %s: %s after the crash, %s without", k, got[k], v)
		}
	}
	counts := map[string]int64{}
	for _, d := range windowDecisions(t, client, calm.highRisk) {
		counts[d.PaymentID] = *d.WindowCount
	}
	dup := 0
	seen := map[string]bool{}
	for _, d := range windowDecisions(t, client, crashed.highRisk) {
		if seen[d.PaymentID] {
			dup++
		}
		seen[d.PaymentID] = true
		if c, ok := counts[d.PaymentID]; !ok || c != *d.WindowCount {
			t.Errorf("%s: window count %d after the crash, %d without", d.PaymentID, *d.WindowCount, c)
		}
	}
	if len(seen) != len(counts) {
		t.Errorf("%d payments flagged after the crash, %d without", len(seen), len(counts))
	}
	t.Logf("%d windows equal; %d flagged payments with equal counts; %d repeated decisions", len(want), len(counts), dup)
}
