package rules

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"gopkg.in/yaml.v3"
)

// compiler compiles the expressions of one file.
type compiler struct {
	env   *cel.Env
	lists []ListSpec
	known map[string]bool // every variable's name
	opt   *cel.StaticOptimizer
	errs  *Errors
}

// compiled is an expression ready to evaluate.
type compiled struct {
	prg       cel.Program
	canonical string   // the expression as parsed, written back: its layout does not count
	member    member   // what the expression is when it is a list membership test
	cmp       constCmp // what the expression is when it is a comparison with a constant
	render    *render  // how the detail is written when it is a concatenation of variables
}

// member is an expression that is exactly `<string variable> in lists.<name>`, which Eval
// answers without CEL. The zero member (list "") is any other expression.
type member struct {
	list string // the list's name
	v    int    // the variable's index, of a string variable (varIndex)
}

// membership says what the checked a is when it is exactly a list membership test: a call of
// the in operator on the identifier of a string variable and the identifier of a list.
func membership(a *ast.AST) (member, bool) {
	e := a.Expr()
	if e.Kind() != ast.CallKind {
		return member{}, false
	}
	call := e.AsCall()
	if call.FunctionName() != operators.In || call.IsMemberFunction() || len(call.Args()) != 2 {
		return member{}, false
	}
	x, l := call.Args()[0], call.Args()[1]
	if x.Kind() != ast.IdentKind || l.Kind() != ast.IdentKind {
		return member{}, false
	}
	ref, ok := a.ReferenceMap()[x.ID()]
	if !ok || ref.Value != nil || !a.GetType(x.ID()).IsExactType(types.StringType) {
		return member{}, false
	}
	v := varIndex(ref.Name)
	if v < 0 {
		return member{}, false
	}
	name, ok := listRef(a, l)
	if !ok {
		return member{}, false
	}
	return member{list: strings.TrimPrefix(name, nsLists+"."), v: v}, true
}

func newCompiler(lists []ListSpec, errs *Errors) (*compiler, error) {
	env, err := newEnv(lists)
	if err != nil {
		return nil, err
	}
	opt, err := cel.NewStaticOptimizer(decimalOperands{})
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, v := range fieldVariables() {
		known[v.name] = true
	}
	for _, l := range lists {
		known[nsLists+"."+l.Name] = true
	}
	return &compiler{env: env, lists: lists, known: known, opt: opt, errs: errs}, nil
}

// issue is a problem at an expression of a CEL AST.
type issue struct {
	id   int64
	msg  string
	back int // columns from the expression's position back to where the problem starts
}

