package rules

import (
	"testing"
	"time"

	"cel.dev/cel-go/common/types/ref"
	"github.com/shopspring/decimal"
)

// TestEveryVariableResolves holds the declarations and the activation to each other: each
// declared variable resolves to a value of its type, whatever the Input.
func TestEveryVariableResolves(t *testing.T) {
	late := clearInput()
	late.State.Late = true
	inputs := map[string]*Input{
		"clear":      clearInput(),
		"late":       late,
		"no state":   {Payment: clearInput().Payment},
		"no payment": {},
		"nil":        nil,
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			a := newActivation([]ListSpec{{Name: "l", Kind: "card"}})
			a.reset(in)
			for _, v := range fieldVariables() {
				got, ok := a.ResolveName(v.name)
				if !ok {
					t.Errorf("%s does not resolve", v.name)
					continue
				}
				if typ := got.(ref.Val).Type(); typ.TypeName() != v.typ.TypeName() {
					t.Errorf("%s is a %s, declared %s", v.name, typ.TypeName(), v.typ.TypeName())
				}
			}
			if l, ok := a.ResolveName("lists.l"); !ok || l.(ref.Val).Type() != listType {
				t.Errorf("lists.l: %v, %v", l, ok)
			}
			for _, n := range []string{"lists.m", "payment", "payment.nope", "card.nope"} {
				if _, ok := a.ResolveName(n); ok {
					t.Errorf("%s resolves", n)
				}
			}
		})
	}
}

// TestVariables: what each variable holds.
func TestVariables(t *testing.T) {
	cet := time.FixedZone("CET", 3600)
	in := clearInput()
	in.Payment.Time = time.Date(2026, 11, 30, 15, 0, 0, 0, cet) // 14:00 UTC
	in.State.NewCountry, in.State.NewDevice = true, true
	late := clearInput()
	late.State.Late = true
	late.State.Count = 0
	noCard := clearInput()
	noCard.Payment.CardMasked = ""
	tests := []struct {
		name string
		in   *Input
		expr string
	}{
		{"strings", in, `payment.id == "p-000123" && payment.card_id == "card-42" && payment.currency == "EUR" &&
			payment.country == "FR" && payment.merchant_id == "m-77" && payment.merchant_category == "5411" &&
			payment.channel == "web" && payment.device_id == "d-9" && payment.ip == "192.0.2.10"`},
		{"bin", in, `payment.bin == "411111"`},
		{"no bin", noCard, `payment.bin == ""`},
		{"timestamp in UTC", in, `string(payment.timestamp) == "2026-11-30T14:00:00Z" && payment.timestamp.getHours() == 14`},
		{"window", in, `card.known && card.window_count == 3 && string(card.window_start) == "2026-11-30T14:00:00Z"`},
		{"aggregates", in, `card.count_1h == 2 && card.count_24h == 5 && card.count_7d == 12 && card.count_30d == 30 &&
			card.sum_1h == 80.0 && card.sum_24h == 250.0 && card.sum_7d == 900.0 && card.sum_30d == 2500.0 &&
			card.seconds_since_previous == 600`},
		{"new", in, `card.new_country && !card.new_merchant && card.new_device`},
		{"unknown card", late, `!card.known && card.window_count == 0 && card.count_24h == 0 && card.sum_7d == 0.0 &&
			card.seconds_since_previous == -1 && !card.new_country &&
			string(card.window_start) == "0001-01-01T00:00:00Z"`},
		{"no state", &Input{Payment: in.Payment}, `!card.known && card.seconds_since_previous == -1 && !model.scored && model.score == 0.0`},
		{"model", in, `model.scored && model.score == 0.1 && model.version == "m1"`},
		{"unscored", &Input{Payment: in.Payment, Score: 0.8, ModelVersion: "m1"}, `!model.scored && model.score == 0.0`},
		{"no payment", &Input{}, `payment.id == "" && payment.amount == 0 && payment.bin == "" && !card.known`},
		{"nil input", nil, `payment.id == "" && !model.scored && model.version == ""`},
		{"string functions", in, `payment.merchant_id.startsWith("m-") && payment.ip.matches("^192\\.0\\.2\\.") &&
			payment.country.lowerAscii() == "fr" && size(payment.device_id) == 3`},
		{"duration", in, `payment.timestamp - card.window_start == duration("0s")`},
		{"math", in, `math.greatest(card.count_1h, card.count_24h) == 5`},
		// == and != are declared anew (for the decimal): CEL's own uses still check and work.
		{"equality", in, `[1, 2] == [1, 2] && {"a": 1} == {"a": 1} && type(1) == int && null == null &&
			b"a" == b"a" && 1u == 1u && duration("1s") == duration("1000ms") && dyn(1) == 1.0 &&
			dyn("a") != 1 && 1.5 != 2.5 && true != false && [[1]] != [[2]] &&
			payment.country in ["DE", "FR"] && ["a", "b"].exists(x, x == "b") &&
			{"FR": 1}.exists(k, k == payment.country) && payment.timestamp == card.window_start &&
			payment.timestamp != timestamp("2026-11-30T14:00:01Z")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := compile(t, oneRule(tt.expr))
			hits, errs := s.Eval(tt.in, nil)
			if len(errs) > 0 || len(hits) != 1 {
				t.Errorf("hits %v, errors %v; want a hit", ids(hits), errs)
			}
		})
	}
}

// TestActivationForgetsInput: an activation from the pool holds no earlier payment's values.
func TestActivationForgetsInput(t *testing.T) {
	s := compile(t, oneRule(`payment.amount > 100 && payment.country == "FR"`))
	big := clearInput()
	big.Payment.Amount = decimal.RequireFromString("500")
	small := clearInput()
	for range 3 {
		if hits, _ := s.Eval(big, nil); len(hits) != 1 {
			t.Fatal("500 FR is not over 100")
		}
		if hits, _ := s.Eval(small, nil); len(hits) != 0 {
			t.Fatal("42.50 FR after 500 FR is over 100")
		}
	}
}
