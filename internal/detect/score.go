package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/IBM/sarama"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/payment"
)

// Scorer is the fraud model.
type Scorer interface {
	// Score writes the fraud probability of each of n rows of model.FeatureNames into out, in
	// one call, and says which model version scored them.
	Score(rows []float32, n int, out []float64) (version string, err error)
	// Threshold is the probability above which a payment is flagged.
	Threshold() float64
}

var _ Scorer = (*model.Scorer)(nil)

// score computes the model's features for the valid items of a batch and, with a model, scores
// them in one call. A model that fails leaves the batch to the other detectors, each of its
// payments with reason degraded_state.
func (h *Handler) score(items []item) {
	width := len(model.FeatureNames)
	var idx []int
	for i := range items {
		if items[i].err == nil {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		return
	}
	rows := make([]float32, len(idx)*width)
	for k, i := range idx {
		it := &items[i]
		it.features = rows[k*width : (k+1)*width : (k+1)*width]
		model.Features(&it.p, it.state, it.features)
	}
	if h.model == nil {
		return
	}
	// The model scores only payments with their card's state: it learnt on payments that all
	// had one, and without it would look confident and be blind. The others (late, ahead, Redis
	// unavailable) are decided on the rules, with a reason that says so.
	var scored []int
	in := make([]float32, 0, len(rows))
	for _, i := range idx {
		if st := items[i].state; st != nil && !st.Late && !st.Ahead {
			scored = append(scored, i)
			in = append(in, items[i].features...)
		} else if !items[i].degraded && h.win != nil {
			items[i].reasons = notScored(items[i].reasons)
		}
	}
	idx, rows = scored, in
	if len(idx) == 0 {
		return
	}
	scores := make([]float64, len(idx))
	began := time.Now()
	version, err := h.model.Score(rows, len(idx), scores)
	h.m.observeStage(StageModel, began)
	if took := time.Since(began); took > 250*time.Millisecond {
		h.log.Warn("model slow", "payments", len(idx), "took", took)
	}
	if err != nil {
		h.log.Error("model failed; batch decided without it", "payments", len(idx), "err", err)
		for _, i := range idx {
			items[i].reasons = append(items[i].reasons, decision.Reason{Code: decision.CodeDegraded,
				Detail: "decided without the model: " + err.Error()})
			items[i].degraded = true
		}
		return
	}
	threshold := h.model.Threshold()
	for k, i := range idx {
		it := &items[i]
		s := scores[k]
		it.score, it.version = &s, version
		if s > threshold {
			it.reasons = append(it.reasons, decision.Reason{Code: decision.CodeModel,
				Detail: fmt.Sprintf("fraud probability %.3f is over %g (model %s)", s, threshold, version)})
		}
	}
}

// notScored says in a payment's late_event reason that the model did not score it, adding the
// reason if the windows gave none: each reason code appears once in a decision.
func notScored(reasons []decision.Reason) []decision.Reason {
	const why = "not scored by the model: the payment is not in its card's state"
	for k := range reasons {
		if reasons[k].Code == decision.CodeLate {
			reasons[k].Detail += "; " + why
			return reasons
		}
	}
	return append(reasons, decision.Reason{Code: decision.CodeLate, Detail: why})
}

// Outcome is what the detectors found for one record.
type Outcome struct {
	Payment     payment.Payment
	Err         error // not a valid payment
	Flagged     bool
	Reasons     []decision.Reason
	WindowCount *int64
	Features    []float32 // model.FeatureNames, for a valid payment
	Score       *float64  // nil without a model
}

// Decide runs the detectors over a batch of records as the stream does, without producing
// anything: the replay's way to the same code.
func (h *Handler) Decide(ctx context.Context, values [][]byte) ([]Outcome, error) {
	items := make([]item, len(values))
	for i, v := range values {
		items[i].msg = &sarama.ConsumerMessage{Value: v}
	}
	if !h.decide(ctx, items, true) {
		return nil, fmt.Errorf("decide %d payments: %w", len(values), context.Cause(ctx))
	}
	out := make([]Outcome, len(items))
	for i := range items {
		it := &items[i]
		out[i] = Outcome{Payment: it.p, Err: it.err, Flagged: it.err == nil && it.flagged(), Reasons: it.reasons,
			WindowCount: it.windowCount, Features: it.features, Score: it.score}
	}
	return out, nil
}
