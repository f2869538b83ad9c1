package review

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/redistest"
)

// These tests run against a real redis-server: scripts/stack.sh up starts one on 127.0.0.1:6379,
// or set FD_TEST_REDIS. Each test writes under its own key prefix.

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newTestStore(t *testing.T) (*Store, *redis.Client, *clock) {
	t.Helper()
	rdb, prefix := redistest.New(t, "rvtest")
	c := &clock{time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	return NewStore(rdb, Config{KeyPrefix: prefix, Retention: 30 * 24 * time.Hour}, c.now), rdb, c
}

func flagged(id, card string, score *float64, codes ...string) decision.Decision {
	// No decided_at: the review is as old as the store's clock says.
	d := decision.Decision{PaymentID: id, CardID: card, Flagged: true, Score: score, Payment: []byte(`{"payment_id":"` + id + `"}`)}
	for _, c := range codes {
		d.Reasons = append(d.Reasons, decision.Reason{Code: c, Detail: "d"})
	}
	return d
}

func ptr[T any](v T) *T { return &v }

func TestOpenIsIdempotent(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	d := flagged("p1", "c1", ptr(0.7), decision.CodeModel)
	for i, want := range []bool{true, false, false} {
		if opened, err := s.Open(ctx, d); err != nil || opened != want {
			t.Fatalf("open #%d: %v, %v", i+1, opened, err)
		}
	}
	r, audit, err := s.Get(ctx, "p1")
	if err != nil || r.Status != StatusOpen || r.CardID != "c1" || *r.Score != 0.7 || r.Decision.PaymentID != "p1" || len(audit) != 1 || audit[0].Event != "opened" {
		t.Errorf("review %+v, audit %+v, %v", r, audit, err)
	}
	if _, _, err := s.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing review: %v", err)
	}
}

func TestVerdictOnceWithAuditTrail(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	s.Open(ctx, flagged("p1", "c1", ptr(0.9), decision.CodeModel))
	c.t = c.t.Add(time.Minute)
	r, err := s.Decide(ctx, "p1", Verdict{Label: StatusFraud, Analyst: "ana", Note: "called the bank", DecidedAt: c.t})
	if err != nil || r.Status != StatusFraud || r.Verdict == nil || r.Verdict.Analyst != "ana" {
		t.Fatalf("decide: %+v, %v", r, err)
	}
	if _, err := s.Decide(ctx, "p1", Verdict{Label: StatusLegitimate, Analyst: "bob", DecidedAt: c.t}); !errors.Is(err, ErrAlreadyDecided) {
		t.Errorf("second verdict: %v", err)
	}
	if _, err := s.Decide(ctx, "nope", Verdict{Label: StatusFraud, DecidedAt: c.t}); !errors.Is(err, ErrNotFound) {
		t.Errorf("verdict on no review: %v", err)
	}
	if _, err := s.Decide(ctx, "p1", Verdict{Label: "maybe", DecidedAt: c.t}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad label: %v", err)
	}
	_, audit, _ := s.Get(ctx, "p1")
	if len(audit) != 2 || audit[1].Event != "decided" || audit[1].Analyst != "ana" || audit[1].Label != StatusFraud || audit[1].Note != "called the bank" {
		t.Errorf("audit %+v", audit)
	}
	for status, want := range map[string]int{StatusOpen: 0, StatusFraud: 1, StatusLegitimate: 0} {
		p, err := s.List(ctx, Filter{Status: status, Limit: 10})
		if err != nil || len(p.Reviews) != want {
			t.Errorf("status %s: %d reviews, %v", status, len(p.Reviews), err)
		}
	}
}

