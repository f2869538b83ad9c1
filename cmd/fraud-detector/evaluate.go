package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
)

// evaluation counts how decisions and scores compare with the labels.
type evaluation struct {
	labelled, fraud   int
	flaggedTP, flagFP int // the decisions
	rulesTP, rulesFP  int // the rules alone (amount, velocity)
	scores            []scoredLabel
}

type scoredLabel struct {
	score float64
	fraud bool
}

func (e *evaluation) add(label string, flagged, rules bool, score *float64) {
	if label == "" {
		return
	}
	fraud := label == "fraud"
	e.labelled++
	if fraud {
		e.fraud++
	}
	count := func(hit bool, tp, fp *int) {
		switch {
		case hit && fraud:
			*tp++
		case hit:
			*fp++
		}
	}
	count(flagged, &e.flaggedTP, &e.flagFP)
	count(rules, &e.rulesTP, &e.rulesFP)
	if score != nil {
		e.scores = append(e.scores, scoredLabel{*score, fraud})
	}
}

func (e *evaluation) report(w io.Writer) {
	fmt.Fprintf(w, "replay: %d labelled payments, %d fraud\n", e.labelled, e.fraud)
	line := func(name string, tp, fp int) {
		fmt.Fprintf(w, "replay: %-10s precision %.3f  recall %.3f  (%d flagged)\n", name, ratio(tp, tp+fp), ratio(tp, e.fraud), tp+fp)
	}
	line("decisions", e.flaggedTP, e.flagFP)
	line("rules", e.rulesTP, e.rulesFP)
	if len(e.scores) > 0 {
		fmt.Fprintf(w, "replay: model     average precision %.3f\n", averagePrecision(e.scores))
	}
}

// averagePrecision is the mean of the precision at each fraud, ranked by score, highest first.
func averagePrecision(s []scoredLabel) float64 {
	s = slices.Clone(s)
	slices.SortStableFunc(s, func(a, b scoredLabel) int { return cmp.Compare(b.score, a.score) })
	hits, sum := 0, 0.0
	for i, x := range s {
		if x.fraud {
			hits++
			sum += float64(hits) / float64(i+1)
		}
	}
	if hits == 0 {
		return 0
	}
	return sum / float64(hits)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
