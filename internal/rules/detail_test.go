package rules

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/window"
)

// detailRule is a file of one flag rule, always matching, with detail detail (in single quotes).
func detailRule(detail string) string {
	return fmt.Sprintf("rules:\n  - {id: r, description: the rule, expression: 'true', detail: '%s', action: flag}\n",
		strings.ReplaceAll(detail, "'", "''"))
}

// TestDetailDetected: exactly the details that are concatenations of string literals, string
// variables, string() of variables and the format of variables with %s, %d and %f clauses are
// written without CEL; on the default input they give what CEL gives.
func TestDetailDetected(t *testing.T) {
	for _, tt := range []struct {
		detail string
		native bool
		want   string // on clearInput
	}{
		{`"amount " + string(payment.amount) + " " + payment.currency + " is over the threshold of 100 " + payment.currency`,
			true, "amount 42.50 EUR is over the threshold of 100 EUR"},
		{`string(card.window_count) + " payments on this card in the window from " + string(card.window_start) + ", over the limit of 10"`,
			true, "3 payments on this card in the window from 2026-11-30T14:00:00Z, over the limit of 10"},
		{`"fraud probability %.3f is over 0.5 (model %s)".format([model.score, model.version])`,
			true, "fraud probability 0.100 is over 0.5 (model m1)"},
		{`"x"`, true, "x"},
		{`""`, true, ""},
		{`payment.id`, true, "p-000123"},
		{`payment.bin + "/" + model.version`, true, "411111/m1"},
		{`"a" + ("b" + (payment.country + "c"))`, true, "abFRc"},
		{`(("a" + "b") + payment.country) + "c"`, true, "abFRc"},
		{`string(payment.id)`, true, "p-000123"},
		{`string(card.known) + string(model.scored) + string(card.new_device)`, true, "truetruefalse"},
		{`string(payment.timestamp)`, true, "2026-11-30T14:05:00Z"},
		{`string(card.sum_30d) + " " + string(model.score)`, true, "2500 0.1"},
		{`string(card.seconds_since_previous)`, true, "600"},
		{`"%s %s %s %s %s".format([payment.id, card.count_1h, card.known, payment.timestamp, card.sum_1h])`,
			true, "p-000123 2 true 2026-11-30T14:05:00Z 80"},
		{`"%d|%d|%f|%.0f|%.2f|%%|100%%".format([card.count_24h, model.score, model.score, card.sum_24h, card.count_7d])`,
			true, "5|0.1|0.100000|250|12.00|%|100%"},
		{`"é ✓ \" \\ \n".format([])`, true, "é ✓ \" \\ \n"},

		{`payment.country.lowerAscii()`, false, "fr"},
		{`string(card.window_count + 1)`, false, "4"},
		{`payment.id + string(1)`, false, "p-0001231"},
		{`string(double(payment.amount))`, false, "42.5"},
		{`"%s".format(["x"])`, false, "x"},
		{`"%s".format([payment.id + "x"])`, false, "p-000123x"},
		{`"%.3s".format([payment.id])`, false, "p-000123"},
		{`"%x".format([card.count_1h])`, false, "2"},
		{`"%e".format([model.score])`, false, "1.000000e-01"},
		{`"%o|%b".format([card.count_7d, card.known])`, false, "14|1"},
		{`"%s".format([[payment.id]])`, false, "[p-000123]"},
		{`"%s".format([dyn(payment.id)])`, false, "p-000123"},
		{`card.known ? "known" : "unknown"`, false, "known"},
		{`[payment.id][0]`, false, "p-000123"},
		{`"a" + dyn(payment.id)`, false, "ap-000123"},
		{`payment.id + payment.country.lowerAscii()`, false, "p-000123fr"},
	} {
		t.Run(tt.detail, func(t *testing.T) {
			s := compile(t, detailRule(tt.detail))
			if native := s.renders[0] != nil; native != tt.native || native == (s.details[0] != nil) {
				t.Errorf("written without CEL: %v, want %v (program %v)", native, tt.native, s.details[0] != nil)
			}
			hits, errs := s.Eval(clearInput(), nil)
			if len(errs) > 0 || len(hits) != 1 || hits[0].Detail != tt.want {
				t.Errorf("hits %+v, errors %v; want detail %q", hits, errs, tt.want)
			}
		})
	}
}