// Every filter and both orders equal a brute-force selection, page after page.
func TestListFiltersAndOrders(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 6))
	codes := []string{decision.CodeAmount, decision.CodeVelocity, decision.CodeModel}
	var all []Review
	start := c.t
	for i := range 60 {
		c.t = start.Add(time.Duration(i/3) * time.Second) // three at a time: ties in time
		var score *float64
		if rng.IntN(4) > 0 {
			score = ptr(float64(rng.IntN(10)) / 10) // ties in score
		}
		d := flagged(fmt.Sprintf("p%02d", i), fmt.Sprintf("c%d", rng.IntN(4)), score, codes[rng.IntN(3)])
		if _, err := s.Open(ctx, d); err != nil {
			t.Fatal(err)
		}
		r, _, _ := s.Get(ctx, d.PaymentID)
		if rng.IntN(5) == 0 {
			r, _ = s.Decide(ctx, d.PaymentID, Verdict{Label: StatusLegitimate, Analyst: "a", DecidedAt: c.t})
		}
		all = append(all, r)
	}
	scoreOf := func(r Review) float64 {
		if r.Score == nil {
			return -1
		}
		return *r.Score
	}
	for _, f := range []Filter{
		{}, {Status: StatusOpen}, {Status: StatusLegitimate}, {Card: "c1"}, {Reason: decision.CodeModel},
		{Card: "c2", Status: StatusOpen, Reason: decision.CodeAmount},
		{From: start.Add(5 * time.Second), To: start.Add(12 * time.Second)},
		{Riskiest: true}, {Riskiest: true, Status: StatusOpen}, {Riskiest: true, Card: "c3"},
	} {
		var want []string
		sorted := slices.Clone(all)
		slices.SortStableFunc(sorted, func(a, b Review) int {
			if f.Riskiest {
				return cmp.Or(cmp.Compare(scoreOf(b), scoreOf(a)), cmp.Compare(b.PaymentID, a.PaymentID))
			}
			return cmp.Or(b.CreatedAt.Compare(a.CreatedAt), cmp.Compare(b.PaymentID, a.PaymentID))
		})
		for _, r := range sorted {
			if f.match(r) {
				want = append(want, r.PaymentID)
			}
		}
		var got []string
		f.Limit = 7
		for pages := 0; ; pages++ {
			p, err := s.List(ctx, f)
			if err != nil {
				t.Fatalf("%+v: %v", f, err)
			}
			for _, r := range p.Reviews {
				got = append(got, r.PaymentID)
			}
			if p.Next == "" || pages > 20 {
				break
			}
			f.Cursor = p.Next
		}
		if !slices.Equal(got, want) {
			t.Errorf("filter %+v:\n got %v\nwant %v", f, got, want)
		}
	}
}

