// Package rules compiles and evaluates the rules file (configs/rules.yaml): rules written in CEL
// over a payment, its card's state, the model's score and named lists. It computes which rules
// match a payment; what a match means (flag, review, allow) is decided by the pipeline's policy.
//
// A file compiles into a Set once: every expression is parsed, type-checked, bounded in cost and
// planned, and every problem of the file is reported at once, by rule and line. Evaluating a Set
// reads only the variables its rules use, with no map built per payment; a rule that is only a
// list membership test (`payment.card_id in lists.blocked_cards`) or a comparison of a variable
// with a constant (`payment.amount > 100`, `model.score > 0.5`) is answered without CEL, as CEL
// would answer it, and a detail that only puts variables into text (`"amount " +
// string(payment.amount)`, `"score %.3f".format([model.score])`) is written without CEL, as CEL
// would write it.
package rules

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"os"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"

	"github.com/paysentry/fraud-detector/internal/lists"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/window"
)

// Actions of a rule: what the policy does when it matches.
const (
	ActionFlag   = "flag"
	ActionReview = "review"
	ActionAllow  = "allow"
)

// Modes of a rule: an active rule's matches are acted on; a shadow rule's are only reported.
const (
	ModeActive = "active"
	ModeShadow = "shadow"
)

// Rule is one rule of a file.
type Rule struct {
	ID          string // [a-z][a-z0-9_]{0,63}, unique in the file
	Description string // required
	Expression  string // CEL, of type bool
	// Detail is an optional CEL expression of type string: the reason's detail when the rule
	// matches; without one the detail is the Description.
	Detail string
	Action string // flag, review or allow
	Reason string // the reason code, [a-z][a-z0-9_]{0,63}; the ID unless the file says
	Mode   string // active or shadow
	Line   int    // line of the rule in its file (1-based)
}

// ListSpec declares a list the rules may use: lists.<name>. It is the lists' store's Spec: the
// rules file declares the lists that the store keeps.
type ListSpec = lists.Spec

// Lists says whether a list holds a value. The lists' store provides an immutable snapshot that
// implements it.
type Lists interface {
	Contains(list, value string) bool
}

// Input is what the rules see of one payment.
type Input struct {
	Payment *payment.Payment
	// State is the card's state: nil, or with Late or Ahead set, when there is none.
	State *window.Result
	Score float64 // the model's fraud probability
	// Scored is false when the model did not score this payment (none configured, it failed, or
	// there was no card state).
	Scored       bool
	ModelVersion string
	Lists        Lists // nil: every list is empty
}

// Hit is a rule that matched a payment.
type Hit struct {
	Rule   *Rule // the Set's rule: read it, never change it
	Detail string
}

// EvalError is a rule whose evaluation failed at run time for one payment: it did not match, or
// it matched and its detail failed (the Hit then has the Description for detail).
type EvalError struct {
	Rule *Rule
	Err  error
}

func (e EvalError) Error() string { return "rule " + e.Rule.ID + ": " + e.Err.Error() }

func (e EvalError) Unwrap() error { return e.Err }

// Set is a compiled rules file: immutable, safe for concurrent use.
type Set struct {
	version string
	rules   []Rule
	lists   []ListSpec
	// By rule: the expression's program; or, for an expression that is a list membership test
	// (`payment.card_id in lists.blocked_cards`) or a comparison of a variable with a constant
	// (`payment.amount > 100`), a nil program and the test, which Eval makes itself: one
	// Contains call, or one comparison of Go values, at a fraction of the cost of a CEL
	// evaluation.
	exprs   []cel.Program
	members []member   // the zero member for an expression that is no membership test
	cmps    []constCmp // the zero constCmp for an expression that is no comparison
	// By rule: the detail's program, nil for a rule without a detail; or, for a detail that is
	// a concatenation of literals, variables, their string() and their format (`"amount " +
	// string(payment.amount)`), a nil program and how to write it, which Eval does itself.
	details []cel.Program
	renders []*render // nil for a detail that is no concatenation of variables
	acts    sync.Pool // of *activation
}

// Load reads and compiles the rules file at path.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	return Compile(path, b)
}

