package rules

import (
	"fmt"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/env"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"
	"github.com/shopspring/decimal"
)

// The variables' namespaces: every variable is <namespace>.<field>.
const (
	nsPayment = "payment"
	nsCard    = "card"
	nsModel   = "model"
	nsLists   = "lists"
)

// variable is a variable the rules may read.
type variable struct {
	name string
	typ  *types.Type
}

// listType is the type of lists.<name> for the checker: `value in lists.name` is the map's `in`.
var listType = types.NewMapType(types.StringType, types.BoolType)

// fieldVariables are the variables of payment, card and model; activation.ResolveName resolves
// each of them (a test holds the two to each other).
func fieldVariables() []variable {
	return []variable{
		{"payment.id", types.StringType},
		{"payment.card_id", types.StringType},
		{"payment.bin", types.StringType},
		{"payment.amount", decimalType},
		{"payment.currency", types.StringType},
		{"payment.country", types.StringType},
		{"payment.merchant_id", types.StringType},
		{"payment.merchant_category", types.StringType},
		{"payment.channel", types.StringType},
		{"payment.device_id", types.StringType},
		{"payment.ip", types.StringType},
		{"payment.timestamp", types.TimestampType},

		{"card.known", types.BoolType},
		{"card.window_count", types.IntType},
		{"card.window_start", types.TimestampType},
		{"card.count_1h", types.IntType},
		{"card.count_24h", types.IntType},
		{"card.count_7d", types.IntType},
		{"card.count_30d", types.IntType},
		{"card.sum_1h", types.DoubleType},
		{"card.sum_24h", types.DoubleType},
		{"card.sum_7d", types.DoubleType},
		{"card.sum_30d", types.DoubleType},
		{"card.new_country", types.BoolType},
		{"card.new_merchant", types.BoolType},
		{"card.new_device", types.BoolType},
		{"card.seconds_since_previous", types.IntType},

		{"model.score", types.DoubleType},
		{"model.scored", types.BoolType},
		{"model.version", types.StringType},
	}
}

// maxCost bounds an expression's estimated cost (in CEL's cost units, about one per operation and
// per character a string function reads). The default rules cost under 10; a rule that scans every
// payment field with a regular expression a few times stays well under it.
const maxCost = 100_000

// maxStringSize bounds the strings of the payment for the cost estimate: the payment contract
// keeps optional fields to 256 characters (payment ids to 128).
const maxStringSize = 256

// maxNumberString bounds the length of a number, a timestamp or a duration written as a string
// (an amount has at most 40 characters).
const maxNumberString = 64

// mirror is the comparison operator that gives a op b as b mirror(op) a; ok false when op is
// not a comparison.
func mirror(op string) (string, bool) {
	switch op {
	case operators.Less:
		return operators.Greater, true
	case operators.LessEquals:
		return operators.GreaterEquals, true
	case operators.Greater:
		return operators.Less, true
	case operators.GreaterEquals:
		return operators.LessEquals, true
	case operators.Equals, operators.NotEquals:
		return op, true
	}
	return "", false
}

// newEnv is the CEL environment of a rules file declaring lists.
func newEnv(lists []ListSpec) (*cel.Env, error) {
	opts := []cel.EnvOption{
		// The standard library, but for == and !=, declared again below so that a decimal compares
		// with an int or a double (the standard ones take two values of one type).
		cel.StdLib(cel.StdLibSubset(env.NewLibrarySubset().AddExcludedFunctions(
			&env.Function{Name: operators.Equals}, &env.Function{Name: operators.NotEquals}))),
		ext.Strings(ext.StringsValidateFormatCalls(true)),
		ext.Math(),
		cel.DefaultUTCTimeZone(true),
		// Keeps the macros' calls in the parsed expression, so that it can be written back
		// (the version hashes expressions as written back, whatever their layout).
		cel.EnableMacroCallTracking(),
	}
	for _, v := range fieldVariables() {
		opts = append(opts, cel.Variable(v.name, v.typ))
	}
	for _, l := range lists {
		opts = append(opts, cel.Variable(nsLists+"."+l.Name, listType))
	}
	opts = append(opts, decimalFunctions()...)
	return cel.NewCustomEnv(opts...)
}

