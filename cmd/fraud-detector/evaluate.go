package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
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

// comparison scores the serving model and its challenger (replay -shadow-model) on the same
// labelled payments: those both scored.
type comparison struct {
	serving, shadow []scoredLabel
	servingVersion  string
	shadowVersion   string
}

func (c *comparison) add(label string, serving, shadow *float64, servingVersion, shadowVersion string) {
	if label == "" || serving == nil || shadow == nil {
		return
	}
	fraud := label == "fraud"
	c.serving = append(c.serving, scoredLabel{*serving, fraud})
	c.shadow = append(c.shadow, scoredLabel{*shadow, fraud})
	c.servingVersion, c.shadowVersion = servingVersion, shadowVersion
}

// report writes, side by side, each model's ROC AUC, average precision, and precision and recall
// of a score over 0.5 (rule model_score's threshold).
func (c *comparison) report(w io.Writer) {
	if len(c.serving) == 0 {
		fmt.Fprintln(w, "replay: shadow model: no labelled payment scored by both models")
		return
	}
	type figures struct {
		auc, ap, precision, recall float64
		flagged                    int
	}
	of := func(s []scoredLabel) figures {
		tp, fp, fn := confusion(s, 0.5)
		return figures{rocAUC(s), averagePrecision(s), ratio(tp, tp+fp), ratio(tp, tp+fn), tp + fp}
	}
	a, b := of(c.serving), of(c.shadow)
	_, _, fraud := confusion(c.serving, math.Inf(1))
	fmt.Fprintf(w, "replay: serving and shadow model on the %d labelled payments both scored (%d fraud)\n", len(c.serving), fraud)
	fmt.Fprintf(w, "replay:   %-24s %-20s %s\n", "", "serving", "shadow")
	fmt.Fprintf(w, "replay:   %-24s %-20s %s\n", "model_version", c.servingVersion, c.shadowVersion)
	for _, r := range []struct {
		name string
		a, b float64
	}{{"ROC AUC", a.auc, b.auc}, {"average precision", a.ap, b.ap},
		{"precision (score > 0.5)", a.precision, b.precision}, {"recall (score > 0.5)", a.recall, b.recall}} {
		fmt.Fprintf(w, "replay:   %-24s %-20.3f %.3f\n", r.name, r.a, r.b)
	}
	fmt.Fprintf(w, "replay:   %-24s %-20d %d\n", "flagged (score > 0.5)", a.flagged, b.flagged)
}

// confusion counts the true positives, false positives and false negatives of a score over threshold.
func confusion(s []scoredLabel, threshold float64) (tp, fp, fn int) {
	for _, x := range s {
		switch hit := x.score > threshold; {
		case hit && x.fraud:
			tp++
		case hit:
			fp++
		case x.fraud:
			fn++
		}
	}
	return tp, fp, fn
}

// rocAUC is the probability that a fraud scores above a legitimate payment (ties count half),
// from the ranks of the scores; 0 without both kinds.
func rocAUC(s []scoredLabel) float64 {
	s = slices.Clone(s)
	slices.SortFunc(s, func(a, b scoredLabel) int { return cmp.Compare(a.score, b.score) })
	var fraud, legit int
	rankSum := 0.0 // of the frauds, ties given their mean rank
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j].score == s[i].score {
			j++
		}
		mean := float64(i+j+1) / 2 // ranks i+1 .. j
		for _, x := range s[i:j] {
			if x.fraud {
				fraud++
				rankSum += mean
			} else {
				legit++
			}
		}
		i = j
	}
	if fraud == 0 || legit == 0 {
		return 0
	}
	return (rankSum - float64(fraud)*float64(fraud+1)/2) / (float64(fraud) * float64(legit))
}