// Reviews opened while an analyst pages through the queue neither repeat nor make one skip a
// review; that holds past a run of ties longer than a read (the reviews without a score).
func TestPagingWhileReviewsArrive(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	before := map[string]bool{}
	for i := range 450 {
		c.t = c.t.Add(time.Millisecond)
		id := fmt.Sprintf("old-%03d", i)
		s.Open(ctx, flagged(id, "c1", nil, decision.CodeAmount))
		before[id] = true
	}
	for _, riskiest := range []bool{false, true} {
		seen := map[string]bool{}
		f := Filter{Limit: 50, Riskiest: riskiest}
		for page := 0; ; page++ {
			p, err := s.List(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range p.Reviews {
				if seen[r.PaymentID] {
					t.Fatalf("riskiest %v: %s on two pages", riskiest, r.PaymentID)
				}
				seen[r.PaymentID] = true
			}
			for i := range 5 { // new arrivals, some riskier than anything before
				c.t = c.t.Add(time.Millisecond)
				s.Open(ctx, flagged(fmt.Sprintf("new-%v-%02d-%d", riskiest, page, i), "c2", ptr(0.99), decision.CodeModel))
			}
			if p.Next == "" {
				break
			}
			f.Cursor = p.Next
		}
		for id := range before {
			if !seen[id] {
				t.Errorf("riskiest %v: %s never listed", riskiest, id)
			}
		}
	}
}

func TestBadArgumentsAndRetention(t *testing.T) {
	s, rdb, c := newTestStore(t)
	ctx := context.Background()
	for _, f := range []Filter{{Limit: 0}, {Limit: 501}, {Limit: 5, Status: "closed"}, {Limit: 5, Cursor: "%%%"}, {Limit: 5, Cursor: "bm8tc2VwYXJhdG9y"}} {
		if _, err := s.List(ctx, f); !errors.Is(err, ErrInvalidArgument) && !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("filter %+v: %v", f, err)
		}
	}
	s.Open(ctx, flagged("early", "c1", ptr(0.5), decision.CodeModel))
	s.Decide(ctx, "early", Verdict{Label: StatusFraud, Analyst: "a", DecidedAt: c.t})
	for _, k := range []string{s.key("r", "early"), s.key("a", "early"), s.key("cc", "c1"), s.key("s", StatusFraud), s.key("ks", StatusFraud)} {
		if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 || ttl > 31*24*time.Hour {
			t.Errorf("%s: TTL %s", k, ttl)
		}
	}
	c.t = c.t.Add(31 * 24 * time.Hour)
	for i := range 64 { // one opening in 64 maintains the indexes
		s.Open(ctx, flagged(fmt.Sprintf("late-%02d", i), "c1", ptr(0.5), decision.CodeModel))
	}
	for _, k := range []string{s.key("s", StatusFraud), s.key("ks", StatusFraud)} {
		if ids := rdb.ZRange(ctx, k, 0, -1).Val(); slices.Contains(ids, "early") {
			t.Errorf("%s still lists a review past the retention", k)
		}
	}
}

func TestOpenAllInOneRoundTrip(t *testing.T) {
	s, _, _ := newTestStore(t)
	ctx := context.Background()
	ds := []decision.Decision{flagged("a", "c1", nil, decision.CodeAmount), flagged("b", "c2", ptr(0.8), decision.CodeModel)}
	for i, want := range []int{2, 0} { // the second time, a redelivery: nothing new
		opened, err := s.OpenAll(ctx, ds)
		if err != nil {
			t.Fatal(err)
		}
		if opened != want {
			t.Errorf("call %d opened %d, want %d", i+1, opened, want)
		}
	}
	p, err := s.List(ctx, Filter{Limit: 10})
	if err != nil || len(p.Reviews) != 2 {
		t.Errorf("%d reviews, %v", len(p.Reviews), err)
	}
	_, audit, _ := s.Get(ctx, "a")
	if len(audit) != 1 {
		t.Errorf("audit %v after a redelivery", audit)
	}
}

// A list that filters out nearly everything stops after examining a bounded number of entries and
// hands back a cursor to go on from.
func TestListExaminesABoundedNumber(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	var ds []decision.Decision
	for i := range maxExamined + 300 {
		ds = append(ds, flagged(fmt.Sprintf("p%05d", i), "common", nil, decision.CodeAmount))
	}
	ds = append(ds, flagged("a-rare", "rare-card", nil, decision.CodeModel)) // last in riskiest-first order (ties by id)
	c.t = c.t.Add(-time.Hour)
	ds[len(ds)-1].DecidedAt = c.t // the oldest: last in newest-first order
	if _, err := s.OpenAll(ctx, ds); err != nil {
		t.Fatal(err)
	}
	f := Filter{Riskiest: true, Reason: decision.CodeModel, Limit: 10}
	p, err := s.List(ctx, f)
	if err != nil || len(p.Reviews) != 0 || p.Next == "" {
		t.Fatalf("first page: %d reviews, next %q, %v", len(p.Reviews), p.Next, err)
	}
	f.Cursor = p.Next
	if p, err = s.List(ctx, f); err != nil || len(p.Reviews) != 1 || p.Reviews[0].PaymentID != "a-rare" {
		t.Errorf("second page: %+v, %v", p, err)
	}
	if _, err := s.List(ctx, Filter{Limit: 5, Cursor: "TmFOfHg"}); !errors.Is(err, ErrInvalidCursor) { // NaN|x
		t.Errorf("NaN cursor: %v", err)
	}
}

