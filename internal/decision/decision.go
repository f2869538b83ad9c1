// Package decision holds the Decision contract of the `high-risk-payments` topic: why a payment
// was flagged, in a form that one record explains by itself.
package decision

import (
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

// Reason is one detector's finding.
type Reason struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// Decision is the verdict on one payment.
type Decision struct {
	PaymentID    string    `json:"payment_id"`
	CardID       string    `json:"card_id"`
	Flagged      bool      `json:"flagged"`
	Score        *float64  `json:"score"`        // model probability; null while no model is configured
	Reasons      []Reason  `json:"reasons"`      // never null
	WindowCount  *int64    `json:"window_count"` // the card's count in its hourly window; null without one
	ModelVersion string    `json:"model_version"`
	RulesVersion string    `json:"rules_version"`
	DecidedAt    time.Time `json:"decided_at"`
	// Payment is the payment as received, unknown fields included, with its card number masked.
	Payment jsontext.Value `json:"payment"`
}

// Marshal encodes d as the JSON value of a `high-risk-payments` record.
func (d *Decision) Marshal() ([]byte, error) {
	if d.Reasons == nil {
		d.Reasons = []Reason{}
	}
	return json.Marshal(d)
}

// Unmarshal decodes a `high-risk-payments` record.
func Unmarshal(b []byte) (Decision, error) {
	var d Decision
	err := json.Unmarshal(b, &d)
	return d, err
}
