package review

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/paysentry/fraud-detector/internal/decision"
)

// A card's flagged payments within the case window are one case; later ones, or after a verdict,
// open another; a redelivered decision joins nothing twice.
func TestCaseGathersACardsPayments(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	open := func(ds ...decision.Decision) {
		t.Helper()
		if _, err := s.OpenAll(ctx, ds); err != nil {
			t.Fatal(err)
		}
	}
	start := c.t
	open(flagged("a1", "c1", ptr(0.4), decision.CodeAmount), flagged("b1", "c2", nil, decision.CodeVelocity))
	c.t = c.t.Add(time.Hour)
	open(flagged("a2", "c1", ptr(0.9), decision.CodeModel, decision.CodeAmount), flagged("a1", "c1", ptr(0.4), decision.CodeAmount))
	c.t = c.t.Add(time.Hour)
	open(flagged("a3", "c1", ptr(0.2), decision.CodeVelocity))

	cs, reviews, err := s.GetCase(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if cs.CardID != "c1" || cs.Status != StatusOpen || cs.Payments != 3 || cs.Score == nil || *cs.Score != 0.9 ||
		!slices.Equal(cs.Reasons, []string{decision.CodeAmount, decision.CodeModel, decision.CodeVelocity}) ||
		!cs.OpenedAt.Equal(start) || !cs.UpdatedAt.Equal(c.t) {
		t.Errorf("case %+v", cs)
	}
	var ids []string
	for _, r := range reviews {
		ids = append(ids, r.PaymentID)
		if r.CaseID != "a1" {
			t.Errorf("review %s: case %q", r.PaymentID, r.CaseID)
		}
	}
	if !slices.Equal(ids, []string{"a3", "a2", "a1"}) {
		t.Errorf("reviews %v, want newest first", ids)
	}
	if cs, _, err := s.GetCase(ctx, "b1"); err != nil || cs.Score != nil || cs.Payments != 1 {
		t.Errorf("case b1 %+v, %v", cs, err)
	}

	// Past the window, a new case.
	c.t = start.Add(24 * time.Hour)
	open(flagged("a4", "c1", ptr(0.1), decision.CodeAmount))
	if r, _, err := s.Get(ctx, "a4"); err != nil || r.CaseID != "a4" {
		t.Errorf("a payment past the window: %+v, %v", r, err)
	}
	// A verdict closes a case: the card's next flagged payment opens another.
	if _, _, err := s.DecideCase(ctx, "a4", Verdict{Label: StatusLegitimate, Analyst: "ann", DecidedAt: c.t}); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(time.Minute)
	open(flagged("a5", "c1", ptr(0.1), decision.CodeAmount))
	if r, _, err := s.Get(ctx, "a5"); err != nil || r.CaseID != "a5" {
		t.Errorf("a payment after a verdict: %+v, %v", r, err)
	}
	if _, _, err := s.GetCase(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown case: %v", err)
	}
}

// A case's verdict decides its open reviews, leaves one labelled on its own, and moves the case
// and the reviews to the label's indexes; a second verdict is refused.
func TestDecideCase(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	for i := range 4 {
		if _, err := s.Open(ctx, flagged(fmt.Sprintf("p%d", i), "c1", ptr(0.5+float64(i)/10), decision.CodeAmount)); err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(time.Minute)
	}
	if _, err := s.Decide(ctx, "p2", Verdict{Label: StatusLegitimate, Analyst: "bob", DecidedAt: c.t}); err != nil {
		t.Fatal(err)
	}
	v := Verdict{Label: StatusFraud, Analyst: "ann", Note: "card testing", DecidedAt: c.t}
	cs, decided, err := s.DecideCase(ctx, "p0", v)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range decided {
		ids = append(ids, r.PaymentID)
		if r.Verdict == nil || r.Verdict.Label != StatusFraud || r.Verdict.Analyst != "ann" || r.Verdict.Note != "card testing" {
			t.Errorf("review %s: verdict %+v", r.PaymentID, r.Verdict)
		}
	}
	if !slices.Equal(ids, []string{"p3", "p1", "p0"}) {
		t.Errorf("decided %v, want p3 p1 p0 (p2 was labelled on its own)", ids)
	}
	if cs.Status != StatusFraud || cs.Verdict == nil || cs.Verdict.Analyst != "ann" {
		t.Errorf("case %+v", cs)
	}
	if r, audit, _ := s.Get(ctx, "p1"); r.Status != StatusFraud || len(audit) != 2 || audit[1].Analyst != "ann" {
		t.Errorf("p1 %+v, audit %+v", r, audit)
	}
	if r, _, _ := s.Get(ctx, "p2"); r.Status != StatusLegitimate {
		t.Errorf("p2 kept its own label? %+v", r.Verdict)
	}
	if _, _, err := s.DecideCase(ctx, "p0", v); !errors.Is(err, ErrAlreadyDecided) {
		t.Errorf("second verdict: %v", err)
	}
	if _, _, err := s.DecideCase(ctx, "nope", v); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown case: %v", err)
	}
	if _, _, err := s.DecideCase(ctx, "p0", Verdict{Label: "maybe"}); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("bad label: %v", err)
	}
	for _, st := range []string{StatusOpen, StatusFraud} {
		page, err := s.ListCases(ctx, CaseFilter{Status: st, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{StatusOpen: 0, StatusFraud: 1}[st]; len(page.Cases) != want {
			t.Errorf("%s cases: %d, want %d", st, len(page.Cases), want)
		}
		rp, _ := s.List(ctx, Filter{Status: st, Limit: 10})
		if want := map[string]int{StatusOpen: 0, StatusFraud: 3}[st]; len(rp.Reviews) != want {
			t.Errorf("%s reviews: %d, want %d", st, len(rp.Reviews), want)
		}
	}
	if got, err := s.AssignCase(ctx, "p0", "carl"); err != nil || got.Assignee != "carl" {
		t.Errorf("assign: %+v, %v", got, err)
	}
	if _, err := s.AssignCase(ctx, "nope", "carl"); !errors.Is(err, ErrNotFound) {
		t.Errorf("assign unknown: %v", err)
	}
}

// Every filter and both orders list the cases a brute-force selection finds, page after page.
func TestListCasesFilters(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	start := c.t
	codes := []string{decision.CodeAmount, decision.CodeVelocity, decision.CodeModel}
	for i := range 120 {
		var score *float64
		if i%4 > 0 {
			score = ptr(float64(i%10) / 10)
		}
		d := flagged(fmt.Sprintf("p%03d", i), fmt.Sprintf("c%d", i%9), score, codes[i%3])
		if _, err := s.Open(ctx, d); err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(2 * time.Hour) // some cards' payments join their case, some open new ones
	}
	all := everyCase(t, s)
	for i, cs := range all {
		if i%3 == 0 {
			if _, _, err := s.DecideCase(ctx, cs.ID, Verdict{Label: []string{StatusFraud, StatusLegitimate}[i%2], Analyst: "a", DecidedAt: c.t}); err != nil {
				t.Fatal(err)
			}
		}
	}
	all = everyCase(t, s)
	if len(all) < 20 || len(all) > 100 {
		t.Fatalf("%d cases of 120 payments on 9 cards, 2 h apart with a 24 h window", len(all))
	}
	scoreOf := func(c Case) float64 {
		if c.Score == nil {
			return -1
		}
		return *c.Score
	}
	for _, f := range []CaseFilter{
		{}, {Status: StatusOpen}, {Status: StatusFraud}, {Card: "c1"}, {Reason: decision.CodeModel},
		{Card: "c2", Status: StatusOpen, Reason: decision.CodeAmount},
		{From: start.Add(50 * time.Hour), To: start.Add(120 * time.Hour)},
		{Riskiest: true}, {Riskiest: true, Status: StatusOpen}, {Riskiest: true, Card: "c3"},
	} {
		var want []string
		sorted := slices.Clone(all)
		slices.SortStableFunc(sorted, func(a, b Case) int {
			if f.Riskiest {
				return cmp.Or(cmp.Compare(scoreOf(b), scoreOf(a)), cmp.Compare(b.ID, a.ID))
			}
			return cmp.Or(b.OpenedAt.Compare(a.OpenedAt), cmp.Compare(b.ID, a.ID))
		})
		for _, cs := range sorted {
			if (f.Status == "" || cs.Status == f.Status) && (f.Card == "" || cs.CardID == f.Card) &&
				(f.Reason == "" || slices.Contains(cs.Reasons, f.Reason)) &&
				(f.From.IsZero() || !cs.OpenedAt.Before(f.From)) && (f.To.IsZero() || cs.OpenedAt.Before(f.To)) {
				want = append(want, cs.ID)
			}
		}
		var got []string
		f.Limit = 7
		for pages := 0; ; pages++ {
			p, err := s.ListCases(ctx, f)
			if err != nil {
				t.Fatalf("%+v: %v", f, err)
			}
			for _, cs := range p.Cases {
				got = append(got, cs.ID)
			}
			if p.Next == "" || pages > 50 {
				break
			}
			f.Cursor = p.Next
		}
		if !slices.Equal(got, want) {
			t.Errorf("filter %+v:\n got %v\nwant %v", f, got, want)
		}
	}
	for _, f := range []CaseFilter{{Limit: 0}, {Limit: 501}, {Limit: 5, Status: "closed"}, {Limit: 5, Cursor: "%%%"}} {
		if _, err := s.ListCases(ctx, f); !errors.Is(err, ErrInvalidArgument) && !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("filter %+v: %v", f, err)
		}
	}
}