// A batch larger than a call, with redeliveries within a call and across calls, cards and reasons
// shared and repeated, fills every index as opening the reviews one by one would; a later batch
// that draws a maintenance ticket drops the reviews past the retention.
func TestOpenAllBatches(t *testing.T) {
	s, rdb, c := newTestStore(t)
	ctx := context.Background()
	codes := []string{decision.CodeAmount, decision.CodeVelocity, decision.CodeModel}
	var ds []decision.Decision
	want := map[string][]redis.Z{} // index key: entries
	for i := range 2*maxPerCall + 50 {
		if i%9 == 8 { // a redelivery in the same call, then one from an earlier call
			ds = append(ds, ds[i-1], ds[max(0, i-maxPerCall-3)])
			continue
		}
		var score *float64
		if i%4 > 0 {
			score = ptr(float64(i%10) / 10)
		}
		d := flagged(fmt.Sprintf("p%03d", i), fmt.Sprintf("c%d", i%7), score, codes[i%3], codes[(i+i/3)%3])
		d.DecidedAt = c.t.Add(-time.Duration(i) * time.Minute) // a backlog
		if i%5 == 0 {
			d.DecidedAt = time.Time{} // as old as the store's clock says
		}
		ds = append(ds, d)
		created := float64(c.t.Add(-time.Duration(i) * time.Minute).UnixMilli())
		if i%5 == 0 {
			created = float64(c.t.UnixMilli())
		}
		byScore := -1.0
		if score != nil {
			byScore = *score
		}
		k := s.key("s", StatusOpen)
		want[k] = append(want[k], redis.Z{Score: created, Member: d.PaymentID})
		k = s.key("ks", StatusOpen)
		want[k] = append(want[k], redis.Z{Score: byScore, Member: d.PaymentID})
	}
	opened := len(want[s.key("s", StatusOpen)])
	for i, w := range []int{opened, 0} { // the second time, a redelivery of it all
		if n, err := s.OpenAll(ctx, ds); err != nil || n != w {
			t.Fatalf("call %d: opened %d, %v; want %d", i+1, n, err, w)
		}
	}
	for k, w := range want {
		slices.SortFunc(w, func(a, b redis.Z) int {
			return cmp.Or(cmp.Compare(a.Score, b.Score), cmp.Compare(a.Member.(string), b.Member.(string)))
		})
		if got := rdb.ZRangeWithScores(ctx, k, 0, -1).Val(); !slices.Equal(got, w) {
			t.Errorf("%s:\n got %v\nwant %v", k, got, w)
		}
		if ttl := rdb.PTTL(ctx, k).Val(); ttl < 30*24*time.Hour || ttl > 31*24*time.Hour {
			t.Errorf("%s: TTL %s", k, ttl)
		}
	}
	r, _, err := s.Get(ctx, "p011")
	if err != nil || r.CardID != "c4" || *r.Score != 0.1 || !slices.Equal(r.Reasons, []string{codes[2], codes[2]}) ||
		!r.CreatedAt.Equal(c.t.Add(-11*time.Minute)) {
		t.Errorf("review %+v, %v", r, err)
	}
	if ttl := rdb.PTTL(ctx, s.key("r", "p011")).Val(); ttl <= 29*24*time.Hour || ttl > 30*24*time.Hour {
		t.Errorf("record: TTL %s", ttl)
	}

	c.t = c.t.Add(31 * 24 * time.Hour)
	var late []decision.Decision
	for i := range 64 { // one opening in 64 maintains the indexes
		late = append(late, flagged(fmt.Sprintf("late-%02d", i), "c1", ptr(0.5), decision.CodeModel))
	}
	if n, err := s.OpenAll(ctx, late); err != nil || n != 64 {
		t.Fatalf("late batch: opened %d, %v", n, err)
	}
	for _, k := range []string{s.key("s", StatusOpen), s.key("ks", StatusOpen)} {
		if ids := rdb.ZRange(ctx, k, 0, -1).Val(); len(ids) != 64 || !strings.HasPrefix(ids[0], "late-") {
			t.Errorf("%s lists %d reviews, from %v", k, len(ids), ids[:min(3, len(ids))])
		}
	}
}