// decimalFunctions declares the decimal type's functions: decimal("12.34"), string(decimal),
// double(decimal), and the comparisons of a decimal with an int, a double or a decimal.
func decimalFunctions() []cel.EnvOption {
	dec, i, d := decimalType, types.IntType, types.DoubleType
	opts := []cel.EnvOption{
		cel.Function("decimal", cel.Overload("string_to_decimal",
			[]*types.Type{types.StringType}, dec, cel.UnaryBinding(parseDecimal))),
		cel.Function(overloads.TypeConvertString, cel.Overload("decimal_to_string",
			[]*types.Type{dec}, types.StringType, cel.UnaryBinding(decimalToString))),
		cel.Function(overloads.TypeConvertDouble, cel.Overload("decimal_to_double",
			[]*types.Type{dec}, types.DoubleType, cel.UnaryBinding(decimalToDouble))),
	}
	// <, <=, > and >= are the standard ones (they call Compare on the left operand, which the
	// compile step makes the decimal): these declarations only let the checker accept them.
	pairs := [][2]*types.Type{{dec, i}, {i, dec}, {dec, d}, {d, dec}, {dec, dec}}
	for _, op := range []string{operators.Less, operators.LessEquals, operators.Greater, operators.GreaterEquals} {
		var fo []cel.FunctionOpt
		for _, p := range pairs {
			fo = append(fo, cel.Overload(overloadID(op, p), p[:], types.BoolType))
		}
		opts = append(opts, cel.Function(op, fo...))
	}
	// == and != for every type the standard library's (A, A) overload covers here, and the
	// decimal's. The interpreter evaluates them with the left operand's Equal whatever the
	// declarations, so these only type-check.
	a, k, v := types.NewTypeParamType("A"), types.NewTypeParamType("K"), types.NewTypeParamType("V")
	same := []*types.Type{types.BoolType, types.IntType, types.UintType, types.DoubleType,
		types.StringType, types.BytesType, types.NullType, types.TimestampType, types.DurationType,
		types.NewListType(a), types.NewMapType(k, v), types.NewTypeTypeWithParam(a)}
	for _, op := range []string{operators.Equals, operators.NotEquals} {
		var fo []cel.FunctionOpt
		for _, t := range same {
			fo = append(fo, cel.Overload(overloadID(op, [2]*types.Type{t, t}), []*types.Type{t, t}, types.BoolType))
		}
		for _, p := range pairs {
			fo = append(fo, cel.Overload(overloadID(op, p), p[:], types.BoolType))
		}
		opts = append(opts, cel.Function(op, fo...))
	}
	return opts
}

// overloadID names the overload of op on the pair p: less_decimal_int.
func overloadID(op string, p [2]*types.Type) string {
	name := strings.Trim(strings.NewReplacer("<=", "less_equals", ">=", "greater_equals", "<", "less",
		">", "greater", "==", "equals", "!=", "not_equals").Replace(op), "_")
	clean := func(t *types.Type) string {
		return strings.NewReplacer("(", "_", ")", "", ",", "", " ", "").Replace(t.String())
	}
	return name + "_" + clean(p[0]) + "_" + clean(p[1]) + "_rules"
}

// isDecimal says whether t is the decimal type.
func isDecimal(t *types.Type) bool {
	return t != nil && t.Kind() == types.OpaqueKind && t.TypeName() == decimalType.TypeName()
}

// decimalOperands rewrites the comparisons of a decimal so that the decimal is the left
// operand, where the standard operators look for the comparison (100 < payment.amount becomes
// payment.amount > 100), and so that a double literal compared with a decimal is the decimal it
// is written as (payment.amount >= 99.99 compares with decimal("99.99"), made once).
type decimalOperands struct{}

