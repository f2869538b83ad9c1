package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"cel.dev/cel-go/common/types"
	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/window"
)

// TestComparisonDetected: exactly the expressions that compare an int, double, bool or decimal
// variable with a constant of its type are evaluated without CEL, found on the expression as
// evaluated (100 < payment.amount is payment.amount > 100; 99.99 is the decimal 99.99).
func TestComparisonDetected(t *testing.T) {
	for _, tt := range []struct {
		expr string
		want string // the comparison as evaluated; "" for CEL
	}{
		{`payment.amount > 100`, `payment.amount > 100`},
		{`(payment.amount > 100)`, `payment.amount > 100`},
		{`100 < payment.amount`, `payment.amount > 100`},
		{`payment.amount >= 99.99`, `payment.amount >= 99.99`},
		{`99.99 >= payment.amount`, `payment.amount <= 99.99`},
		{`payment.amount == 100.00`, `payment.amount == 100`},
		{`payment.amount != 100.000000001`, `payment.amount != 100.000000001`},
		{`payment.amount < decimal("12.340")`, `payment.amount < 12.340`},
		{`card.window_count > 10`, `card.window_count > 10`},
		{`10 < card.window_count`, `card.window_count > 10`},
		{`-1 == card.seconds_since_previous`, `card.seconds_since_previous == -1`},
		{`card.count_30d <= -9223372036854775808`, `card.count_30d <= -9223372036854775808`},
		{`model.score > 0.5`, `model.score > 0.5`},
		{`0.5 <= model.score`, `model.score >= 0.5`},
		{`card.sum_7d != -0.0`, `card.sum_7d != -0`},
		{`card.known == true`, `card.known == true`},
		{`false < card.new_device`, `card.new_device > false`},
		{`model.scored != false`, `model.scored != false`},

		{`(payment.amount > 100) == true`, ``},
		{`!(payment.amount > 100)`, ``},
		{`payment.amount > 100 && true`, ``},
		{`payment.amount > payment.amount`, ``},
		{`card.window_count > card.count_1h`, ``},
		{`card.window_count + 1 > 10`, ``},
		{`model.score > -(0.5)`, ``},
		{`model.score > double(1)`, ``},
		{`dyn(card.window_count) > 10`, ``},
		{`card.window_count > decimal("5")`, ``},
		{`model.score > decimal("0.5")`, ``},
		{`payment.amount > double(1)`, ``},
		{`payment.country == "FR"`, ``},
		{`model.version != ""`, ``},
		{`payment.timestamp > timestamp("2026-01-01T00:00:00Z")`, ``},
		{`card.known`, ``},
		{`1 < 2`, ``},
		{`payment.card_id in lists.blocked_cards`, ``}, // the other native test
	} {
		t.Run(tt.expr, func(t *testing.T) {
			s := compile(t, oneRule(tt.expr))
			got := ""
			if c := s.cmps[0]; c.op != opNone {
				got = showCmp(c)
			}
			if got != tt.want {
				t.Errorf("comparison %q, want %q", got, tt.want)
			}
			if native := s.exprs[0] == nil; native != (tt.want != "" || s.members[0].list != "") {
				t.Errorf("evaluated without CEL: %v", native)
			}
		})
	}
}

// showCmp writes c back, with its variable on the left, as Eval evaluates it.
func showCmp(c constCmp) string {
	name := ""
	for _, v := range fieldVariables() {
		if varIndex(v.name) == c.v {
			name = v.name
		}
	}
	op := [...]string{"?", "<", "<=", ">", ">=", "==", "!="}[c.op]
	var k string
	switch c.kind {
	case kindInt:
		k = fmt.Sprint(c.i)
	case kindBool:
		k = fmt.Sprint(c.i == 1)
	case kindDouble:
		k = fmt.Sprint(c.f)
	case kindDecimal:
		switch d := c.dec.(type) {
		case types.Int:
			k = fmt.Sprint(int64(d))
		case *decimalVal:
			k = showDecimal(d.d)
		}
	}
	return name + " " + op + " " + k
}

// cmpLiterals are the constants the equivalence test compares each kind of variable with, as
// written in an expression: around the inputs' values (cmpInputs), and at the ends of the types.
var cmpLiterals = map[int][]string{
	kindInt: {"0", "1", "-1", "3", "10", "11", "255", "256", "9007199254740993",
		"9223372036854775807", "-9223372036854775808"},
	kindDouble: {"0.0", "-0.0", "0.5", "0.49999999999999994", "0.5000000000000001", "1.0", "100.5",
		"-2.5", "1e300", "-1e300", "5e-324", "9007199254740993.0"},
	kindBool: {"true", "false"},
	kindDecimal: {"0", "0.0", "-0.01", "100", "100.00", "100.000000001", "99.99", "99.990", "100.01",
		"0.1", "1e20", "9223372036854775807", "-9223372036854775808", `decimal("100.000")`,
		`decimal("12345678901234567890.5")`, `decimal("-0.000000000000000000001")`},
}