// Redis lost its scripts (a restart, SCRIPT FLUSH): the store loads the script again, and counts
// each review once.
func TestOpenAllLoadsTheScriptAgain(t *testing.T) {
	s, rdb, _ := newTestStore(t)
	ctx := context.Background()
	var ds []decision.Decision
	for i := range maxPerCall + 10 {
		ds = append(ds, flagged(fmt.Sprintf("p%03d", i), "c1", nil, decision.CodeAmount))
	}
	if n, err := s.OpenAll(ctx, ds[:5]); err != nil || n != 5 {
		t.Fatalf("opened %d, %v", n, err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := s.OpenAll(ctx, ds); err != nil || n != len(ds)-5 {
		t.Errorf("after the scripts were flushed: opened %d, %v; want %d", n, err, len(ds)-5)
	}
}

// BenchmarkOpenAll opens reviews as the review group does, in round trips of 100 decisions of
// realistic size (detect's maxReviewsPerCall) and of 150, and reports the reviews opened a
// second, Redis's CPU time per review opened (used_cpu_sys and used_cpu_user from INFO, so run it
// with nothing else using that Redis: FD_TEST_REDIS can name one of its own) and the slowest
// round trip, which must stay far below redis.read_timeout:
//
//	go test -run '^$' -bench OpenAll -benchtime 20000x ./internal/review
//
// BenchmarkOpenAll opens reviews 100 a call: each of its own card, so that each opens a case
// (batch=100), or ten a card in a row, so that nine in ten join their card's case.
func BenchmarkOpenAll(b *testing.B) {
	b.Run("batch=100", func(b *testing.B) { benchmarkOpenAll(b, 100, 1) })
	b.Run("batch=100/card-payments=10", func(b *testing.B) { benchmarkOpenAll(b, 100, 10) })
}

func benchmarkOpenAll(b *testing.B, perCall, perCard int) {
	rdb, prefix := redistest.New(b, "rvbench")
	s := NewStore(rdb, Config{KeyPrefix: prefix, Retention: 30 * 24 * time.Hour}, time.Now)
	ctx := context.Background()
	payment := []byte(`{"payment_id":"p","card_id":"tok_0123456789abcdef","amount":"250.00","currency":"EUR",` +
		`"timestamp":"2026-03-01T09:59:58Z","merchant_id":"m-1234","merchant_category":"5411","country":"DE",` +
		`"channel":"ecommerce","device_id":"dev-42","ip":"203.0.113.7"}`)
	ds := make([]decision.Decision, b.N)
	for i := range ds {
		d := flagged(fmt.Sprintf("p%09d", i), fmt.Sprintf("card-%06d", (i/perCard)%200_000), ptr(0.9), decision.CodeAmount, decision.CodeModel)
		d.Payment = payment
		ds[i] = d
	}
	cpu := func() float64 {
		info, err := rdb.Info(ctx, "cpu").Result()
		if err != nil {
			b.Fatal(err)
		}
		var sys, user float64
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_cpu_sys:"); ok {
				sys, _ = strconv.ParseFloat(v, 64)
			}
			if v, ok := strings.CutPrefix(line, "used_cpu_user:"); ok {
				user, _ = strconv.ParseFloat(v, 64)
			}
		}
		return sys + user
	}
	b.ResetTimer()
	before, began := cpu(), time.Now()
	var slowest time.Duration
	opened := 0
	for i := 0; i < len(ds); i += perCall {
		t := time.Now()
		n, err := s.OpenAll(ctx, ds[i:min(i+perCall, len(ds))])
		if err != nil {
			b.Fatal(err)
		}
		slowest = max(slowest, time.Since(t))
		opened += n
	}
	took := time.Since(began)
	used := cpu() - before
	b.StopTimer()
	if opened != b.N {
		b.Fatalf("opened %d reviews of %d", opened, b.N)
	}
	b.ReportMetric(float64(opened)/took.Seconds(), "reviews/s")
	b.ReportMetric(used*1e6/float64(opened), "redis-µs/review")
	b.ReportMetric(float64(slowest.Microseconds())/1000, "slowest-call-ms")
}