// Cases past the retention leave the indexes at a maintenance pass, as reviews do.
func TestCasesRetention(t *testing.T) {
	s, rdb, c := newTestStore(t)
	ctx := context.Background()
	s.Open(ctx, flagged("early", "c1", ptr(0.5), decision.CodeModel))
	c.t = c.t.Add(31 * 24 * time.Hour)
	for i := range 64 { // one opening in 64 maintains the indexes
		s.Open(ctx, flagged(fmt.Sprintf("late-%02d", i), "c1", ptr(0.5), decision.CodeModel))
	}
	for _, k := range []string{s.key("cs", StatusOpen), s.key("cks", StatusOpen), s.key("cc", "c1")} {
		ids := rdb.ZRange(ctx, k, 0, -1).Val()
		if slices.Contains(ids, "early") || !slices.Contains(ids, "late-00") {
			t.Errorf("%s: %v", k, ids)
		}
		if ttl := rdb.PTTL(ctx, k).Val(); ttl < 30*24*time.Hour || ttl > 31*24*time.Hour {
			t.Errorf("%s: TTL %s", k, ttl)
		}
	}
}

// A case's score rises as payments join it: riskiest-first pages go on after their cursor, not
// after the cursor's case's new place.
func TestRiskiestPagesWhileScoresRise(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	for i, score := range []float64{0.5, 0.4, 0.3, 0.2} {
		if _, err := s.Open(ctx, flagged(fmt.Sprintf("p%d", i), fmt.Sprintf("c%d", i), ptr(score), decision.CodeAmount)); err != nil {
			t.Fatal(err)
		}
	}
	page, err := s.ListCases(ctx, CaseFilter{Status: StatusOpen, Riskiest: true, Limit: 2})
	if err != nil || len(page.Cases) != 2 || page.Cases[1].ID != "p1" {
		t.Fatalf("first page %+v, %v", page, err)
	}
	c.t = c.t.Add(time.Minute)
	if _, err := s.Open(ctx, flagged("q", "c1", ptr(0.9), decision.CodeModel)); err != nil { // joins p1, whose score rises
		t.Fatal(err)
	}
	page, err = s.ListCases(ctx, CaseFilter{Status: StatusOpen, Riskiest: true, Limit: 2, Cursor: page.Next})
	if err != nil || len(page.Cases) != 2 || page.Cases[0].ID != "p2" || page.Cases[1].ID != "p3" {
		t.Errorf("second page %+v, %v; want p2, p3", page.Cases, err)
	}
}

