package rules

import (
	"fmt"
	"math"
	"reflect"
	"strconv"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"github.com/shopspring/decimal"
)

// decimalType is the CEL type of payment.amount and of decimal("12.34"): an exact decimal.
var decimalType = types.NewOpaqueType("decimal").WithTraits(traits.ComparerType)

// decimalVal is a decimal as CEL sees it. Besides the decimal it keeps the coefficient as an
// int64 when it fits, so that comparing it with an int, a double or another decimal is integer
// arithmetic, without allocating.
type decimalVal struct {
	d     decimal.Decimal
	coef  int64 // d = coef × 10^exp, when small
	exp   int32
	small bool
}

var (
	_ ref.Val         = (*decimalVal)(nil)
	_ traits.Comparer = (*decimalVal)(nil)
)

// set makes v hold d.
func (v *decimalVal) set(d decimal.Decimal) {
	v.d, v.exp = d, d.Exponent()
	v.small = d.NumDigits() <= 18
	if v.small {
		v.coef = d.CoefficientInt64()
	}
}

func newDecimalVal(d decimal.Decimal) *decimalVal {
	v := new(decimalVal)
	v.set(d)
	return v
}

// parseDecimal is decimal("12.34").
func parseDecimal(s ref.Val) ref.Val {
	str, ok := s.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(s)
	}
	d, err := decimal.NewFromString(string(str))
	if err != nil {
		return types.NewErr("decimal(%q): not a decimal number", string(str))
	}
	return newDecimalVal(d)
}

// cmp compares v with a number: -1, 0 or +1, or ok false when other is no number (or NaN).
func (v *decimalVal) cmp(other ref.Val) (c int, ok bool) {
	switch o := other.(type) {
	case types.Int:
		if v.small {
			return cmpScaled(v.coef, v.exp, int64(o), 0), true
		}
		return v.d.Cmp(decimal.NewFromInt(int64(o))), true
	case types.Uint:
		if o <= math.MaxInt64 && v.small {
			return cmpScaled(v.coef, v.exp, int64(o), 0), true
		}
		return v.d.Cmp(decimal.NewFromUint64(uint64(o))), true
	case types.Double:
		f := float64(o)
		switch {
		case math.IsNaN(f):
			return 0, false
		case math.IsInf(f, 1):
			return -1, true
		case math.IsInf(f, -1):
			return 1, true
		}
		if v.small {
			if coef, exp, ok := floatParts(f); ok {
				return cmpScaled(v.coef, v.exp, coef, exp), true
			}
		}
		return v.d.Cmp(decimal.NewFromFloat(f)), true
	case *decimalVal:
		if v.small && o.small {
			return cmpScaled(v.coef, v.exp, o.coef, o.exp), true
		}
		return v.d.Cmp(o.d), true
	}
	return 0, false
}

// Compare implements traits.Comparer, which the standard <, <=, > and >= call on their left
// operand (the rules' compile step puts the decimal on the left).
func (v *decimalVal) Compare(other ref.Val) ref.Val {
	c, ok := v.cmp(other)
	if !ok {
		return types.MaybeNoSuchOverloadErr(other)
	}
	return cmpResult(c)
}

// cmpResult is c as a ref.Val, without allocating: an interface holding a negative int is
// allocated, one holding a value of a variable is not.
func cmpResult(c int) ref.Val {
	switch c {
	case -1:
		return negOne
	case 1:
		return posOne
	}
	return zero
}

var negOne, zero, posOne ref.Val = types.IntNegOne, types.IntZero, types.IntOne

// Equal implements ref.Val: a decimal equals the int, double or decimal of the same value.
func (v *decimalVal) Equal(other ref.Val) ref.Val {
	c, ok := v.cmp(other)
	return types.Bool(ok && c == 0)
}

// ConvertToNative implements ref.Val.
func (v *decimalVal) ConvertToNative(typeDesc reflect.Type) (any, error) {
	switch typeDesc {
	case reflect.TypeFor[decimal.Decimal]():
		return v.d, nil
	case reflect.TypeFor[string]():
		return showDecimal(v.d), nil
	}
	return nil, fmt.Errorf("type conversion error from decimal to %v", typeDesc)
}