// compile compiles the expression in n (the value of field of the rule labelled label), which
// must be of type want. It reports every problem it finds and returns ok false if there is one.
func (c *compiler) compile(label, field string, n *yaml.Node, want *types.Type) (compiled, bool) {
	report := func(loc common.Location, msg string) {
		line := exprLine(n, 1)
		if loc != nil && loc.Line() > 0 {
			line = exprLine(n, loc.Line())
		}
		where := field
		if loc != nil && loc.Column() >= 0 && loc.Line() > 0 {
			where = fmt.Sprintf("%s (column %d)", field, loc.Column()+1)
			if n.Style == yaml.LiteralStyle && strings.Contains(n.Value, "\n") {
				where = fmt.Sprintf("%s (line %d, column %d)", field, loc.Line(), loc.Column()+1)
			}
		}
		c.errs.add(label, line, "%s: %s", where, msg)
	}
	reportIssues := func(a *ast.AST, is []issue) {
		for _, i := range is {
			loc := a.SourceInfo().GetStartLocation(i.id)
			if i.back > 0 && loc.Column() >= i.back {
				loc = common.NewLocation(loc.Line(), loc.Column()-i.back)
			}
			report(loc, i.msg)
		}
	}

	parsed, iss := c.env.Parse(n.Value)
	if iss.Err() != nil {
		for _, e := range iss.Errors() {
			report(e.Location, "syntax error: "+strings.TrimPrefix(e.Message, "Syntax error: "))
		}
		return compiled{}, false
	}
	canonical, err := cel.AstToString(parsed)
	if err != nil {
		report(nil, err.Error())
		return compiled{}, false
	}
	names := c.checkNames(parsed.NativeRep())
	reportIssues(parsed.NativeRep(), names)
	checked, iss := c.env.Check(parsed)
	if iss.Err() != nil {
		for _, e := range iss.Errors() {
			msg := e.Message
			if strings.HasPrefix(msg, "undeclared reference") {
				if len(names) > 0 {
					continue // said better above
				}
				msg += "; the variables are payment.*, card.*, model.* and lists.*"
			}
			report(e.Location, msg)
		}
		return compiled{}, false
	}
	if len(names) > 0 {
		return compiled{}, false
	}
	if got := checked.OutputType(); !got.IsExactType(want) {
		c.errs.add(label, exprLine(n, 1), "%s is %s, want %s", field, got, want)
		return compiled{}, false
	}
	if is := checkListUse(checked.NativeRep()); len(is) > 0 {
		reportIssues(checked.NativeRep(), is)
		return compiled{}, false
	}
	if m, ok := membership(checked.NativeRep()); ok {
		// Eval answers it without CEL: no program, no cost to estimate.
		return compiled{canonical: canonical, member: m}, true
	}
	if (decimalOperands{}).needed(checked.NativeRep()) {
		checked, iss = c.opt.Optimize(c.env, checked)
		if iss.Err() != nil {
			report(nil, iss.Err().Error())
			return compiled{}, false
		}
	}
	est, err := c.env.EstimateCost(checked, estimator{})
	if err != nil {
		report(nil, "cost: "+err.Error())
		return compiled{}, false
	}
	if est.Max > maxCost {
		report(nil, fmt.Sprintf("too costly: its estimated cost is up to %d, the limit is %d", est.Max, maxCost))
		return compiled{}, false
	}
	prg, err := c.env.Program(checked, cel.EvalOptions(cel.OptOptimize), cel.CustomDecoratorV2(foldDecimals))
	if err != nil {
		report(nil, err.Error())
		return compiled{}, false
	}
	if cc, ok := constComparison(checked.NativeRep()); ok {
		// Eval answers it without CEL. It is found on the expression as it is evaluated, once
		// decimalOperands has rewritten it and the program could be made of it.
		return compiled{canonical: canonical, cmp: cc}, true
	}
	if r, ok := detailRender(checked.NativeRep()); ok {
		// Eval writes it without CEL; found, as a comparison is, on the expression as evaluated.
		return compiled{canonical: canonical, render: r}, true
	}
	return compiled{prg: prg, canonical: canonical}, true
}

// checkNames finds the references to payment, card, model and lists that are not variables, in
// the parsed a, and says what there is instead.
func (c *compiler) checkNames(a *ast.AST) []issue {
	var out []issue
	var visit func(e ast.Expr, bound map[string]bool)
	visit = func(e ast.Expr, bound map[string]bool) {
		if e == nil {
			return
		}
		switch e.Kind() {
		case ast.IdentKind:
			if ns := e.AsIdent(); isNamespace(ns) && !bound[ns] {
				out = append(out, issue{id: e.ID(), msg: fmt.Sprintf("%s is not a value; %s", ns, c.fieldsOf(ns))})
			}
			return
		case ast.SelectKind:
			sel := e.AsSelect()
			op := sel.Operand()
			if op.Kind() == ast.IdentKind && isNamespace(op.AsIdent()) && !bound[op.AsIdent()] {
				ns, name := op.AsIdent(), op.AsIdent()+"."+sel.FieldName()
				switch {
				case sel.IsTestOnly():
					out = append(out, issue{id: op.ID(), msg: fmt.Sprintf("has(%s): the variables are always there", name)})
				case c.known[name]:
				case ns == nsLists:
					out = append(out, issue{id: op.ID(), msg: fmt.Sprintf("unknown list %s; %s", sel.FieldName(), c.fieldsOf(ns))})
				default:
					out = append(out, issue{id: op.ID(), msg: fmt.Sprintf("unknown field %s; %s", name, c.fieldsOf(ns))})
				}
				return
			}
			visit(op, bound)
			return
		case ast.ComprehensionKind:
			comp := e.AsComprehension()
			visit(comp.IterRange(), bound)
			visit(comp.AccuInit(), bound)
			inner := maps.Clone(bound)
			if inner == nil {
				inner = map[string]bool{}
			}
			inner[comp.IterVar()], inner[comp.AccuVar()] = true, true
			if comp.HasIterVar2() {
				inner[comp.IterVar2()] = true
			}
			visit(comp.LoopCondition(), inner)
			visit(comp.LoopStep(), inner)
			visit(comp.Result(), inner)
			return
		}
		children(e, func(c ast.Expr) { visit(c, bound) })
	}
	visit(a.Expr(), nil)
	return out
}

