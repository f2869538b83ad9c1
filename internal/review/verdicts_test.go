package review

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paysentry/fraud-detector/internal/decision"
)

// Each verdict counts once per model that scored the payment, by what the model said at 0.5
// (strictly over, as rule model_score) and the label; a payment a model did not score is not
// counted for it, and a review without a verdict not at all.
func TestVerdictsCompareTheModels(t *testing.T) {
	v := NewVerdicts(prometheus.NewRegistry())
	reviewed := func(label string, serving, shadow *float64) Review {
		r := Review{Decision: decision.Decision{Score: serving, ShadowScore: shadow}}
		if label != "" {
			r.Verdict = &Verdict{Label: label}
		}
		return r
	}
	v.Count(reviewed(StatusFraud, ptr(0.9), ptr(0.2)))      // serving right, shadow missed it
	v.Count(reviewed(StatusFraud, ptr(0.5), ptr(0.51)))     // 0.5 is not over: serving missed it
	v.Count(reviewed(StatusLegitimate, ptr(0.7), ptr(0.1))) // serving's false alarm
	v.Count(reviewed(StatusLegitimate, ptr(0.1), nil))      // the shadow did not score it
	v.Count(reviewed(StatusFraud, nil, nil))                // nobody scored it (amount rule)
	v.Count(reviewed("", ptr(0.9), ptr(0.9)))               // no verdict yet
	want := map[[3]string]float64{
		{ModelServing, StatusFraud, StatusFraud}:           1,
		{ModelServing, StatusLegitimate, StatusFraud}:      1,
		{ModelServing, StatusFraud, StatusLegitimate}:      1,
		{ModelServing, StatusLegitimate, StatusLegitimate}: 1,
		{ModelShadow, StatusFraud, StatusFraud}:            1,
		{ModelShadow, StatusLegitimate, StatusFraud}:       1,
		{ModelShadow, StatusFraud, StatusLegitimate}:       0,
		{ModelShadow, StatusLegitimate, StatusLegitimate}:  1,
	}
	for k, n := range want {
		if got := testutil.ToFloat64(v.c.WithLabelValues(k[0], k[1], k[2])); got != n {
			t.Errorf("fraud_model_verdicts_total{model=%q,predicted=%q,label=%q} = %v, want %v", k[0], k[1], k[2], got, n)
		}
	}
	if n := testutil.CollectAndCount(v.c); n != 8 {
		t.Errorf("%d series, want the 8 combinations", n)
	}
}