// TestComparisonAsCEL: a comparison evaluated without CEL matches when the same comparison
// evaluated by CEL does (`(<expr>) == true`), for every int, double, bool and decimal variable,
// every operator, constants on either side, over inputs of every shape; and its detail is CEL's.
func TestComparisonAsCEL(t *testing.T) {
	var b strings.Builder
	b.WriteString("rules:\n")
	n := 0
	rule := func(expr, v string) {
		// native_N, then cel_N: the same comparison, which CEL evaluates.
		for _, r := range []struct{ id, expr string }{{"native", expr}, {"cel", "(" + expr + ") == true"}} {
			fmt.Fprintf(&b, "  - {id: %s_%d, description: x, expression: '%s', detail: '\"value \" + string(%s)', action: flag}\n",
				r.id, n, strings.ReplaceAll(r.expr, "'", "''"), v)
		}
		n++
	}
	for _, v := range fieldVariables() {
		kind := varKind(varIndex(v.name))
		for _, lit := range cmpLiterals[kind] {
			for _, op := range []string{"<", "<=", ">", ">=", "==", "!="} {
				rule(v.name+" "+op+" "+lit, v.name)
				rule(lit+" "+op+" "+v.name, v.name)
			}
		}
	}
	s := compile(t, b.String())
	index := map[*Rule]int{} // rules 2i and 2i+1 are native_i and cel_i
	for i := range s.rules {
		r := &s.rules[i]
		index[r] = i
		if native := i%2 == 0; native != (s.exprs[i] == nil) || r.ID != fmt.Sprintf("%s_%d", map[bool]string{true: "native", false: "cel"}[native], i/2) {
			t.Fatalf("rule %d %s (%s): evaluated without CEL: %v", i, r.ID, r.Expression, !native)
		}
	}

	const inputs = 500
	rnd := rand.New(rand.NewPCG(3, 4))
	matches := make([]int, n)
	got := make([]*Hit, len(s.rules))
	var hits []Hit
	for k := range inputs {
		in := cmpInput(rnd)
		var errs []EvalError
		hits, errs = s.Eval(in, hits[:0])
		if len(errs) > 0 {
			t.Fatalf("input %d: errors %v", k, errs)
		}
		clear(got)
		for j := range hits {
			got[index[hits[j].Rule]] = &hits[j]
		}
		for i := range n {
			native, cel := got[2*i], got[2*i+1]
			switch {
			case native == nil && cel == nil:
				continue
			case native == nil:
				t.Fatalf("input %d (%s): `%s` matched, not `%s`", k, showInput(in), s.rules[2*i+1].Expression, s.rules[2*i].Expression)
			case cel == nil:
				t.Fatalf("input %d (%s): `%s` matched, not `%s`", k, showInput(in), s.rules[2*i].Expression, s.rules[2*i+1].Expression)
			case native.Detail != cel.Detail:
				t.Fatalf("input %d (%s): `%s` matched with detail %q, `%s` with %q", k, showInput(in),
					s.rules[2*i].Expression, native.Detail, s.rules[2*i+1].Expression, cel.Detail)
			}
			matches[i]++
		}
	}
	// Most comparisons both match and do not match some input.
	both := 0
	for _, m := range matches {
		if m > 0 && m < inputs {
			both++
		}
	}
	if both < n*2/3 {
		t.Errorf("%d comparisons of %d both match and miss: the inputs do not test much", both, n)
	}
}