// A case of more than a page of payments is decided whole, and every review it decided comes
// back to be published.
func TestDecideALargeCase(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	var ds []decision.Decision
	for i := range maxCasePayments + 5 {
		d := flagged(fmt.Sprintf("p%05d", i), "c1", ptr(0.5), decision.CodeAmount)
		d.DecidedAt = c.t.Add(time.Duration(i) * time.Millisecond)
		ds = append(ds, d)
	}
	if _, err := s.OpenAll(ctx, ds); err != nil {
		t.Fatal(err)
	}
	_, decided, err := s.DecideCase(ctx, "p00000", Verdict{Label: StatusFraud, Analyst: "a", DecidedAt: c.t})
	if err != nil || len(decided) != len(ds) {
		t.Fatalf("decided %d of %d, %v", len(decided), len(ds), err)
	}
	if all, err := s.CaseReviews(ctx, "p00000"); err != nil || len(all) != len(ds) {
		t.Errorf("CaseReviews: %d, %v", len(all), err)
	}
}

// A card's cases are found by card in either order, among many other cases.
func TestListCasesByCardAmongMany(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	var ds []decision.Decision
	for i := range maxExamined + 1000 {
		ds = append(ds, flagged(fmt.Sprintf("p%05d", i), fmt.Sprintf("c%05d", i), ptr(0.9), decision.CodeAmount))
	}
	ds = append(ds, flagged("target-1", "target", ptr(0.1), decision.CodeAmount))
	if _, err := s.OpenAll(ctx, ds); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(48 * time.Hour)
	s.Open(ctx, flagged("target-2", "target", nil, decision.CodeModel))
	for _, riskiest := range []bool{true, false} {
		page, err := s.ListCases(ctx, CaseFilter{Card: "target", Riskiest: riskiest, Limit: 1})
		if err != nil || len(page.Cases) != 1 || page.Next == "" {
			t.Fatalf("riskiest %v: %+v, %v", riskiest, page, err)
		}
		want := map[bool][]string{true: {"target-1", "target-2"}, false: {"target-2", "target-1"}}[riskiest]
		next, err := s.ListCases(ctx, CaseFilter{Card: "target", Riskiest: riskiest, Limit: 1, Cursor: page.Next})
		if err != nil || len(next.Cases) != 1 || next.Next != "" || page.Cases[0].ID != want[0] || next.Cases[0].ID != want[1] {
			t.Errorf("riskiest %v: %v then %+v, %v; want %v", riskiest, page.Cases[0].ID, next, err, want)
		}
	}
}

