// Package decision holds the Decision contract of the `high-risk-payments` topic: why a payment
// was flagged, in a form that one record explains by itself.
package decision

import (
	"strconv"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// Reason codes.
const (
	CodeAmount   = "amount_over_threshold"
	CodeVelocity = "card_velocity_1h"
	CodeModel    = "model_score"
	CodeDegraded = "degraded_state"
	CodeLate     = "late_event"
)

// Reason is why a payment was decided as it was: a rule that matched (Rule names it), or a
// stage's note (late_event, degraded_state), which explains and never flags.
type Reason struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Rule   string `json:"rule,omitempty"`
}

// Decision is the verdict on one payment.
type Decision struct {
	PaymentID string `json:"payment_id"`
	CardID    string `json:"card_id"`
	Flagged   bool   `json:"flagged"`
	// Action is what the policy decided: flag (high risk), or review (not high risk, but an
	// analyst should look); Rule is the rule that decided it.
	Action  string   `json:"action"`
	Rule    string   `json:"rule"`
	Score   *float64 `json:"score"`   // model probability; null while no model is configured
	Reasons []Reason `json:"reasons"` // never null
	// ShadowReasons are the shadow rules that matched: evaluated and counted, never acted on.
	ShadowReasons []Reason `json:"shadow_reasons"` // never null
	WindowCount   *int64   `json:"window_count"`   // the card's count in its hourly window; null without one
	ModelVersion  string   `json:"model_version"`
	// ShadowScore and ShadowModelVersion are the challenger model's probability and version
	// (model.shadow_path), scored on the same features: reported, never acted on. Absent when no
	// challenger scored the payment.
	ShadowScore        *float64  `json:"shadow_score,omitzero"`
	ShadowModelVersion string    `json:"shadow_model_version,omitzero"`
	RulesVersion       string    `json:"rules_version"`
	DecidedAt          time.Time `json:"decided_at"`
	// Payment is the payment as received, unknown fields included, with its card number masked.
	Payment jsontext.Value `json:"payment"`
}

// Marshal encodes d as the JSON value of a `high-risk-payments` record.
func (d *Decision) Marshal() ([]byte, error) {
	if d.Reasons == nil {
		d.Reasons = []Reason{}
	}
	if d.ShadowReasons == nil {
		d.ShadowReasons = []Reason{}
	}
	return json.Marshal(d)
}

// AppendJSON appends to b what Marshal returns, without validating d.Payment again: it is for the
// stream, where the payment has just been decoded (and so validated), and where Marshal's second
// pass over it cost a sixth of the service's CPU. d.Payment must be valid JSON.
func (d *Decision) AppendJSON(b []byte) []byte {
	b = append(b, `{"payment_id":`...)
	b, _ = jsontext.AppendQuote(b, d.PaymentID)
	b = append(b, `,"card_id":`...)
	b, _ = jsontext.AppendQuote(b, d.CardID)
	b = append(b, `,"flagged":`...)
	b = strconv.AppendBool(b, d.Flagged)
	b = append(b, `,"action":`...)
	b, _ = jsontext.AppendQuote(b, d.Action)
	b = append(b, `,"rule":`...)
	b, _ = jsontext.AppendQuote(b, d.Rule)
	b = append(b, `,"score":`...)
	if d.Score == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendFloat(b, *d.Score, 'g', -1, 64)
	}
	b = append(b, `,"reasons":`...)
	b = appendReasons(b, d.Reasons)
	b = append(b, `,"shadow_reasons":`...)
	b = appendReasons(b, d.ShadowReasons)
	b = append(b, `,"window_count":`...)
	if d.WindowCount == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, *d.WindowCount, 10)
	}
	b = append(b, `,"model_version":`...)
	b, _ = jsontext.AppendQuote(b, d.ModelVersion)
	if d.ShadowScore != nil {
		b = append(b, `,"shadow_score":`...)
		b = strconv.AppendFloat(b, *d.ShadowScore, 'g', -1, 64)
	}
	if d.ShadowModelVersion != "" {
		b = append(b, `,"shadow_model_version":`...)
		b, _ = jsontext.AppendQuote(b, d.ShadowModelVersion)
	}
	b = append(b, `,"rules_version":`...)
	b, _ = jsontext.AppendQuote(b, d.RulesVersion)
	b = append(b, `,"decided_at":"`...)
	b = d.DecidedAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","payment":`...)
	b = append(b, d.Payment...)
	return append(b, '}')
}

func appendReasons(b []byte, rs []Reason) []byte {
	b = append(b, '[')
	for i, r := range rs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"code":`...)
		b, _ = jsontext.AppendQuote(b, r.Code)
		b = append(b, `,"detail":`...)
		b, _ = jsontext.AppendQuote(b, r.Detail)
		if r.Rule != "" {
			b = append(b, `,"rule":`...)
			b, _ = jsontext.AppendQuote(b, r.Rule)
		}
		b = append(b, '}')
	}
	return append(b, ']')
}

// Unmarshal decodes a `high-risk-payments` record.
func Unmarshal(b []byte) (Decision, error) {
	var d Decision
	err := json.Unmarshal(b, &d)
	return d, err
}
