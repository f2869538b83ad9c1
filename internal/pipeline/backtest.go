package pipeline

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/paysentry/fraud-detector/internal/rules"
)

// Backtest compares a candidate rule set with the current one on the same payments: the same card
// state and scores, two policies. The replay feeds it every decision with its label.
type Backtest struct {
	cur, cand             *rules.Set
	curPath, candPath     string
	curHits, candHits     map[string]*ruleTally // by rule id
	payments, fraud       int                   // payments replayed; of them labelled fraud
	curFlag, candFlag     tallyOf               // payments each set flags
	newly, noLonger       tallyOf               // flagged by the candidate only; by the current set only
	curAllow, candAllow   int
	curReview, candReview int // sent to review (and not flagged)
}

// tallyOf counts payments, and those of them labelled fraud and legitimate.
type tallyOf struct{ n, fraud, legit int }

func (t *tallyOf) add(label string) {
	t.n++
	switch label {
	case "fraud":
		t.fraud++
	case "legitimate":
		t.legit++
	}
}

type ruleTally struct {
	rule *rules.Rule
	tallyOf
}

// NewBacktest compares cand (from the file candPath) with cur (from curPath), the set the decisions
// given to Add were made with.
func NewBacktest(cur *rules.Set, curPath string, cand *rules.Set, candPath string) *Backtest {
	b := &Backtest{cur: cur, cand: cand, curPath: curPath, candPath: candPath,
		curHits: map[string]*ruleTally{}, candHits: map[string]*ruleTally{}}
	for _, r := range cur.Rules() {
		b.curHits[r.ID] = &ruleTally{rule: &r}
	}
	for _, r := range cand.Rules() {
		b.candHits[r.ID] = &ruleTally{rule: &r}
	}
	return b
}

// Add counts one decided payment and its label (fraud, legitimate, or "" when it has none).
func (b *Backtest) Add(label string, d *Decision) {
	b.payments++
	if label == "fraud" {
		b.fraud++
	}
	for _, h := range d.Hits {
		b.curHits[h.Rule.ID].add(label)
	}
	hits, _ := b.cand.Eval(&d.Input, nil)
	for _, h := range hits {
		b.candHits[h.Rule.ID].add(label)
	}
	v := Apply(hits)
	if d.Flagged {
		b.curFlag.add(label)
	}
	if v.Flagged {
		b.candFlag.add(label)
	}
	switch {
	case v.Flagged && !d.Flagged:
		b.newly.add(label)
	case d.Flagged && !v.Flagged:
		b.noLonger.add(label)
	}
	switch d.Action {
	case rules.ActionAllow:
		b.curAllow++
	case rules.ActionReview:
		b.curReview++
	}
	switch v.Action {
	case rules.ActionAllow:
		b.candAllow++
	case rules.ActionReview:
		b.candReview++
	}
}

// Report writes the backtest: every rule of either set with its hits, precision and recall, then
// the decisions of each set and what the candidate changes.
func (b *Backtest) Report(w io.Writer) {
	fmt.Fprintf(w, "backtest: %d payments, %d labelled fraud\n", b.payments, b.fraud)
	fmt.Fprintf(w, "  current   %s  %s\n  candidate %s  %s\n\n", b.cur.Version(), b.curPath, b.cand.Version(), b.candPath)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rule\tin\tmode\taction\thits\tfraud\tlegitimate\tprecision\trecall\t")
	line := func(in string, t *ruleTally) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t\n", t.rule.ID, in, t.rule.Mode, t.rule.Action,
			t.n, t.fraud, t.legit, pct(t.fraud, t.fraud+t.legit), pct(t.fraud, b.fraud))
	}
	for _, r := range b.cur.Rules() {
		in := "current"
		if c, ok := b.candHits[r.ID]; ok {
			in = "both"
			if c.rule.Expression != r.Expression || c.rule.Action != r.Action || c.rule.Mode != r.Mode {
				in = "current*" // changed in the candidate: its line follows
			}
		}
		line(in, b.curHits[r.ID])
		if in == "current*" {
			line("candidate*", b.candHits[r.ID])
		}
	}
	for _, r := range b.cand.Rules() {
		if _, ok := b.curHits[r.ID]; !ok {
			line("candidate", b.candHits[r.ID])
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "decisions\tflagged\tfraud\tlegitimate\tprecision\trecall\treview\tallowed\t")
	fmt.Fprintf(tw, "current\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t\n", b.curFlag.n, b.curFlag.fraud, b.curFlag.legit,
		pct(b.curFlag.fraud, b.curFlag.fraud+b.curFlag.legit), pct(b.curFlag.fraud, b.fraud), b.curReview, b.curAllow)
	fmt.Fprintf(tw, "candidate\t%d\t%d\t%d\t%s\t%s\t%d\t%d\t\n", b.candFlag.n, b.candFlag.fraud, b.candFlag.legit,
		pct(b.candFlag.fraud, b.candFlag.fraud+b.candFlag.legit), pct(b.candFlag.fraud, b.fraud), b.candReview, b.candAllow)
	fmt.Fprintf(tw, "newly flagged\t%d\t%d\t%d\t-\t-\t-\t-\t\n", b.newly.n, b.newly.fraud, b.newly.legit)
	fmt.Fprintf(tw, "no longer flagged\t%d\t%d\t%d\t-\t-\t-\t-\t\n", b.noLonger.n, b.noLonger.fraud, b.noLonger.legit)
	tw.Flush()
}

// pct is a/b as a percentage with one decimal, or "-" when b is 0.
func pct(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}
