package rules

import (
	"math"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"github.com/shopspring/decimal"
)

// render is a detail that Eval writes without CEL, as CEL would: a concatenation of string
// literals, string variables, string() of a variable, and "...".format([...]) of variables
// (`"amount " + string(payment.amount) + " " + payment.currency`). It is a list of segments,
// each literal text or a variable written in one way, which Eval appends to one buffer: one
// allocation, for the string, against a dozen for CEL's evaluation. A nil *render is any other
// detail.
type render struct {
	segs []segment
}

// segment is a piece of a render: text, or variable v written as kind says.
type segment struct {
	kind segKind
	text string // segText's
	v    int    // the variable's index (varIndex)
	prec int    // segFixed's and segFixedInt's decimal places
}

// segKind says how a segment is written: each as CEL writes it, in the function named.
type segKind uint8

const (
	segText segKind = iota
	// A string variable (and "%s" of one).
	segString
	// string(int), "%s" and "%d" of an int: types.Int's conversion, the ext strings' format.
	segInt
	// string(bool), "%s" of a bool: true or false.
	segBool
	// string(payment.amount): decimalToString, with the decimal places the amount was given.
	segDecimal
	// string(timestamp), "%s" of a timestamp: RFC 3339 in UTC, with the nanoseconds it has
	// (types.Timestamp's conversion; the format's clause, which is the same).
	segTime
	// string(double): types.Double's conversion, fmt's %g.
	segDouble
	// "%s" and "%d" of a double: the ext strings' format (formatting_v2.go), every digit and no
	// exponent; NaN, Infinity, -Infinity.
	segDoubleFormat
	// "%.Nf" of a double: fmt's %.Nf (rounded half to even on the exact binary value); NaN,
	// Infinity, -Infinity.
	segFixed
	// "%.Nf" of an int: fmt's %.Nf of the int as a double.
	segFixedInt
)

// maxFormatPrecision is the ext strings' limit on a format clause's precision (version 5 on):
// a greater one does not compile.
const maxFormatPrecision = 100

// detailRender says how the checked a, a detail as it is evaluated, is written without CEL
// when it is a concatenation (`_+_` of strings, however nested) of parts that are each a string
// literal, a string variable, string() of an int, double, bool, decimal or timestamp variable,
// or the ext strings' "<literal>".format([<variables>]) with only %s, %d, %f, %.Nf and %%
// clauses, each of a variable of a type that it takes. ok false for any other expression.
func detailRender(a *ast.AST) (*render, bool) {
	r := &render{}
	if !r.add(a, a.Expr()) {
		return nil, false
	}
	return r, true
}

// add appends the segments of e to r; false when e is no part of a render.
func (r *render) add(a *ast.AST, e ast.Expr) bool {
	switch e.Kind() {
	case ast.LiteralKind:
		s, ok := literal[types.String](e)
		if ok {
			r.text(string(s))
		}
		return ok
	case ast.IdentKind:
		v, ok := variableRef(a, e)
		if !ok || varKind(v) != kindString {
			return false
		}
		r.segs = append(r.segs, segment{kind: segString, v: v})
		return true
	case ast.CallKind:
	default:
		return false
	}
	call := e.AsCall()
	args := call.Args()
	id := overload(a, e)
	if id == overloads.AddString {
		return !call.IsMemberFunction() && len(args) == 2 && r.add(a, args[0]) && r.add(a, args[1])
	}
	if id == "string_format" {
		if !call.IsMemberFunction() || len(args) != 1 || args[0].Kind() != ast.ListKind ||
			len(args[0].AsList().OptionalIndices()) > 0 {
			return false
		}
		f, ok := literal[types.String](call.Target())
		return ok && r.format(a, string(f), args[0].AsList().Elements())
	}
	kind, want, ok := conversion(id)
	if !ok || call.IsMemberFunction() || len(args) != 1 {
		return false
	}
	v, ok := variableRef(a, args[0])
	if !ok || varKind(v) != want {
		return false
	}
	r.segs = append(r.segs, segment{kind: kind, v: v})
	return true
}

// conversion is the segment that string() writes by its overload, and the kind of variable that
// overload takes; ok false for any other overload.
func conversion(id string) (seg segKind, kind int, ok bool) {
	switch id {
	case overloads.StringToString:
		return segString, kindString, true
	case overloads.IntToString:
		return segInt, kindInt, true
	case overloads.DoubleToString:
		return segDouble, kindDouble, true
	case overloads.BoolToString:
		return segBool, kindBool, true
	case overloads.TimestampToString:
		return segTime, kindTime, true
	case "decimal_to_string":
		return segDecimal, kindDecimal, true
	}
	return 0, 0, false
}

// format appends the segments of f.format(args) to r, as the ext strings' format writes it
// (parseFormatStringV2); false when a clause is other than %s, %d, %f, %.Nf or %%, when an
// argument is no variable, or no variable of a type its clause takes, or when the clauses are
// not as many as the arguments.
func (r *render) format(a *ast.AST, f string, args []ast.Expr) bool {
	next := 0 // the next argument
	for f != "" {
		i := strings.IndexByte(f, '%')
		switch {
		case i < 0:
			r.text(f)
			return next == len(args)
		case i > 0:
			r.text(f[:i])
			f = f[i:]
			continue
		case strings.HasPrefix(f, "%%"):
			r.text("%")
			f = f[2:]
			continue
		}
		// A clause: %, an optional precision (a dot and digits), a verb.
		j, prec := 1, -1
		if j < len(f) && f[j] == '.' {
			k := j + 1
			for k < len(f) && f[k] >= '0' && f[k] <= '9' {
				k++
			}
			p, err := strconv.Atoi(f[j+1 : k])
			if err != nil || p > maxFormatPrecision {
				return false
			}
			j, prec = k, p
		}
		if j >= len(f) || next >= len(args) {
			return false
		}
		v, ok := variableRef(a, args[next])
		if !ok {
			return false
		}
		seg, ok := clause(f[j], prec, v)
		if !ok {
			return false
		}
		r.segs = append(r.segs, seg)
		next++
		f = f[j+1:]
	}
	return next == len(args)
}

