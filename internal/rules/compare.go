package rules

import (
	"math"

	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// constCmp is an expression that is exactly a comparison of an int, double, bool or decimal
// variable with a constant (`payment.amount > 100`, `model.score > 0.5`, `0 == card.count_1h`),
// which Eval answers without CEL, as CEL would. It is written with the variable on the left
// (`0 == card.count_1h` is `card.count_1h == 0`): CEL's comparisons of these types are
// antisymmetric, and their equality symmetric. The zero constCmp (opNone) is any other expression.
type constCmp struct {
	op   cmpOp
	v    int // the variable's index (varIndex)
	kind int // the variable's kind (varKind)
	// The constant: i for an int (and for a bool: 1 for true), f for a double, dec for the
	// decimal (a types.Int or a *decimalVal).
	i   int64
	f   float64
	dec ref.Val
}

// cmpOp is a comparison operator.
type cmpOp uint8

const (
	opNone cmpOp = iota
	opLess
	opLessEquals
	opGreater
	opGreaterEquals
	opEquals
	opNotEquals
)

func toCmpOp(fn string) cmpOp {
	switch fn {
	case operators.Less:
		return opLess
	case operators.LessEquals:
		return opLessEquals
	case operators.Greater:
		return opGreater
	case operators.GreaterEquals:
		return opGreaterEquals
	case operators.Equals:
		return opEquals
	case operators.NotEquals:
		return opNotEquals
	}
	return opNone
}

// constComparison says what the checked a, as it is evaluated (after decimalOperands), is when
// it is exactly a comparison of a variable with a constant: a call of a comparison operator on
// the identifier of an int, double or bool variable and a literal of its type, or on that of
// the decimal and an int literal or decimal("...") of a string literal (which decimalOperands
// makes of a double literal). An int compared with a double is left to CEL (the checker refuses
// it today: the environment has no cross-type numeric comparisons).
func constComparison(a *ast.AST) (constCmp, bool) {
	e := a.Expr()
	if e.Kind() != ast.CallKind {
		return constCmp{}, false
	}
	call := e.AsCall()
	fn := call.FunctionName()
	if call.IsMemberFunction() || len(call.Args()) != 2 {
		return constCmp{}, false
	}
	x, c := call.Args()[0], call.Args()[1]
	if x.Kind() != ast.IdentKind {
		x, c = c, x
		fn, _ = mirror(fn)
	}
	op := toCmpOp(fn)
	if op == opNone || x.Kind() != ast.IdentKind {
		return constCmp{}, false
	}
	r, ok := a.ReferenceMap()[x.ID()]
	if !ok || r.Value != nil {
		return constCmp{}, false
	}
	v := varIndex(r.Name)
	if v < 0 {
		return constCmp{}, false
	}
	cc := constCmp{op: op, v: v, kind: varKind(v)}
	ok = false
	switch cc.kind {
	case kindInt:
		var l types.Int
		l, ok = literal[types.Int](c)
		cc.i = int64(l)
	case kindDouble:
		var l types.Double
		l, ok = literal[types.Double](c)
		cc.f = float64(l)
	case kindBool:
		var l types.Bool
		l, ok = literal[types.Bool](c)
		if l {
			cc.i = 1
		}
	case kindDecimal:
		cc.dec, ok = decimalConst(c)
	}
	if !ok {
		return constCmp{}, false
	}
	return cc, true
}

// literal is the value of e when e is a literal of type T.
func literal[T ref.Val](e ast.Expr) (T, bool) {
	if e.Kind() != ast.LiteralKind {
		var zero T
		return zero, false
	}
	l, ok := e.AsLiteral().(T)
	return l, ok
}

// decimalConst is the value of e when e is an int literal, or decimal("...") of a string
// literal that is a decimal, as the evaluation has it (foldDecimals).
func decimalConst(e ast.Expr) (ref.Val, bool) {
	if l, ok := literal[types.Int](e); ok {
		return l, true
	}
	if e.Kind() != ast.CallKind {
		return nil, false
	}
	call := e.AsCall()
	if call.FunctionName() != "decimal" || call.IsMemberFunction() || len(call.Args()) != 1 {
		return nil, false
	}
	s, ok := literal[types.String](call.Args()[0])
	if !ok {
		return nil, false
	}
	d, ok := parseDecimal(s).(*decimalVal)
	return d, ok
}

// eval is the comparison on in (nil or not), as CEL evaluates it on the activation's values.
func (c *constCmp) eval(in *Input) bool {
	switch c.kind {
	case kindInt:
		return c.holds(cmpInt(intVar(in, c.v), c.i))
	case kindDouble:
		return c.holds(compareDouble(doubleVar(in, c.v), c.f))
	case kindBool:
		x := int64(0)
		if boolVar(in, c.v) {
			x = 1
		}
		return c.holds(cmpInt(x, c.i)) // false < true
	case kindDecimal:
		var x decimalVal
		x.set(amountVar(in))
		r, _ := x.cmp(c.dec) // ok: dec is an int or a decimal
		return c.holds(r)
	}
	return false
}

// unordered is the result of a comparison with NaN: every comparison is false, but !=.
const unordered = 2

// holds says whether the operator holds for r, the comparison of the variable with the constant:
// -1, 0, +1, or unordered.
func (c *constCmp) holds(r int) bool {
	if r == unordered {
		return c.op == opNotEquals
	}
	switch c.op {
	case opLess:
		return r < 0
	case opLessEquals:
		return r <= 0
	case opGreater:
		return r > 0
	case opGreaterEquals:
		return r >= 0
	case opEquals:
		return r == 0
	case opNotEquals:
		return r != 0
	}
	return false
}

// compareDouble compares two doubles as CEL does (cel-go's compareDouble, Go's < and >),
// unordered when one is NaN: CEL's <, <=, > and >= are false on NaN, == false and != true.
func compareDouble(a, b float64) int {
	switch {
	case math.IsNaN(a) || math.IsNaN(b):
		return unordered
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
