package window

import (
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// An index answers as read does, for payments new to a history and no earlier than any in it,
// however the history's times, amounts and tags are mixed, and as it grows.
func TestIndexAnswersAsReadDoes(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	start := at("2026-03-01T00:00:00Z")
	entry := func(i int, when time.Time) []byte {
		e := Event{PaymentID: fmt.Sprintf("p%d", i), Time: when, Amount: decimal.New(int64(1+rng.IntN(100000)), -2),
			Country: []string{"", "DE", "FR"}[rng.IntN(3)], Merchant: []string{"", "m1", "m2", "m3"}[rng.IntN(4)],
			Device: []string{"", "d1", "d2"}[rng.IntN(3)]}
		pid := sha256.Sum256([]byte(e.PaymentID))
		en := make([]byte, entrySize)
		encode(en, &e, &pid)
		return en
	}
	for round := range 50 {
		var history []byte
		n := indexFrom + rng.IntN(300)
		for i := range n { // arrival order, times out of order over 40 days
			history = append(history, entry(round*1000+i, start.Add(time.Duration(rng.IntN(40*86400))*time.Second))...)
		}
		x := newIndex(string(history))
		clock := start.Add(40 * 24 * time.Hour)
		cutoff := clock.Add(-31 * 24 * time.Hour).Unix()
		for k := range 20 {
			clock = clock.Add(time.Duration(rng.IntN(7200)) * time.Second)
			own := entry(round*1000+n+k, clock)
			gotAgg, gotCount := x.read(own, 3600, cutoff)
			wantAgg, wantCount, found := read(string(history), own, 3600, cutoff)
			if found || gotAgg != wantAgg || gotCount != wantCount {
				t.Fatalf("round %d, payment %d:\n got %+v, count %d\nwant %+v, count %d", round, k, gotAgg, gotCount, wantAgg, wantCount)
			}
			x.add(own)
			history = append(history, own...)
		}
	}
}
