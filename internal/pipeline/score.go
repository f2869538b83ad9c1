package pipeline

import (
	"time"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/model"
)

// score computes the model's features for a batch and, with a model, scores them in one call. A
// model that fails leaves the batch to the rules, each of its payments with reason degraded_state.
func (p *Pipeline) score(ds []Decision) {
	if p.model == nil && !p.cfg.Features {
		return
	}
	width := len(model.FeatureNames)
	rows := make([]float32, len(ds)*width)
	for i := range ds {
		d := &ds[i]
		d.Features = rows[i*width : (i+1)*width : (i+1)*width]
		model.Features(d.Input.Payment, d.Input.State, d.Features)
	}
	if p.model == nil {
		return
	}
	// The model scores only payments with their card's state: it learnt on payments that all
	// had one, and without it would look confident and be blind. The others (late, ahead, Redis
	// unavailable) are decided on the rules, with a reason that says so.
	var idx []int
	in := make([]float32, 0, len(rows))
	for i := range ds {
		if st := ds[i].Input.State; st != nil && !st.Late && !st.Ahead {
			idx = append(idx, i)
			in = append(in, ds[i].Features...)
		} else if !ds[i].degraded && p.win != nil {
			ds[i].note(decision.CodeLate, "not scored by the model: the payment is not in its card's state")
		}
	}
	if len(idx) == 0 {
		return
	}
	p.serving(ds, idx, in)
	p.shadow(ds, idx, in)
}

// serving scores the rows in (the payments ds[idx[k]]) with the model, into each decision's
// Score and the rules' input. A model that fails leaves them to the rules, with degraded_state.
func (p *Pipeline) serving(ds []Decision, idx []int, in []float32) {
	scores := make([]float64, len(idx))
	began := time.Now()
	version, err := p.model.Score(in, len(idx), scores)
	p.m.observe(StageModel, began)
	if took := time.Since(began); took > 250*time.Millisecond {
		p.log.Warn("model slow", "payments", len(idx), "took", took)
	}
	if err != nil {
		p.log.Error("model failed; batch decided without it", "payments", len(idx), "err", err)
		for _, i := range idx {
			ds[i].note(decision.CodeDegraded, "decided without the model: "+err.Error())
			ds[i].degraded = true
		}
		return
	}
	for k, i := range idx {
		d := &ds[i]
		s := scores[k]
		d.Score, d.ModelVersion = &s, version
		d.Input.Score, d.Input.Scored, d.Input.ModelVersion = s, true, version
	}
}

// shadow scores the same rows with the challenger model, if one is configured, into each
// decision's ShadowScore. It changes nothing else of a decision: a challenger that fails leaves
// the batch without shadow scores, counted in fraud_shadow_model_failures_total and logged once a
// minute.
func (p *Pipeline) shadow(ds []Decision, idx []int, in []float32) {
	if p.cfg.Shadow == nil {
		return
	}
	scores := make([]float64, len(idx))
	began := time.Now()
	version, err := p.cfg.Shadow.Score(in, len(idx), scores)
	p.m.observe(StageShadow, began)
	if err != nil {
		p.m.shadowFailures.Inc()
		if p.shadowLogs.due("shadow", time.Now()) {
			p.log.Warn("shadow model failed; batch decided without shadow scores (logged once a minute, counted in fraud_shadow_model_failures_total)",
				"payments", len(idx), "err", err)
		}
		return
	}
	for k, i := range idx {
		ds[i].ShadowScore, ds[i].ShadowModelVersion = &scores[k], version // one allocation a batch
	}
}