// ConvertToType implements ref.Val.
func (v *decimalVal) ConvertToType(typeVal ref.Type) ref.Val {
	switch typeVal {
	case types.StringType:
		return types.String(showDecimal(v.d))
	case types.DoubleType:
		return types.Double(v.d.InexactFloat64())
	case types.TypeType:
		return decimalType
	}
	if typeVal.TypeName() == decimalType.TypeName() {
		return v
	}
	return types.NewErr("type conversion error from decimal to '%s'", typeVal)
}

// Type implements ref.Val.
func (v *decimalVal) Type() ref.Type { return decimalType }

// Value implements ref.Val.
func (v *decimalVal) Value() any { return v.d }

// showDecimal writes d with the decimal places it was given (150.00 stays 150.00).
func showDecimal(d decimal.Decimal) string {
	if e := d.Exponent(); e < 0 {
		return d.StringFixed(-e)
	}
	return d.String()
}

// decimalToString is string(decimal).
func decimalToString(v ref.Val) ref.Val {
	return types.String(showDecimal(v.(*decimalVal).d))
}

// decimalToDouble is double(decimal), the nearest double.
func decimalToDouble(v ref.Val) ref.Val {
	return types.Double(v.(*decimalVal).d.InexactFloat64())
}

var pow10 = [...]int64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
	1e15, 1e16, 1e17, 1e18}

// cmpScaled compares c1×10^e1 with c2×10^e2 exactly.
func cmpScaled(c1 int64, e1 int32, c2 int64, e2 int32) int {
	s1, s2 := sign(c1), sign(c2)
	if s1 != s2 || s1 == 0 {
		return cmpInt(int64(s1), int64(s2))
	}
	// Same sign, neither zero: bring the one with the larger exponent to the other's. If that
	// overflows, its magnitude is past int64's, so past the other's.
	switch {
	case e1 > e2:
		c, ok := scale(c1, int64(e1)-int64(e2))
		if !ok {
			return s1
		}
		return cmpInt(c, c2)
	case e2 > e1:
		c, ok := scale(c2, int64(e2)-int64(e1))
		if !ok {
			return -s2
		}
		return cmpInt(c1, c)
	}
	return cmpInt(c1, c2)
}

// scale is c×10^k, ok false when that is out of int64's range.
func scale(c, k int64) (int64, bool) {
	if k >= int64(len(pow10)) {
		return 0, false
	}
	m := pow10[k]
	if c > math.MaxInt64/m || c < -(math.MaxInt64/m) {
		return 0, false
	}
	return c * m, true
}

func sign(c int64) int {
	switch {
	case c > 0:
		return 1
	case c < 0:
		return -1
	}
	return 0
}

func cmpInt(a, b int64) int {
	switch {
	case a > b:
		return 1
	case a < b:
		return -1
	}
	return 0
}

// floatParts is f as coef×10^exp, the shortest decimal that reads back as f (the value that
// decimal.NewFromFloat gives: 99.99 is 9999×10^-2), without allocating. f is finite.
func floatParts(f float64) (coef int64, exp int32, ok bool) {
	var buf [32]byte
	b := strconv.AppendFloat(buf[:0], f, 'e', -1, 64) // -d.ddde±dd
	neg := b[0] == '-'
	if neg {
		b = b[1:]
	}
	digits := 0
	i := 0
	for ; i < len(b) && b[i] != 'e'; i++ {
		if b[i] == '.' {
			continue
		}
		coef = coef*10 + int64(b[i]-'0')
		digits++
	}
	if i == len(b) || digits > 18 {
		return 0, 0, false
	}
	e, eneg := 0, false
	for _, c := range b[i+1:] {
		switch {
		case c == '-':
			eneg = true
		case c >= '0' && c <= '9':
			e = e*10 + int(c-'0')
		}
	}
	if eneg {
		e = -e
	}
	if neg {
		coef = -coef
	}
	return coef, int32(e - (digits - 1)), true
}