// Compile compiles a rules file; name is the file's name in messages. The error lists every
// problem of the file: it is an *Errors, unless the CEL environment itself could not be made.
func Compile(name string, data []byte) (*Set, error) {
	errs := &Errors{File: name}
	f := parseFile(data, errs)
	c, err := newCompiler(f.lists, errs)
	if err != nil {
		return nil, fmt.Errorf("rules %s: %w", name, err)
	}
	s := &Set{lists: f.lists}
	h := sha256.New()
	field := func(s string) {
		h.Write(binary.AppendUvarint(nil, uint64(len(s))))
		h.Write([]byte(s))
	}
	for _, l := range f.lists {
		field("list")
		field(l.Name)
		field(l.Kind)
	}
	for i := range f.rules {
		r := &f.rules[i]
		var expr, detail compiled
		okExpr, okDetail := r.expr != nil, true
		if okExpr {
			expr, okExpr = c.compile(r.label, "expression", r.expr, types.BoolType)
		}
		if r.detail != nil {
			detail, okDetail = c.compile(r.label, "detail", r.detail, types.StringType)
		}
		if !r.ok || !okExpr || !okDetail {
			continue
		}
		s.rules = append(s.rules, r.Rule)
		s.exprs = append(s.exprs, expr.prg)
		s.members = append(s.members, expr.member)
		s.cmps = append(s.cmps, expr.cmp)
		s.details = append(s.details, detail.prg)
		s.renders = append(s.renders, detail.render)
		field("rule")
		for _, v := range []string{r.ID, r.Description, expr.canonical, detail.canonical, r.Action, r.Reason, r.Mode} {
			field(v)
		}
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	s.version = "rules-" + hex.EncodeToString(h.Sum(nil)[:6])
	specs := s.lists
	s.acts.New = func() any { return newActivation(specs) }
	return s, nil
}

// Version names the rule set: a hash of, in the file's order, each list's name and kind and each
// rule's id, description (the default detail), expression and detail as parsed (written back, so
// that their layout does not count), action, reason and mode (the defaults filled in). Comments,
// layout and the lists' descriptions do not change it. Its form is rules-<12 hex digits>.
func (s *Set) Version() string { return s.version }

// Rules returns a copy of the rules, in the file's order.
func (s *Set) Rules() []Rule { return append([]Rule(nil), s.rules...) }

// Lists returns a copy of the lists the file declares, in its order.
func (s *Set) Lists() []ListSpec { return append([]ListSpec(nil), s.lists...) }

// Eval evaluates every rule, active and shadow alike, in the file's order, on in and appends
// those that match to hits. A rule whose evaluation fails does not match and is returned in the
// errors; so is a matching rule whose detail fails (its Hit has the Description for detail).
func (s *Set) Eval(in *Input, hits []Hit) ([]Hit, []EvalError) {
	e := evaluation{set: s, in: in}
	var errs []EvalError
	for i, prg := range s.exprs {
		r := &s.rules[i]
		switch {
		case prg == nil && s.members[i].list != "":
			if !s.members[i].contains(in) {
				continue
			}
		case prg == nil:
			if !s.cmps[i].eval(in) {
				continue
			}
		default:
			out, err := e.run(prg)
			if err != nil {
				errs = append(errs, EvalError{Rule: r, Err: err})
				continue
			}
			if out != types.True {
				if out != types.False {
					errs = append(errs, EvalError{Rule: r, Err: fmt.Errorf("expression gave %v, want a bool", out)})
				}
				continue
			}
		}
		h := Hit{Rule: r, Detail: r.Description}
		if rd := s.renders[i]; rd != nil {
			h.Detail = rd.render(in)
		} else if d := s.details[i]; d != nil {
			switch out, err := e.run(d); {
			case err != nil:
				errs = append(errs, EvalError{Rule: r, Err: fmt.Errorf("detail: %w", err)})
			case out.Type() != types.StringType:
				errs = append(errs, EvalError{Rule: r, Err: fmt.Errorf("detail gave %v, want a string", out)})
			default:
				h.Detail = string(out.(types.String))
			}
		}
		hits = append(hits, h)
	}
	e.close()
	return hits, errs
}

// contains is the membership test m on in, as CEL evaluates it: the variable's value, "" when in
// has no payment, in the list; false without lists.
func (m member) contains(in *Input) bool {
	if in == nil || in.Lists == nil {
		return false
	}
	return in.Lists.Contains(m.list, stringVar(in, m.v))
}

// evaluation is what one Eval's programs read: an activation of the Input and one execution frame
// over it for all the rules, rather than one that each program would take from cel-go's pool.
// Both are taken when the first program runs: membership tests, comparisons with a constant and
// the details written without CEL need neither.
type evaluation struct {
	set   *Set
	in    *Input
	act   *activation
	frame *interpreter.ExecutionFrame
}

// run evaluates prg on the Input.
func (e *evaluation) run(prg cel.Program) (ref.Val, error) {
	if e.frame == nil {
		a := e.set.acts.Get().(*activation)
		a.reset(e.in)
		frame, err := interpreter.NewExecutionFrame(a)
		if err != nil { // for an input that is no activation: not this one
			a.reset(nil)
			e.set.acts.Put(a)
			return nil, err
		}
		e.act, e.frame = a, frame
	}
	out, _, err := prg.Eval(e.frame)
	return out, err
}

// close gives back the frame and the activation.
func (e *evaluation) close() {
	if e.frame == nil {
		return
	}
	e.frame.Close()
	e.act.reset(nil)
	e.set.acts.Put(e.act)
}
