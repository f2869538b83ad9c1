package window

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// TestAggregatesEqualBruteForce sends 45 days of payments of 30 cards at 12 merchants, in batches,
// with payments out of order, late, far ahead and redelivered, and requires every result to
// equal what a direct computation over the payments gives. The batches go to two stores on the
// same Redis, as to two instances, at random, and now and then to a third that starts with no
// copies of the cards' histories, so that copies are current, stale, or missing.
func TestAggregatesEqualBruteForce(t *testing.T) {
	start := at("2026-03-01T00:00:00Z")
	first, _, _, c := newTestStore(t, start, 8)
	stores := []*Store{first, NewStore(first.rdb, first.cfg, c.now)}
	rng := rand.New(rand.NewPCG(3, 4))
	countries := []string{"", "DE", "FR", "US", "NL"}
	var sent []Event
	newEvent := func(clock time.Time, i int) Event {
		delay := time.Duration(rng.IntN(60)) * time.Second
		switch r := rng.IntN(100); {
		case r < 10: // out of order, or late: up to the lateness, a window and the margin behind
			delay = time.Duration(rng.IntN(int((2*time.Hour+expiryMargin)/time.Second))) * time.Second
		case r < 11: // a wrong clock, far ahead
			delay = -time.Duration(2+rng.IntN(100)) * time.Hour
		}
		e := Event{PaymentID: fmt.Sprintf("p%05d", i), Card: fmt.Sprintf("card-%02d", rng.IntN(30)),
			Time: clock.Add(-delay), Amount: decimal.New(int64(1+rng.IntN(50000)), -2),
			Country: countries[rng.IntN(len(countries))]}
		if rng.IntN(10) > 0 {
			e.Merchant = fmt.Sprintf("merchant-%d", rng.IntN(12))
		}
		if rng.IntN(10) > 2 {
			e.Device = fmt.Sprintf("device-%d", rng.IntN(8))
		}
		return e
	}

	var b brute
	clock := start
	checked, full := 0, 0
	for i := 0; clock.Before(start.Add(45 * 24 * time.Hour)); {
		var batch []Event
		clock = clock.Add(time.Duration(rng.IntN(4*3600)) * time.Second)
		for range 1 + rng.IntN(30) {
			clock = clock.Add(time.Duration(rng.IntN(60)) * time.Second)
			if len(sent) > 0 && rng.IntN(20) == 0 {
				batch = append(batch, sent[rng.IntN(len(sent))]) // a redelivery
				continue
			}
			e := newEvent(clock, i)
			if len(sent) > 0 && rng.IntN(10) == 0 {
				// On a horizon's edge, or a second inside it, from an earlier payment of the card.
				h := []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour}[rng.IntN(4)]
				behind := time.Duration(rng.IntN(int((2*time.Hour+expiryMargin)/time.Second))) * time.Second
				for k := len(sent) - 1; k >= 0; k-- {
					if p := sent[k]; p.Time.Add(h).Before(clock.Add(-behind)) {
						e.Card, e.Time = p.Card, p.Time.Add(h-time.Duration(rng.IntN(2))*time.Second)
						b.edges++
						break
					}
				}
			}
			i++
			sent = append(sent, e)
			batch = append(batch, e)
		}
		c.t = clock
		s := stores[rng.IntN(len(stores))]
		if rng.IntN(20) == 0 {
			s = NewStore(first.rdb, first.cfg, c.now)
		}
		got := observe(t, s, batch...)
		want, check := b.observe(s.cfg, clock, batch)
		if _, err := s.Fold(context.Background()); err != nil {
			t.Fatal(err)
		}
		for j := range batch {
			switch check[j] {
			case checkNothing:
				continue
			case checkAll:
				full++
			case checkCount: // its aggregates may look back past what is kept
				got[j].Aggregates, want[j].Aggregates = Aggregates{}, Aggregates{}
			}
			if got[j] != want[j] {
				t.Fatalf("at %s, %s of %s at %s:\n got %+v\nwant %+v", clock.Format(time.RFC3339), batch[j].PaymentID,
					batch[j].Card, batch[j].Time.Format(time.RFC3339), got[j], want[j])
			}
			checked++
		}
	}
	var fast, whole int64
	for _, s := range stores {
		f, w := s.Reads()
		fast, whole = fast+f, whole+w
	}
	if fast < 1000 || whole < 100 {
		t.Errorf("cards appended to from a copy %d times, read whole %d times: want both often", fast, whole)
	}
	t.Logf("cards appended to from a copy %d times, read whole %d times", fast, whole)
	if b.counted < 1000 || b.late < 20 || b.ahead < 20 || b.again < 50 || b.edges < 100 {
		t.Errorf("the payments did not cover the cases: %d counted, %d late, %d ahead, %d redelivered, %d on an edge",
			b.counted, b.late, b.ahead, b.again, b.edges)
	}
	t.Logf("%d results checked (%d with their aggregates): %d payments counted, %d late, %d ahead, %d redelivered, %d on an edge",
		checked, full, b.counted, b.late, b.ahead, b.again, b.edges)
}

