package decision

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/go-json-experiment/json/jsontext"
)

// AppendJSON is the stream's fast path; it must say exactly what Marshal says.
func TestAppendJSONMatchesMarshal(t *testing.T) {
	score, shadow, count := 0.8125, 1.0, int64(12)
	decisions := []Decision{
		{PaymentID: "p1", CardID: "c1", Flagged: true, Action: "flag", Rule: "amount_over_threshold", RulesVersion: "rules-1",
			Reasons:       []Reason{{Code: CodeAmount, Detail: `amount 250.00 EUR is over "100" <&> \ é`, Rule: "amount_over_threshold"}},
			ShadowReasons: []Reason{{Code: "new_rule", Detail: "would flag", Rule: "new_rule"}},
			DecidedAt:     time.Date(2026, 3, 1, 10, 0, 0, 123456789, time.UTC),
			Payment:       jsontext.Value(`{"payment_id":"p1","amount":"250.00","extra":[1,{"x":null}]}`)},
		{PaymentID: "p2\u2028", CardID: "tok_ab", Flagged: true, Score: &score, WindowCount: &count,
			ModelVersion: "m-3", Reasons: []Reason{{Code: CodeVelocity, Detail: "12 in 1h"}, {Code: CodeModel, Detail: "0.81"}},
			DecidedAt: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC), Payment: jsontext.Value(`{"a":1}`)},
		{PaymentID: "p3", DecidedAt: time.Unix(0, 0).UTC(), Payment: jsontext.Value(`{}`)},
		{PaymentID: "p4", Score: &score, ModelVersion: "m-3", ShadowScore: &shadow, ShadowModelVersion: "challenger \"2\"",
			DecidedAt: time.Unix(0, 0).UTC(), Payment: jsontext.Value(`{}`)},
	}
	for _, d := range decisions {
		fast := d.AppendJSON(nil)
		slow, err := d.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !jsontext.Value(fast).IsValid() {
			t.Fatalf("not valid JSON: %s", fast)
		}
		a, err := Unmarshal(fast)
		if err != nil {
			t.Fatalf("%v: %s", err, fast)
		}
		b, _ := Unmarshal(slow)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("AppendJSON and Marshal differ:\n%s\n%s", fast, slow)
		}
		// Without a challenger, the record is as it was: no shadow_score, no shadow_model_version.
		for _, field := range []string{`"shadow_score"`, `"shadow_model_version"`} {
			if d.ShadowScore == nil && (bytes.Contains(fast, []byte(field)) || bytes.Contains(slow, []byte(field))) {
				t.Errorf("%s without a challenger:\n%s\n%s", field, fast, slow)
			}
		}
		if d.ShadowScore != nil && (*a.ShadowScore != *d.ShadowScore || a.ShadowModelVersion != d.ShadowModelVersion) {
			t.Errorf("shadow fields lost: %s", fast)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	d := Decision{PaymentID: "pay-1-000000123", CardID: "card-0001234", Flagged: true, RulesVersion: "amount-df06883c",
		Reasons:   []Reason{{Code: CodeAmount, Detail: "amount 161.06 USD is over the threshold of 100 USD"}},
		DecidedAt: time.Now(),
		Payment:   jsontext.Value(`{"payment_id":"pay-1-000000123","card_id":"card-0001234","amount":"161.06","currency":"USD","timestamp":"2026-01-05T00:00:00.000261279Z","merchant_id":"m-04537","merchant_category":"4814","country":"NL","channel":"moto","device_id":"dev-0009581"}`)}
	b.Run("append", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		for b.Loop() {
			buf = d.AppendJSON(buf[:0])
		}
	})
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			d.Marshal()
		}
	})
}
