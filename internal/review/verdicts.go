package review

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// ModelThreshold is the score over which fraud_model_verdicts_total takes a model to say fraud:
// that of rule model_score in the shipped rules (model.score > 0.5), for the serving model and
// the shadow alike.
const ModelThreshold = 0.5

// Models whose predictions fraud_model_verdicts_total compares with the analysts' verdicts.
const (
	ModelServing = "serving" // model.path: its score is the decision's score
	ModelShadow  = "shadow"  // model.shadow_path: its score is the decision's shadow_score
)

// Verdicts counts analysts' verdicts against what each model said of the same payment, in
// fraud_model_verdicts_total{model, predicted, label}: so that each model's precision and recall
// on the labelled payments are a query away. A model that did not score the payment is not
// counted for it.
type Verdicts struct {
	c *prometheus.CounterVec
}

// NewVerdicts registers fraud_model_verdicts_total with reg, every series at 0.
func NewVerdicts(reg prometheus.Registerer) *Verdicts {
	v := &Verdicts{c: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{Name: "fraud_model_verdicts_total",
		Help: "Analysts' verdicts by model (serving, shadow), what the model said at score > 0.5 (predicted: fraud, legitimate) " +
			"and the verdict (label: fraud, legitimate); payments a model did not score are not counted for it."},
		[]string{"model", "predicted", "label"})}
	for _, m := range []string{ModelServing, ModelShadow} {
		for _, p := range []string{StatusFraud, StatusLegitimate} {
			for _, l := range []string{StatusFraud, StatusLegitimate} {
				v.c.WithLabelValues(m, p, l)
			}
		}
	}
	return v
}

// Count counts a review that has its verdict, once per verdict recorded.
func (v *Verdicts) Count(r Review) {
	if r.Verdict == nil || (r.Verdict.Label != StatusFraud && r.Verdict.Label != StatusLegitimate) {
		return
	}
	for _, m := range []struct {
		name  string
		score *float64
	}{{ModelServing, r.Decision.Score}, {ModelShadow, r.Decision.ShadowScore}} {
		if m.score == nil {
			continue
		}
		predicted := StatusLegitimate
		if *m.score > ModelThreshold {
			predicted = StatusFraud
		}
		v.c.WithLabelValues(m.name, predicted, r.Verdict.Label).Inc()
	}
}