// brute keeps every payment counted, in the order counted, and computes results directly from them.
type brute struct {
	history                     []Event               // counted
	snapshots                   map[string]Aggregates // merchant counts by merchant and day, as first asked for
	edges                       int                   // payments sent on an edge
	counted, late, ahead, again int
}

// What of a result the brute force can check: all of it for a payment that could still be
// counted; for one older than that its count, since its aggregates may look back past what is
// kept (30 days before the oldest event time that can still be counted); for one older than
// what is kept, nothing.
const (
	checkAll = iota
	checkCount
	checkNothing
)

func (b *brute) observe(cfg Config, now time.Time, batch []Event) ([]Result, []int) {
	before := b.history // merchants count what was folded before the batch
	for _, e := range batch {
		if b.find(e.PaymentID) >= 0 {
			b.again++
			continue
		}
		switch start := e.Time.Truncate(cfg.Length); {
		case e.Time.After(now.Add(cfg.Length + expiryMargin)):
			b.ahead++
		case !start.Add(cfg.Length + cfg.AllowedLateness).After(now):
			b.late++
		default:
			b.history = append(b.history, e)
			b.counted++
		}
	}
	countable := now.Add(-cfg.Length - cfg.AllowedLateness - expiryMargin)
	out := make([]Result, len(batch))
	check := make([]int, len(batch))
	for i, e := range batch {
		switch {
		case e.Time.Before(countable.Add(-30 * 24 * time.Hour)):
			check[i] = checkNothing
		case !e.Time.After(countable):
			check[i] = checkCount
		}
		r := Result{Window: e.Time.Truncate(cfg.Length)}
		prior := b.history // a payment not counted: all the card's payments counted so far
		pos := b.find(e.PaymentID)
		ahead := e.Time.After(now.Add(cfg.Length + expiryMargin))
		if pos >= 0 {
			prior = b.history[:pos]
		}
		switch {
		case ahead:
			r.Ahead = true
		case pos < 0:
			r.Late = true
		default:
			r.Count = 1
			for _, p := range prior {
				if p.Card == e.Card && p.Time.Truncate(cfg.Length).Equal(r.Window) {
					r.Count++
				}
			}
		}
		r.Aggregates = aggregates(e, prior)
		if e.Merchant != "" && !ahead {
			// The merchant's counts as the day's first payment there found them folded (none for
			// a payment too far ahead to count: it takes no snapshot).
			if b.snapshots == nil {
				b.snapshots = map[string]Aggregates{}
			}
			id := fmt.Sprint(e.Merchant, e.Time.Unix()/86400)
			m, ok := b.snapshots[id]
			if !ok {
				m = merchantAggregates(e, before)
				b.snapshots[id] = m
			}
			r.MerchantCount1d, r.MerchantCount7d, r.MerchantCount30d = m.MerchantCount1d, m.MerchantCount7d, m.MerchantCount30d
			r.MerchantDelayed = m.MerchantDelayed
		}
		out[i] = r
	}
	return out, check
}

func (b *brute) find(id string) int {
	for i, p := range b.history {
		if p.PaymentID == id {
			return i
		}
	}
	return -1
}

// aggregates computes a payment's card aggregates from the card's prior payments.
func aggregates(e Event, prior []Event) Aggregates {
	a := Aggregates{SincePrevious: -1}
	counts := []*int64{&a.Count1h, &a.Count24h, &a.Count7d, &a.Count30d}
	sum := [4]decimal.Decimal{}
	seenCountry, seenMerchant, seenDevice := false, false, false
	for _, p := range prior {
		age := e.Time.Sub(p.Time)
		if p.Card != e.Card || age < 0 || age >= 30*24*time.Hour {
			continue
		}
		for k, h := range []time.Duration{time.Hour, 24 * time.Hour, 7 * 24 * time.Hour, 30 * 24 * time.Hour} {
			if age < h {
				*counts[k]++
				sum[k] = sum[k].Add(p.Amount)
			}
		}
		if a.SincePrevious < 0 || int64(age/time.Second) < a.SincePrevious {
			a.SincePrevious = int64(age / time.Second)
		}
		seenCountry = seenCountry || p.Country == e.Country
		seenMerchant = seenMerchant || p.Merchant == e.Merchant
		seenDevice = seenDevice || p.Device == e.Device
	}
	a.Sum1h, a.Sum24h, a.Sum7d, a.Sum30d = sum[0].InexactFloat64(), sum[1].InexactFloat64(), sum[2].InexactFloat64(), sum[3].InexactFloat64()
	a.NewCountry = e.Country != "" && !seenCountry
	a.NewMerchant = e.Merchant != "" && !seenMerchant
	a.NewDevice = e.Device != "" && !seenDevice
	return a
}