// A payment joins the case that opened within the window before it, by the decisions' times, not
// merely the card's newest; a case opened without reasons takes the next payment's cleanly.
func TestCaseByTime(t *testing.T) {
	s, _, c := newTestStore(t)
	ctx := context.Background()
	t0 := c.t
	s.Open(ctx, flagged("x1", "c1", ptr(0.5)))
	c.t = t0.Add(30 * time.Hour)
	s.Open(ctx, flagged("y1", "c1", ptr(0.5), decision.CodeAmount))
	late := flagged("x2", "c1", ptr(0.5), decision.CodeAmount)
	late.DecidedAt = t0.Add(10 * time.Hour)
	s.Open(ctx, late)
	if r, _, err := s.Get(ctx, "x2"); err != nil || r.CaseID != "x1" {
		t.Errorf("a payment of t0+10h: case %q, %v; want x1", r.CaseID, err)
	}
	if cs, _, err := s.GetCase(ctx, "x1"); err != nil || !slices.Equal(cs.Reasons, []string{decision.CodeAmount}) {
		t.Errorf("case x1's reasons %q, %v", cs.Reasons, err)
	}
}

// everyCase lists every case, page by page.
func everyCase(t *testing.T, s *Store) []Case {
	t.Helper()
	var all []Case
	f := CaseFilter{Limit: 500}
	for {
		page, err := s.ListCases(context.Background(), f)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Cases...)
		if page.Next == "" {
			return all
		}
		f.Cursor = page.Next
	}
}