// detailShapes are details of every shape written without CEL: each variable alone, in string()
// and in each format clause that takes it; the default file's details; random concatenations of
// variables and their string() with literals, however nested; and random formats of several
// clauses. (A format, or string() of a string, in a concatenation does not compile: the cost
// estimate does not bound their size.)
func detailShapes(t *testing.T, rnd *rand.Rand) []string {
	type clause struct{ verb, arg string }
	var clauses []clause
	var parts, shapes []string
	for _, v := range fieldVariables() {
		n := v.name
		var verbs []string
		switch varKind(varIndex(n)) {
		case kindString:
			parts = append(parts, n)
			shapes = append(shapes, "string("+n+")")
			verbs = []string{"%s"}
		case kindInt:
			verbs = []string{"%s", "%d", "%f", "%.0f", "%.3f", "%.17f"}
		case kindDouble:
			verbs = []string{"%s", "%d", "%f", "%.0f", "%.1f", "%.3f", "%.20f", "%.100f", "%.003f"}
		case kindBool, kindTime:
			verbs = []string{"%s"}
		}
		if varKind(varIndex(n)) != kindString {
			parts = append(parts, "string("+n+")")
		}
		for _, verb := range verbs {
			clauses = append(clauses, clause{verb, n})
		}
	}
	shapes = append(shapes, parts...)
	for _, c := range clauses {
		shapes = append(shapes, `"`+c.verb+`".format([`+c.arg+`])`)
	}
	for _, r := range mustLoad(t, defaultFile).Rules() {
		if r.Detail != "" {
			shapes = append(shapes, r.Detail)
		}
	}
	literals := []string{`""`, `" "`, `"amount "`, `"%"`, `"é✓"`, `"\""`, `"\\n"`, `"\n"`, `"%%s"`}
	part := func() string {
		if rnd.IntN(3) == 0 {
			return literals[rnd.IntN(len(literals))]
		}
		return parts[rnd.IntN(len(parts))]
	}
	var concat func(n int) string
	concat = func(n int) string {
		if n == 1 {
			return part()
		}
		k := 1 + rnd.IntN(n-1)
		return "(" + concat(k) + " + " + concat(n-k) + ")"
	}
	for range 60 {
		shapes = append(shapes, concat(2+rnd.IntN(5)))
	}
	texts := []string{"", " ", "a", "%%", "é ✓", "100%% ", `\"`, ") (", "%%%%"}
	for range 40 {
		var f strings.Builder
		var args []string
		for range 1 + rnd.IntN(4) {
			c := clauses[rnd.IntN(len(clauses))]
			f.WriteString(texts[rnd.IntN(len(texts))] + c.verb)
			args = append(args, c.arg)
		}
		f.WriteString(texts[rnd.IntN(len(texts))])
		shapes = append(shapes, `"`+f.String()+`".format([`+strings.Join(args, ", ")+`])`)
	}
	return shapes
}