func isNamespace(name string) bool {
	switch name {
	case nsPayment, nsCard, nsModel, nsLists:
		return true
	}
	return false
}

// fieldsOf says what ns has.
func (c *compiler) fieldsOf(ns string) string {
	fields := names(ns, c.lists)
	if ns == nsLists {
		if len(fields) == 0 {
			return "the file declares no lists (lists: at its top)"
		}
		return "declared lists: " + strings.Join(fields, ", ")
	}
	return ns + " has: " + strings.Join(fields, ", ")
}

// checkListUse finds the lists used otherwise than as `value in lists.name` in the checked a:
// a list's items are in Redis, to be asked about one value at a time.
func checkListUse(a *ast.AST) []issue {
	var out []issue
	var visit func(e ast.Expr)
	visit = func(e ast.Expr) {
		if e == nil {
			return
		}
		if name, ok := listRef(a, e); ok {
			// The position of lists.name is that of its dot.
			out = append(out, issue{id: e.ID(), msg: fmt.Sprintf("%s can only be tested with in, as in `payment.card_id in %s`", name, name), back: len(nsLists)})
			return
		}
		if e.Kind() == ast.CallKind {
			if call := e.AsCall(); call.FunctionName() == operators.In && len(call.Args()) == 2 {
				visit(call.Args()[0])
				if _, ok := listRef(a, call.Args()[1]); !ok {
					visit(call.Args()[1])
				}
				return
			}
		}
		children(e, visit)
	}
	visit(a.Expr())
	return out
}

// listRef says whether e is a reference to a list variable, and which.
func listRef(a *ast.AST, e ast.Expr) (string, bool) {
	if ref, ok := a.ReferenceMap()[e.ID()]; ok && strings.HasPrefix(ref.Name, nsLists+".") {
		return ref.Name, true
	}
	if e.Kind() == ast.IdentKind && strings.HasPrefix(e.AsIdent(), nsLists+".") {
		return e.AsIdent(), true
	}
	return "", false
}

// estimator sizes the variables for the cost estimate: a payment's strings are bounded.
type estimator struct{}

// EstimateSize implements cost.Estimator.
func (estimator) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if p := n.Path(); len(p) > 0 && n.Type() != nil && n.Type().Kind() == types.StringKind &&
		slices.ContainsFunc([]string{nsPayment, nsModel}, func(ns string) bool { return strings.HasPrefix(p[0], ns+".") }) {
		return &cost.SizeEstimate{Min: 0, Max: maxStringSize}
	}
	return nil
}

// EstimateCallCost implements cost.Estimator: the conversions of numbers, bools, timestamps and
// durations to strings give short strings.
func (estimator) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	switch overloadID {
	case "decimal_to_string", overloads.BoolToString, overloads.IntToString, overloads.UintToString,
		overloads.DoubleToString, overloads.TimestampToString, overloads.DurationToString:
		return &cost.CallEstimate{
			CostEstimate: cost.FixedCostEstimate(1),
			ResultSize:   &cost.SizeEstimate{Min: 0, Max: maxNumberString},
		}
	}
	return nil
}