// clause is the segment of a format clause of verb, with precision prec (-1 when it has none),
// of variable v; ok false unless the verb is s, d or f, the precision only f's, and the verb
// takes the variable's type.
func clause(verb byte, prec, v int) (segment, bool) {
	kind := varKind(v)
	seg := segment{v: v}
	switch {
	case verb == 's' && prec < 0:
		switch kind {
		case kindString:
			seg.kind = segString
		case kindInt:
			seg.kind = segInt
		case kindBool:
			seg.kind = segBool
		case kindTime:
			seg.kind = segTime
		case kindDouble:
			seg.kind = segDoubleFormat
		default:
			return segment{}, false
		}
	case verb == 'd' && prec < 0:
		switch kind {
		case kindInt:
			seg.kind = segInt
		case kindDouble:
			seg.kind = segDoubleFormat
		default:
			return segment{}, false
		}
	case verb == 'f':
		seg.prec = prec
		if prec < 0 {
			seg.prec = 6 // the ext strings' default precision
		}
		switch kind {
		case kindInt:
			seg.kind = segFixedInt
		case kindDouble:
			seg.kind = segFixed
		default:
			return segment{}, false
		}
	default:
		return segment{}, false
	}
	return seg, true
}

// text appends literal text to r, to the text segment before it if there is one.
func (r *render) text(s string) {
	if n := len(r.segs); n > 0 && r.segs[n-1].kind == segText {
		r.segs[n-1].text += s
		return
	}
	r.segs = append(r.segs, segment{kind: segText, text: s})
}

// overload is the one overload the checker resolved the call e to, "" if none or several.
func overload(a *ast.AST, e ast.Expr) string {
	ref, ok := a.ReferenceMap()[e.ID()]
	if !ok || len(ref.OverloadIDs) != 1 {
		return ""
	}
	return ref.OverloadIDs[0]
}

// variableRef is the index of the variable that e is the identifier of.
func variableRef(a *ast.AST, e ast.Expr) (int, bool) {
	if e.Kind() != ast.IdentKind {
		return 0, false
	}
	ref, ok := a.ReferenceMap()[e.ID()]
	if !ok || ref.Value != nil {
		return 0, false
	}
	v := varIndex(ref.Name)
	return v, v >= 0
}

// render writes the detail for in (nil or not).
func (r *render) render(in *Input) string {
	if len(r.segs) == 1 && r.segs[0].kind == segText {
		return r.segs[0].text
	}
	var buf [256]byte
	b := buf[:0]
	for i := range r.segs {
		b = r.segs[i].append(b, in)
	}
	return string(b)
}

// append appends the segment for in to b, as CEL writes it.
func (s *segment) append(b []byte, in *Input) []byte {
	switch s.kind {
	case segText:
		return append(b, s.text...)
	case segString:
		return append(b, stringVar(in, s.v)...)
	case segInt:
		return strconv.AppendInt(b, intVar(in, s.v), 10)
	case segBool:
		return strconv.AppendBool(b, boolVar(in, s.v))
	case segDecimal:
		return appendDecimal(b, amountVar(in))
	case segTime:
		return timeVar(in, s.v).AppendFormat(b, time.RFC3339Nano)
	case segDouble:
		return strconv.AppendFloat(b, doubleVar(in, s.v), 'g', -1, 64)
	case segDoubleFormat:
		return appendFormatDouble(b, doubleVar(in, s.v), -1)
	case segFixed:
		return appendFormatDouble(b, doubleVar(in, s.v), s.prec)
	case segFixedInt:
		return strconv.AppendFloat(b, float64(intVar(in, s.v)), 'f', s.prec, 64)
	}
	return b
}

// appendFormatDouble appends f as the ext strings' format writes a double: NaN, Infinity or
// -Infinity, or in decimal with prec places (-1: as many as it takes).
func appendFormatDouble(b []byte, f float64, prec int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, 1):
		return append(b, "Infinity"...)
	case math.IsInf(f, -1):
		return append(b, "-Infinity"...)
	}
	return strconv.AppendFloat(b, f, 'f', prec, 64)
}

// appendDecimal appends d as showDecimal writes it, without allocating when d has at most 18
// digits and no positive exponent (an amount as payments give it).
func appendDecimal(b []byte, d decimal.Decimal) []byte {
	exp := d.Exponent()
	if exp > 0 || d.NumDigits() > 18 {
		return append(b, showDecimal(d)...)
	}
	c := d.CoefficientInt64()
	if exp == 0 {
		return strconv.AppendInt(b, c, 10)
	}
	if c < 0 {
		b = append(b, '-')
		c = -c
	}
	var digits [20]byte
	ds := strconv.AppendInt(digits[:0], c, 10)
	places := -int(exp)
	if len(ds) > places {
		b = append(b, ds[:len(ds)-places]...)
		b = append(b, '.')
		return append(b, ds[len(ds)-places:]...)
	}
	b = append(b, "0."...)
	for range places - len(ds) {
		b = append(b, '0')
	}
	return append(b, ds...)
}