// merchantAggregates computes a payment's merchant counts from the payments folded for merchants.
func merchantAggregates(e Event, all []Event) Aggregates {
	var a Aggregates
	{
		// A merchant keeps the days from merchantDays before its newest.
		days := func(t time.Time) int64 { return t.Unix() / 86400 }
		newest := int64(0)
		for _, p := range all {
			if p.Merchant == e.Merchant {
				newest = max(newest, days(p.Time))
			}
		}
		for _, p := range all {
			back := days(e.Time) - days(p.Time)
			if p.Merchant != e.Merchant || back < 1 || days(p.Time) < newest-merchantDays {
				continue
			}
			if back > LabelDelayDays {
				for k, w := range []int64{1, 7, 30} {
					if back <= LabelDelayDays+w {
						a.MerchantDelayed.Count[k]++
					}
				}
			}
			if back > 30 {
				continue
			}
			a.MerchantCount30d++
			if back <= 7 {
				a.MerchantCount7d++
			}
			if back == 1 {
				a.MerchantCount1d++
			}
		}
	}
	return a
}

func TestHundredths(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint32
	}{
		{"100", 10000}, {"0.01", 1}, {"0.005", 1}, {"0.0049", 0}, {"12.345", 1235}, {"1e3", 100000},
		{"42949672.95", 1<<32 - 1}, {"42949672.94", 1<<32 - 2}, {"99999999999999999999.99", 1<<32 - 1},
		{"0.000000000001", 0}, {"1.999999999999", 200}, {"1234567.891234567891", 123456789},
	} {
		if got := hundredths(decimal.RequireFromString(tc.in)); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.in, got, tc.want)
		}
	}
}

// Verdicts count for the payment's merchant on the payment's day, once however often they come,
// and a later verdict replaces an earlier one.
func TestLabelsCountForTheMerchant(t *testing.T) {
	s, _, _, c := newTestStore(t, at("2026-03-03T10:30:00Z"), 16)
	ctx := context.Background()
	observe(t, s, Event{PaymentID: "a", Card: "c1", Time: at("2026-03-03T10:00:00Z"), Merchant: "m1"},
		Event{PaymentID: "b", Card: "c2", Time: at("2026-03-03T10:10:00Z"), Merchant: "m1"},
		Event{PaymentID: "n", Card: "c3", Time: at("2026-03-03T10:20:00Z")})
	for _, tc := range []struct {
		card, id string
		fraud    bool
		applied  bool
	}{
		{"c1", "a", true, true}, {"c1", "a", true, true}, {"c2", "b", true, true}, {"c2", "b", false, true},
		{"c1", "unknown", true, false}, {"c3", "n", true, false}, // no such payment; no merchant
	} {
		if applied, err := s.Label(ctx, tc.card, tc.id, tc.fraud); err != nil || applied != tc.applied {
			t.Fatalf("label %+v: %v, %v", tc, applied, err)
		}
	}
	c.t = at("2026-03-05T10:30:00Z")
	r := observe(t, s, Event{PaymentID: "later", Card: "c9", Time: at("2026-03-05T10:20:00Z"), Merchant: "m1"})[0]
	if r.MerchantFraud30d != 1 || r.MerchantCount7d != 0 {
		// MerchantCount7d is 0: a, b were never folded in this test.
		t.Errorf("merchant fraud %d, count %d; want a alone", r.MerchantFraud30d, r.MerchantCount7d)
	}
	r = observe(t, s, Event{PaymentID: "other", Card: "c9", Time: at("2026-03-05T10:21:00Z"), Merchant: "m2"})[0]
	if r.MerchantFraud30d != 0 {
		t.Errorf("another merchant has %d fraud", r.MerchantFraud30d)
	}
}