// TestDetailAsCEL: a detail written without CEL is the string that CEL writes for the same
// detail (evaluated as `[<detail>][0]`, which is no concatenation), for details of every shape,
// over inputs of every shape.
func TestDetailAsCEL(t *testing.T) {
	rnd := rand.New(rand.NewPCG(5, 6))
	shapes := detailShapes(t, rnd)
	var b strings.Builder
	b.WriteString("rules:\n")
	for i, d := range shapes {
		// native_N, then cel_N: the same detail, which CEL writes.
		for _, r := range []struct{ id, detail string }{{"native", d}, {"cel", "[" + d + "][0]"}} {
			fmt.Fprintf(&b, "  - {id: %s_%d, description: x, expression: 'true', detail: '%s', action: flag}\n",
				r.id, i, strings.ReplaceAll(r.detail, "'", "''"))
		}
	}
	s := compile(t, b.String())
	for i := range s.rules {
		if native := i%2 == 0; native != (s.renders[i] != nil) {
			t.Fatalf("rule %s (%s): written without CEL: %v", s.rules[i].ID, s.rules[i].Detail, !native)
		}
	}

	const inputs = 1500
	var hits []Hit
	for k := range inputs {
		in := detailInput(rnd)
		var errs []EvalError
		hits, errs = s.Eval(in, hits[:0])
		if len(errs) > 0 {
			t.Fatalf("input %d (%s): errors %v", k, showDetailInput(in), errs)
		}
		if len(hits) != len(s.rules) {
			t.Fatalf("input %d: %d hits of %d rules", k, len(hits), len(s.rules))
		}
		for i := 0; i < len(hits); i += 2 {
			if native, cel := hits[i].Detail, hits[i+1].Detail; native != cel {
				t.Fatalf("input %d (%s): detail `%s` written %q, by CEL %q", k, showDetailInput(in),
					shapes[i/2], native, cel)
			}
		}
	}
}

// detailInput is an input for details: strings, amounts, times, ints and doubles of every shape
// (empty, not UTF-8, with many decimal places, huge, negative, NaN and infinite, zero times, in
// other zones), with no state, a late or ahead event, no score, no payment, or none at all.
func detailInput(rnd *rand.Rand) *Input {
	strs := []string{"", "x", "FR", "EUR", "p-000123", "é ✓", "%s", "%%", "\"'\\", "\n", "\xff\xfe", strings.Repeat("ab", 40)}
	masked := []string{"", "411111******1111", "41111", "4111a1******1111", "411111"}
	amounts := []string{"0", "0.00", "-0.00", "42.50", "150.00", "100.0000000001", "-0.01", "-12.340",
		"0.000000000000000000000000001", "999999999999999999", "999999999999999999.99", "-999999999999999999",
		"123456789012345678901234567890.123456789", "1e20", "-1.5e3", "1E-30", "9223372036854775807",
		"-9223372036854775808", "0.100000000000000000"}
	ints := []int64{0, 1, -1, 10, 11, 600, math.MaxInt64, math.MinInt64, 1 << 53, -(1 << 53) - 1}
	doubles := []float64{0, math.Copysign(0, -1), 0.1, 0.5, 0.9, 0.0005, 0.0015, 0.1235, 0.9995, 0.99949999999999994,
		1.0005, 2.675, 1e20, 1e21, 1e-5, 1e-4, 123456789.123, 1e300, -1e300, math.MaxFloat64, 5e-324,
		-2.5, math.Inf(1), math.Inf(-1), math.NaN(), 1 << 53, 100, 2500}
	zones := []*time.Location{time.UTC, time.FixedZone("CET", 3600), time.FixedZone("odd", -(3*3600 + 17*60 + 5))}
	str := func() string { return strs[rnd.IntN(len(strs))] }
	i := func() int64 {
		if rnd.IntN(3) == 0 {
			return rnd.Int64N(2000) - 100
		}
		return ints[rnd.IntN(len(ints))]
	}
	f := func() float64 {
		switch rnd.IntN(4) {
		case 0:
			return rnd.Float64()
		case 1:
			return (rnd.Float64() - 0.5) * math.Pow(10, float64(rnd.IntN(60)-30))
		}
		return doubles[rnd.IntN(len(doubles))]
	}
	a := func() decimal.Decimal {
		switch rnd.IntN(5) {
		case 0:
			return decimal.New(rnd.Int64N(2_000_000)-100_000, -int32(rnd.IntN(8)))
		case 1:
			return decimal.New(rnd.Int64()-math.MaxInt64/2, int32(rnd.IntN(40)-30))
		case 2:
			return decimal.Decimal{}
		}
		return decimal.RequireFromString(amounts[rnd.IntN(len(amounts))])
	}
	tm := func() time.Time {
		switch rnd.IntN(6) {
		case 0:
			return time.Time{}
		case 1:
			return time.Unix(rnd.Int64N(4_000_000_000), rnd.Int64N(1_000_000_000)).In(zones[rnd.IntN(len(zones))])
		case 2:
			return time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, zones[rnd.IntN(len(zones))])
		case 3:
			return time.Date(10000+rnd.IntN(5000), 1, 1, 0, 0, 0, rnd.IntN(1000)*1000, time.UTC)
		case 4:
			return time.Date(-rnd.IntN(3000), 6, 1, 0, 0, 0, 0, time.UTC)
		}
		return time.Date(2026, 11, 30, 14, 5, 0, rnd.IntN(3)*500_000_000, zones[rnd.IntN(len(zones))])
	}
	in := &Input{
		Payment: &payment.Payment{ID: str(), CardID: str(), CardMasked: masked[rnd.IntN(len(masked))], Amount: a(),
			Currency: str(), Country: str(), MerchantID: str(), MerchantCategory: str(), Channel: str(),
			DeviceID: str(), IP: str(), Time: tm()},
		State: &window.Result{Count: i(), Window: tm(),
			Aggregates: window.Aggregates{Count1h: i(), Count24h: i(), Count7d: i(), Count30d: i(),
				Sum1h: f(), Sum24h: f(), Sum7d: f(), Sum30d: f(), SincePrevious: i(),
				NewCountry: rnd.IntN(2) == 0, NewMerchant: rnd.IntN(2) == 0, NewDevice: rnd.IntN(2) == 0}},
		Score: f(), Scored: rnd.IntN(4) > 0, ModelVersion: str(),
	}
	return withGaps(rnd, in)
}

