package rules

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"github.com/shopspring/decimal"
)

// TestDecimalComparisons: payment.amount compares exactly with ints, doubles and decimals, in
// either order, with each operator.
func TestDecimalComparisons(t *testing.T) {
	tests := []struct {
		expr   string
		amount string
		want   bool
	}{
		{`payment.amount > 100`, "100.00", false},
		{`payment.amount > 100`, "100.000000001", true},
		{`payment.amount > 100`, "100.01", true},
		{`payment.amount > 100`, "99.999", false},
		{`100 < payment.amount`, "100.00", false},
		{`100 < payment.amount`, "100.01", true},
		{`100 <= payment.amount`, "100.00", true},
		{`100 > payment.amount`, "99.99", true},
		{`100 >= payment.amount`, "100.0", true},
		{`payment.amount >= 99.99`, "99.99", true},
		{`payment.amount >= 99.99`, "99.989999999", false},
		{`payment.amount > 99.99`, "99.99", false},
		{`payment.amount < 0.1`, "0.09", true},
		{`payment.amount < 0.1`, "0.1", false},
		{`0.1 == payment.amount`, "0.10", true},
		{`payment.amount == 100`, "100.00", true},
		{`100 == payment.amount`, "100.00", true},
		{`payment.amount == 100`, "100.01", false},
		{`payment.amount != 100`, "100.01", true},
		{`100 != payment.amount`, "100.0", false},
		{`payment.amount != 150.0`, "150.00", false},
		{`payment.amount == 1e3`, "1000", true},
		{`payment.amount > 1e-20`, "0.00000000000000000001", false},
		{`payment.amount > 1e-20`, "0.000000000000000000011", true},
		{`payment.amount > decimal("12.34")`, "12.341", true},
		{`decimal("12.34") < payment.amount`, "12.34", false},
		{`payment.amount == decimal("12.340")`, "12.34", true},
		{`payment.amount > (payment.currency == "JPY" ? 15000 : 100)`, "100.5", true},
		{`dyn(100) < payment.amount`, "100.5", true},
		{`[1, 2].exists(x, payment.amount > x * 50)`, "50.5", true},
		{`[1, 2].exists(x, x * 50 > payment.amount)`, "100", false},
		{`string(payment.amount) == "150.00"`, "150.00", true},
		{`string(payment.amount) == "1000"`, "1E3", true},
		{`string(payment.amount) == "0.000001"`, "0.000001", true},
		{`double(payment.amount) == 99.5`, "99.50", true},
		// coefficients past int64
		{`payment.amount > 12345678901234567890`, "12345678901234567890.5", false}, // the int literal overflows: compile error below
		{`payment.amount > 1234567890123456789`, "12345678901234567890.5", true},
		{`payment.amount > 1.2345678901234567e19`, "12345678901234567890.5", true},
		{`payment.amount < 100`, "99.9999999999999999999999", true},
		{`payment.amount == 100`, "100.0000000000000000000000", true},
	}
	for _, tt := range tests {
		t.Run(tt.expr+"/"+tt.amount, func(t *testing.T) {
			s, err := Compile("t.yaml", []byte(oneRule(tt.expr)))
			if tt.expr == `payment.amount > 12345678901234567890` {
				if err == nil {
					t.Fatal("an int literal past int64 compiled")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			in := clearInput()
			in.Payment.Amount = decimal.RequireFromString(tt.amount)
			hits, errs := s.Eval(in, nil)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if got := len(hits) == 1; got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCmpScaled holds the integer comparison to shopspring's on random coefficients and
// exponents, overflowing ones included.
func TestCmpScaled(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	coef := func() int64 {
		switch r.IntN(4) {
		case 0:
			return r.Int64N(2001) - 1000
		case 1:
			return int64(r.Uint64())
		case 2:
			return []int64{0, 1, -1, math.MaxInt64, math.MinInt64 + 1}[r.IntN(5)]
		}
		return r.Int64N(1e12) - 5e11
	}
	exp := func() int32 { return int32(r.IntN(50) - 25) }
	for range 200_000 {
		c1, e1, c2, e2 := coef(), exp(), coef(), exp()
		want := decimal.New(c1, e1).Cmp(decimal.New(c2, e2))
		if got := cmpScaled(c1, e1, c2, e2); got != want {
			t.Fatalf("cmpScaled(%d, %d, %d, %d) = %d, want %d", c1, e1, c2, e2, got, want)
		}
	}
}

// TestFloatParts: a double is the decimal that decimal.NewFromFloat makes of it.
func TestFloatParts(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	floats := []float64{0, 1, -1, 0.1, 99.99, 100, 1e-20, 1.5e300, -2.5e-300, math.MaxFloat64,
		math.SmallestNonzeroFloat64, 123456789.123456789, 0.30000000000000004}
	for range 100_000 {
		switch r.IntN(3) {
		case 0:
			floats = append(floats, math.Float64frombits(r.Uint64()))
		case 1:
			floats = append(floats, float64(r.IntN(1_000_000))/100)
		default:
			floats = append(floats, r.NormFloat64()*1e6)
		}
	}
	for _, f := range floats {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		coef, exp, ok := floatParts(f)
		if !ok {
			t.Fatalf("floatParts(%v) not ok", f)
		}
		if got, want := decimal.New(coef, exp), decimal.NewFromFloat(f); !got.Equal(want) {
			t.Fatalf("floatParts(%s) = %s, want %s", strconv.FormatFloat(f, 'g', -1, 64), got, want)
		}
	}
}

// TestDecimalAgainstDoubles: comparing with a double computed at run time (not a literal) is the
// same as comparing with decimal.NewFromFloat of it, special values included.
func TestDecimalAgainstDoubles(t *testing.T) {
	s := compile(t, `rules:
  - {id: gt, description: gt, expression: payment.amount > card.sum_1h, action: flag}
  - {id: eq, description: eq, expression: payment.amount == card.sum_1h, action: flag}
  - {id: lt, description: lt, expression: card.sum_1h > payment.amount, action: flag}
`)
	for _, tt := range []struct {
		amount string
		sum    float64
		want   string
	}{
		{"42.50", 42.5, "eq"},
		{"42.50", 42.49, "gt"},
		{"0.30000000000000004", math.Nextafter(0.3, 1), "eq"},
		{"0.3", math.Nextafter(0.3, 1), "lt"},
		{"1e400", math.Inf(1), "lt"},
		{"1e400", math.Inf(-1), "gt"},
		{"5", math.NaN(), ""},
	} {
		in := clearInput()
		in.Payment.Amount, in.State.Sum1h = decimal.RequireFromString(tt.amount), tt.sum
		hits, errs := s.Eval(in, nil)
		var got string
		for _, h := range hits {
			got += h.Rule.ID
		}
		if len(errs) > 0 || got != tt.want {
			t.Errorf("%s against %v: hits %q, errors %v; want %q", tt.amount, tt.sum, got, errs, tt.want)
		}
	}
}

// BenchmarkDecimalCompare: comparing an amount with an int or a double allocates nothing.
func BenchmarkDecimalCompare(b *testing.B) {
	v := newDecimalVal(decimal.RequireFromString("42.50"))
	for _, c := range []struct {
		name  string
		other ref.Val
	}{{"int", types.Int(100)}, {"double", types.Double(99.99)}, {"decimal", newDecimalVal(decimal.RequireFromString("100.001"))}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if v.Compare(c.other) != types.IntNegOne {
					b.Fatal("42.50 is not less")
				}
			}
		})
	}
}