// A payment decided again gets the merchant counts it got the first time, whatever was folded or
// labelled in between, also when it comes again after midnight; the next day's payments see them.
func TestRedeliveredPaymentKeepsItsMerchantCounts(t *testing.T) {
	s, rdb, _, c := newTestStore(t, at("2026-03-02T23:59:00Z"), 16)
	ctx := context.Background()
	fold := func() {
		t.Helper()
		if _, err := s.Fold(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Three payments at m on the 1st, folded; two more on the 2nd, folded before midnight.
	c.t = at("2026-03-01T12:00:00Z")
	observe(t, s, Event{PaymentID: "d1a", Card: "c1", Time: at("2026-03-01T11:00:00Z"), Merchant: "m"},
		Event{PaymentID: "d1b", Card: "c2", Time: at("2026-03-01T11:10:00Z"), Merchant: "m"},
		Event{PaymentID: "d1c", Card: "c3", Time: at("2026-03-01T11:20:00Z"), Merchant: "m"})
	fold()
	c.t = at("2026-03-02T23:58:00Z")
	first := observe(t, s, Event{PaymentID: "p", Card: "c4", Time: at("2026-03-02T23:57:00Z"), Merchant: "m"})[0]
	if first.MerchantCount1d != 3 || first.MerchantCount30d != 3 {
		t.Fatalf("first decision: merchant counts %d (1d), %d (30d); want 3, 3", first.MerchantCount1d, first.MerchantCount30d)
	}
	// In between: more payments of the 1st (late) and of the 2nd folded, a fraud label, midnight.
	c.t = at("2026-03-02T23:59:00Z")
	observe(t, s, Event{PaymentID: "late", Card: "c5", Time: at("2026-03-01T23:30:00Z"), Merchant: "m"},
		Event{PaymentID: "q", Card: "c6", Time: at("2026-03-02T23:58:30Z"), Merchant: "m"})
	fold()
	if applied, err := s.Label(ctx, "c1", "d1a", true); err != nil || !applied {
		t.Fatalf("label: %v, %v", applied, err)
	}
	c.t = at("2026-03-03T00:00:30Z")
	again := observe(t, s, Event{PaymentID: "p", Card: "c4", Time: at("2026-03-02T23:57:00Z"), Merchant: "m"})[0]
	if again != first {
		t.Errorf("redelivered after midnight:\n got %+v\nwant %+v", again, first)
	}
	// Another instance, which has read no snapshot yet, gets the same from Redis.
	other := NewStore(rdb, s.cfg, s.now)
	if r := observe(t, other, Event{PaymentID: "p", Card: "c4", Time: at("2026-03-02T23:57:00Z"), Merchant: "m"})[0]; r != first {
		t.Errorf("redelivered to another instance:\n got %+v\nwant %+v", r, first)
	}
	next := observe(t, s, Event{PaymentID: "r", Card: "c7", Time: at("2026-03-03T00:00:10Z"), Merchant: "m"})[0]
	if next.MerchantCount1d != 2 || next.MerchantCount7d != 5 || next.MerchantFraud30d != 1 {
		t.Errorf("next day: 1d %d, 7d %d, fraud %d; want 2, 5, 1", next.MerchantCount1d, next.MerchantCount7d, next.MerchantFraud30d)
	}
}

// A merchant's delayed counts are of the days before the label delay: a fraud labelled on a
// payment 8 days back is in the 1-day delayed window; one 7 days back is in none yet, and one 38
// days back has been forgotten.
func TestDelayedMerchantCounts(t *testing.T) {
	s, _, _, c := newTestStore(t, at("2026-03-01T12:00:00Z"), 16)
	ctx := context.Background()
	pay := func(id string, when time.Time) {
		c.t = when.Add(time.Minute)
		observe(t, s, Event{PaymentID: id, Card: "card-" + id, Time: when, Merchant: "m1"})
		if _, err := s.Fold(ctx); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Label(ctx, "card-"+id, id, true); err != nil || !ok {
			t.Fatalf("label %s: %v, %v", id, ok, err)
		}
	}
	day := at("2026-03-01T10:00:00Z")
	back := func(n int) time.Time { return day.Add(time.Duration(38-n) * 24 * time.Hour) }
	pay("d38", back(38)) // day 0; the payment below is on day 38
	pay("d37", back(37))
	pay("d10", back(10))
	pay("d8", back(8))
	c.t = back(8).Add(2 * time.Hour)
	observe(t, s, Event{PaymentID: "legit", Card: "c2", Time: back(8).Add(time.Hour), Merchant: "m1"})
	pay("d7", back(7))
	c.t = back(0).Add(time.Minute)
	r := observe(t, s, Event{PaymentID: "now", Card: "c3", Time: back(0), Merchant: "m1"})[0]
	want := MerchantDelayed{Count: [3]int64{2, 3, 4}, Fraud: [3]int64{1, 2, 3}}
	if r.MerchantDelayed != want {
		t.Errorf("delayed counts %+v, want %+v", r.MerchantDelayed, want)
	}
	if r.MerchantFraud30d != 3 || r.MerchantCount30d != 4 {
		t.Errorf("30-day counts: %d fraud of %d, want 3 of 4", r.MerchantFraud30d, r.MerchantCount30d)
	}
}