func showDetailInput(in *Input) string {
	if in == nil {
		return "nil"
	}
	p := "nil"
	if in.Payment != nil {
		p = fmt.Sprintf("%+v, amount %s", *in.Payment, showDecimal(in.Payment.Amount))
	}
	return fmt.Sprintf("payment %s, state %+v, score %v, scored %v, version %q", p, in.State, in.Score, in.Scored, in.ModelVersion)
}

// TestAppendDecimal: an amount is written as string(payment.amount) writes it, whatever its
// digits and exponent.
func TestAppendDecimal(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 8))
	check := func(d decimal.Decimal) {
		if got, want := string(appendDecimal(nil, d)), showDecimal(d); got != want {
			t.Fatalf("%s (coefficient %v, exponent %d): %q, want %q", want, d.Coefficient(), d.Exponent(), got, want)
		}
	}
	check(decimal.Decimal{})
	for _, c := range []int64{0, 1, -1, 9, 10, 99, 100, 999999999999999999, -999999999999999999,
		1000000000000000000, math.MaxInt64, math.MinInt64} {
		for e := int32(-40); e <= 5; e++ {
			check(decimal.New(c, e))
		}
	}
	for range 100_000 {
		c := rnd.Int64() >> rnd.IntN(64)
		if rnd.IntN(2) == 0 {
			c = -c
		}
		check(decimal.New(c, int32(rnd.IntN(50)-40)))
	}
}

// TestDetailAllocates: a default rule's detail written without CEL costs one allocation, its
// string; a clear payment none.
func TestDetailAllocates(t *testing.T) {
	s := mustLoad(t, defaultFile)
	for i, r := range s.Rules() {
		if r.Detail != "" && s.renders[i] == nil {
			t.Errorf("rule %s: detail %s is written by CEL", r.ID, r.Detail)
		}
	}
	for _, tt := range []struct {
		name   string
		change func(in *Input)
		allocs float64
	}{
		{"clear", func(*Input) {}, 0},
		{"amount", func(in *Input) { in.Payment.Amount = decimal.RequireFromString("150.00") }, 1},
		{"velocity", func(in *Input) { in.State.Count = 11 }, 1},
		{"model", func(in *Input) { in.Score = 0.9 }, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := clearInput()
			tt.change(in)
			hits := make([]Hit, 0, 4)
			if n := testing.AllocsPerRun(100, func() { hits, _ = s.Eval(in, hits[:0]) }); n != tt.allocs {
				t.Errorf("%v allocations an Eval, want %v", n, tt.allocs)
			}
		})
	}
}