// needed says whether the checked a has a comparison that decimalOperands rewrites.
func (decimalOperands) needed(a *ast.AST) bool {
	found := false
	walk(a.Expr(), func(e ast.Expr) {
		if l, r, ok := comparison(a, e); ok && (isDecimal(r) || (isDecimal(l) && isDoubleLiteral(e.AsCall().Args()[1]))) {
			found = true
		}
	})
	return found
}

// comparison returns the operand types of e when e is a comparison with a decimal operand.
func comparison(a *ast.AST, e ast.Expr) (l, r *types.Type, ok bool) {
	if e.Kind() != ast.CallKind {
		return nil, nil, false
	}
	call := e.AsCall()
	if _, cmp := mirror(call.FunctionName()); !cmp || len(call.Args()) != 2 {
		return nil, nil, false
	}
	l, r = a.GetType(call.Args()[0].ID()), a.GetType(call.Args()[1].ID())
	return l, r, isDecimal(l) || isDecimal(r)
}

func isDoubleLiteral(e ast.Expr) bool {
	if e.Kind() != ast.LiteralKind {
		return false
	}
	_, ok := e.AsLiteral().(types.Double)
	return ok
}

// Optimize implements cel.ASTOptimizer.
func (decimalOperands) Optimize(ctx *cel.OptimizerContext, a *ast.AST) *ast.AST {
	var calls []ast.Expr
	walk(a.Expr(), func(e ast.Expr) {
		if _, _, ok := comparison(a, e); ok {
			calls = append(calls, e)
		}
	})
	for _, e := range calls {
		call := e.AsCall()
		fn, l, r := call.FunctionName(), call.Args()[0], call.Args()[1]
		if !isDecimal(a.GetType(l.ID())) {
			fn, _ = mirror(fn)
			l, r = r, l
		}
		if isDoubleLiteral(r) {
			f := float64(r.AsLiteral().(types.Double))
			r = ctx.NewCall("decimal", ctx.NewLiteral(types.String(decimal.NewFromFloat(f).String())))
		}
		ctx.UpdateExpr(e, ctx.NewCall(fn, l, r))
	}
	return a
}

// foldDecimals makes decimal("12.34") of a constant string a constant, parsed once.
func foldDecimals(i interpreter.InterpretableV2) (interpreter.InterpretableV2, error) {
	call, ok := i.(interpreter.InterpretableCall)
	if !ok || call.Function() != "decimal" || len(call.Args()) != 1 {
		return i, nil
	}
	arg, ok := call.Args()[0].(interpreter.InterpretableConst)
	if !ok {
		return i, nil
	}
	v := parseDecimal(arg.Value())
	if types.IsError(v) {
		return nil, fmt.Errorf("%v", v)
	}
	return interpreter.NewConstValue(i.ID(), v), nil
}

// walk calls f on e and every expression under it.
func walk(e ast.Expr, f func(ast.Expr)) {
	if e == nil {
		return
	}
	f(e)
	children(e, func(c ast.Expr) { walk(c, f) })
}

// children calls f on each expression directly under e.
func children(e ast.Expr, f func(ast.Expr)) {
	switch e.Kind() {
	case ast.CallKind:
		c := e.AsCall()
		if c.IsMemberFunction() {
			f(c.Target())
		}
		for _, a := range c.Args() {
			f(a)
		}
	case ast.SelectKind:
		f(e.AsSelect().Operand())
	case ast.ListKind:
		for _, x := range e.AsList().Elements() {
			f(x)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			f(en.AsMapEntry().Key())
			f(en.AsMapEntry().Value())
		}
	case ast.StructKind:
		for _, en := range e.AsStruct().Fields() {
			f(en.AsStructField().Value())
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		for _, x := range []ast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()} {
			f(x)
		}
	}
}

// names lists the fields of namespace ns, sorted.
func names(ns string, lists []ListSpec) []string {
	var out []string
	if ns == nsLists {
		for _, l := range lists {
			out = append(out, l.Name)
		}
	} else {
		for _, v := range fieldVariables() {
			if rest, ok := strings.CutPrefix(v.name, ns+"."); ok {
				out = append(out, rest)
			}
		}
	}
	slices.Sort(out)
	return out
}