// cmpInput is an input for comparisons: values from around the constants of cmpLiterals and
// random ones, with no state, a late or ahead event, no score, no payment, or none at all.
func cmpInput(rnd *rand.Rand) *Input {
	ints := []int64{0, 1, -1, 2, 3, 10, 11, 12, 255, 256, 257, 1 << 53, 1<<53 + 1, math.MaxInt64,
		math.MinInt64, math.MaxInt64 - 1}
	doubles := []float64{0, math.Copysign(0, -1), 0.5, 0.49999999999999994, 0.5000000000000001, 1,
		100.5, -2.5, 1e300, -1e300, 5e-324, 1 << 53, math.Inf(1), math.Inf(-1), math.NaN(),
		math.MaxFloat64, 0.1, 0.9}
	amounts := []string{"0", "0.00", "-0.01", "100", "100.00", "100.000", "100.000000001", "100.0000000009",
		"99.99", "99.990", "99.98", "100.01", "0.1", "1e20", "100000000000000000000.0", "9223372036854775807",
		"9223372036854775808", "-9223372036854775808", "12345678901234567890.5", "-0.000000000000000000001",
		"42.50", "1000000", "0.000000000000000000000000001"}
	i := func() int64 {
		if rnd.IntN(4) == 0 {
			return rnd.Int64N(40) - 5
		}
		return ints[rnd.IntN(len(ints))]
	}
	f := func() float64 {
		if rnd.IntN(4) == 0 {
			return rnd.Float64()*4 - 1
		}
		return doubles[rnd.IntN(len(doubles))]
	}
	a := func() decimal.Decimal {
		if rnd.IntN(4) == 0 {
			return decimal.New(rnd.Int64N(30000)-5000, -int32(rnd.IntN(4)))
		}
		return decimal.RequireFromString(amounts[rnd.IntN(len(amounts))])
	}
	in := &Input{
		Payment: &payment.Payment{ID: "p", CardID: "c", Amount: a(), Time: time.Date(2026, 11, 30, 14, 5, 0, 0, time.UTC)},
		State: &window.Result{Count: i(), Window: time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC),
			Aggregates: window.Aggregates{Count1h: i(), Count24h: i(), Count7d: i(), Count30d: i(),
				Sum1h: f(), Sum24h: f(), Sum7d: f(), Sum30d: f(), SincePrevious: i(),
				NewCountry: rnd.IntN(2) == 0, NewMerchant: rnd.IntN(2) == 0, NewDevice: rnd.IntN(2) == 0}},
		Score: f(), Scored: rnd.IntN(4) > 0, ModelVersion: "m1",
	}
	return withGaps(rnd, in)
}

// withGaps returns in, or, one time in three, an input with a part missing: none at all, no card
// state, a late or an ahead one, no payment; the fast paths must read each as CEL does.
func withGaps(rnd *rand.Rand, in *Input) *Input {
	switch rnd.IntN(12) {
	case 0:
		return nil
	case 1:
		in.State = nil
	case 2:
		in.State.Late = true
	case 3:
		in.State.Ahead = true
	case 4:
		in.Payment = nil
	}
	return in
}

func showInput(in *Input) string {
	if in == nil {
		return "nil"
	}
	return fmt.Sprintf("payment %+v, state %+v, score %v, scored %v", in.Payment, in.State, in.Score, in.Scored)
}

// TestComparisonAllocates: the default rules, three comparisons and seven membership tests, take
// no activation and allocate nothing on a payment that matches none of them.
func TestComparisonAllocates(t *testing.T) {
	s := mustLoad(t, defaultFile)
	for i, r := range s.Rules()[:3] {
		if s.exprs[i] != nil || s.cmps[i].op == opNone {
			t.Errorf("rule %s (%s) is evaluated by CEL", r.ID, r.Expression)
		}
	}
	in := clearInput()
	hits := make([]Hit, 0, 4)
	if n := testing.AllocsPerRun(100, func() { hits, _ = s.Eval(in, hits[:0]) }); n != 0 {
		t.Errorf("%v allocations an Eval", n)
	}
}

// TestComparisonDetail: a comparison evaluated without CEL has its detail evaluated by CEL, only
// when it matches.
func TestComparisonDetail(t *testing.T) {
	s := compile(t, `rules:
  - {id: big, description: big, expression: payment.amount > 100, detail: '"amount " + string(payment.amount)', action: flag}
  - {id: fast, description: fast, expression: card.window_count > 10, detail: 'string(100 / (card.window_count - 3))', action: flag}
`)
	in := clearInput() // 3 payments in the window: the detail of fast would fail
	in.Payment.Amount = decimal.RequireFromString("100.010")
	hits, errs := s.Eval(in, nil)
	if len(errs) > 0 || len(hits) != 1 || hits[0].Rule.ID != "big" || hits[0].Detail != "amount 100.010" {
		t.Errorf("hits %+v, errors %v; want big with amount 100.010", hits, errs)
	}
	in.State.Count = 13
	hits, errs = s.Eval(in, nil)
	if len(errs) > 0 || len(hits) != 2 || hits[1].Rule.ID != "fast" || hits[1].Detail != "10" {
		t.Errorf("hits %+v, errors %v; want big, and fast with 10", hits, errs)
	}
}