// A list of every status walks the three statuses' indexes as one: in order, each review once,
// through runs of ties longer than a read that span the indexes (many reviews in one millisecond;
// the reviews without a score), while reviews are decided between pages (a decided review moves
// to another index, at the same place in the order).
func TestListEveryStatusMergesTheIndexes(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	var all []string
	for i := range 900 {
		if i%300 == 0 {
			c.t = c.t.Add(time.Millisecond) // three runs of 300 reviews opened in one millisecond
		}
		id := fmt.Sprintf("p%03d", (i*7)%900) // ids not in the order opened
		var score *float64
		if i%3 == 0 {
			score = ptr(float64(i%5) / 10)
		}
		if _, err := s.Open(ctx, flagged(id, "c1", score, decision.CodeAmount)); err != nil {
			t.Fatal(err)
		}
		all = append(all, id)
	}
	for i, id := range all {
		if i%3 > 0 {
			label := []string{"", StatusFraud, StatusLegitimate}[i%3]
			if _, err := s.Decide(ctx, id, Verdict{Label: label, Analyst: "a", DecidedAt: c.t}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, riskiest := range []bool{false, true} {
		for _, limit := range []int{13, 200, 500} {
			want := listAll(t, s, Filter{Limit: 500, Riskiest: riskiest}, nil)
			if len(want) != len(all) {
				t.Fatalf("riskiest %v: %d listed, want %d", riskiest, len(want), len(all))
			}
			for i := 1; i < len(want); i++ {
				if first(want[i], want[i-1]) {
					t.Fatalf("riskiest %v: %v listed after %v", riskiest, want[i], want[i-1])
				}
			}
			// Again, page by page, deciding some of the open ones between pages.
			decided := 0
			got := listAll(t, s, Filter{Limit: limit, Riskiest: riskiest}, func() {
				for ; decided < len(all); decided++ {
					if r, _, err := s.Get(ctx, all[decided]); err == nil && r.Status == StatusOpen {
						s.Decide(ctx, all[decided], Verdict{Label: StatusFraud, Analyst: "b", DecidedAt: c.t})
						decided++
						return
					}
				}
			})
			if !slices.EqualFunc(got, want, func(a, b redis.Z) bool { return a.Member == b.Member && a.Score == b.Score }) {
				t.Errorf("riskiest %v, limit %d: %d listed, want %d in the order of one walk", riskiest, limit, len(got), len(want))
			}
		}
	}
}

// listAll lists every page of f, calling between after each page, and returns the reviews as
// index entries (score, payment id).
func listAll(t *testing.T, s *Store, f Filter, between func()) []redis.Z {
	t.Helper()
	var out []redis.Z
	for pages := 0; ; pages++ {
		p, err := s.List(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Reviews {
			score := float64(r.CreatedAt.UnixMilli())
			if f.Riskiest {
				score = -1
				if r.Score != nil {
					score = *r.Score
				}
			}
			out = append(out, redis.Z{Score: score, Member: r.PaymentID})
		}
		if p.Next == "" {
			return out
		}
		if pages > 1000 {
			t.Fatal("more than 1000 pages")
		}
		f.Cursor = p.Next
		if between != nil {
			between()
		}
	}
}
