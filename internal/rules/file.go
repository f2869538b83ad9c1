package rules

import (
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/paysentry/fraud-detector/internal/lists"
)

// namePattern is the form of rule ids, reason codes and list names.
const namePattern = `[a-z][a-z0-9_]{0,63}`

var nameRE = regexp.MustCompile(`^` + namePattern + `$`)

// yamlLineRE finds the line in yaml.v3's messages: "yaml: line 3: mapping values are not allowed".
var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// fileRule is a rule as the file gives it, with where its parts are.
type fileRule struct {
	Rule
	label  string     // how messages name it: its id, or #N
	expr   *yaml.Node // the expression's value
	detail *yaml.Node // the detail's value, nil without one
	ok     bool       // no problem found in its fields (its expressions are compiled only then)
}

// file is a rules file as written.
type file struct {
	lists []ListSpec
	rules []fileRule
}

// ruleKeys are the keys of a rule, in the order messages list them.
func ruleKeys() []string {
	return []string{"id", "description", "expression", "detail", "action", "reason", "mode"}
}

// parseFile reads data's lists and rules, adding every problem it finds to errs.
func parseFile(data []byte, errs *Errors) file {
	var f file
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := 1, err.Error()
		if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
			line, _ = strconv.Atoi(m[1])
			msg = "YAML: " + m[2]
		}
		errs.add("", line, "%s", msg)
		return f
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || isNull(doc.Content[0]) {
		errs.add("", 1, "the file is empty: want lists: and rules:")
		return f
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		errs.add("", top.Line, "the file must be a mapping with lists: and rules:")
		return f
	}
	seen := map[string]int{}
	rulesOK := true // rules: is absent, null or a sequence
	for i := 0; i+1 < len(top.Content); i += 2 {
		k, v := top.Content[i], top.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			errs.add("", k.Line, "%s: given twice (first on line %d)", k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		switch k.Value {
		case "lists":
			f.lists = parseLists(v, errs)
		case "rules":
			f.rules, rulesOK = parseRules(v, errs)
		default:
			errs.add("", k.Line, "unknown key %q: the file has lists and rules", k.Value)
		}
	}
	switch {
	case seen["lists"] == 0 && seen["rules"] == 0:
		errs.add("", top.Line, "no lists: and no rules: in the file")
	case rulesOK:
		checkActive(f.rules, max(seen["rules"], 1), errs)
	}
	return f
}

// checkActive refuses rules without an active rule (line is that of rules:): such a file would
// decide nothing, and it is more likely cut short (an editor writing in place, a bad merge) than
// meant. A rule with a problem counts as active unless it says shadow: its problem is reported.
func checkActive(rules []fileRule, line int, errs *Errors) {
	shadow := 0
	for _, r := range rules {
		if r.Mode != ModeShadow {
			return
		}
		shadow++
	}
	what := "no rule"
	switch shadow {
	case 0:
	case 1:
		what = "only a shadow rule"
	default:
		what = "only shadow rules"
	}
	errs.add("", line, "the file has no active rule (%s): it would decide nothing (a file cut short?); "+
		"a policy that flags nothing must say so with an active rule, e.g. expression: false", what)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// parseLists reads the lists: mapping.
func parseLists(n *yaml.Node, errs *Errors) []ListSpec {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		errs.add("", n.Line, "lists: must be a mapping of list names to {kind, description}")
		return nil
	}
	var out []ListSpec
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		problems := len(errs.List)
		name := k.Value
		valid := nameRE.MatchString(name)
		if !valid {
			errs.add("", k.Line, "list %q: the name must match %s", name, namePattern)
		}
		if first, dup := seen[name]; dup {
			errs.add("", k.Line, "list %s: declared twice (first on line %d)", name, first)
			continue
		}
		seen[name] = k.Line
		spec := ListSpec{Name: name}
		if v.Kind != yaml.MappingNode {
			errs.add("", v.Line, "list %s: want a mapping {kind: ..., description: ...}", name)
			if valid {
				out = append(out, spec)
			}
			continue
		}
		keys := map[string]int{}
		for j := 0; j+1 < len(v.Content); j += 2 {
			kk, vv := v.Content[j], v.Content[j+1]
			if first, dup := keys[kk.Value]; dup {
				errs.add("", kk.Line, "list %s: %s given twice (first on line %d)", name, kk.Value, first)
				continue
			}
			keys[kk.Value] = kk.Line
			s, ok := scalar(vv)
			if !ok {
				errs.add("", vv.Line, "list %s: %s must be a string", name, kk.Value)
				continue
			}
			switch kk.Value {
			case "kind":
				spec.Kind = s
				if s != "" && !slices.Contains(lists.Kinds(), s) {
					errs.add("", vv.Line, "list %s: kind %q is not one of %s", name, s, strings.Join(lists.Kinds(), ", "))
				}
			case "description":
				spec.Description = s
			default:
				errs.add("", kk.Line, "list %s: unknown key %q; a list has kind and description", name, kk.Value)
			}
		}
		if spec.Kind == "" {
			errs.add("", v.Line, "list %s: missing kind (one of %s)", name, strings.Join(lists.Kinds(), ", "))
		}
		if len(errs.List) == problems {
			// Validate is the lists' store's own check of a spec: a file accepted here must be
			// accepted there. The checks above say more, and where; this catches what they miss.
			if err := spec.Validate(); err != nil {
				errs.add("", k.Line, "%v", err)
			}
		}
		if valid {
			// A list with a problem is declared all the same, so that the rules using it are
			// checked (the problem fails the file).
			out = append(out, spec)
		}
	}
	return out
}

// scalar is n's text: ok false when n is not a scalar; "" for null.
func scalar(n *yaml.Node) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		return "", false
	}
	if n.Tag == "!!null" {
		return "", true
	}
	return n.Value, true
}

// parseRules reads the rules: sequence; ok false when it is not one (nor null).
func parseRules(n *yaml.Node, errs *Errors) (rules []fileRule, ok bool) {
	if isNull(n) {
		return nil, true
	}
	if n.Kind != yaml.SequenceNode {
		errs.add("", n.Line, "rules: must be a list of rules (- id: ...)")
		return nil, false
	}
	var out []fileRule
	ids := map[string]int{}
	for i, rn := range n.Content {
		r := parseRule(i+1, rn, errs)
		if r.ID != "" && nameRE.MatchString(r.ID) {
			if first, dup := ids[r.ID]; dup {
				errs.add(r.label, r.Line, "duplicate id %s (first on line %d)", r.ID, first)
				r.ok = false
			} else {
				ids[r.ID] = r.Line
			}
		}
		out = append(out, r)
	}
	return out, true
}

// parseRule reads the nth rule.
func parseRule(n int, rn *yaml.Node, errs *Errors) fileRule {
	r := fileRule{Rule: Rule{Line: rn.Line}, label: "#" + strconv.Itoa(n), ok: true}
	if rn.Kind != yaml.MappingNode {
		errs.add(r.label, rn.Line, "a rule must be a mapping of %s", strings.Join(ruleKeys(), ", "))
		r.ok = false
		return r
	}
	values := map[string]*yaml.Node{}
	keyLines := map[string]int{}
	fail := func(line int, format string, args ...any) {
		errs.add(r.label, line, format, args...)
		r.ok = false
	}
	// The id first, so that every message names the rule by it.
	for i := 0; i+1 < len(rn.Content); i += 2 {
		if k, v := rn.Content[i], rn.Content[i+1]; k.Value == "id" {
			if s, ok := scalar(v); ok && nameRE.MatchString(s) {
				r.label = s
			}
			break
		}
	}
	for i := 0; i+1 < len(rn.Content); i += 2 {
		k, v := rn.Content[i], rn.Content[i+1]
		if first, dup := keyLines[k.Value]; dup {
			fail(k.Line, "%s given twice (first on line %d)", k.Value, first)
			continue
		}
		keyLines[k.Value] = k.Line
		if !slices.Contains(ruleKeys(), k.Value) {
			fail(k.Line, "unknown key %q; a rule has %s", k.Value, strings.Join(ruleKeys(), ", "))
			continue
		}
		if _, ok := scalar(v); !ok {
			fail(v.Line, "%s must be a string", k.Value)
			continue
		}
		values[k.Value] = v
	}
	get := func(key string) (string, int) {
		v := values[key]
		if v == nil {
			return "", rn.Line
		}
		s, _ := scalar(v)
		return s, v.Line
	}
	var line int
	r.ID, line = get("id")
	switch {
	case r.ID == "":
		fail(rn.Line, "missing id")
	case !nameRE.MatchString(r.ID):
		fail(line, "id %q must match %s", r.ID, namePattern)
	}
	if r.Description, _ = get("description"); strings.TrimSpace(r.Description) == "" {
		fail(rn.Line, "missing description")
	}
	if r.Expression, _ = get("expression"); strings.TrimSpace(r.Expression) == "" {
		fail(rn.Line, "missing expression")
	} else {
		r.expr = values["expression"]
	}
	if r.Detail, _ = get("detail"); strings.TrimSpace(r.Detail) == "" {
		r.Detail = ""
	} else {
		r.detail = values["detail"]
	}
	r.Action, line = get("action")
	switch r.Action {
	case ActionFlag, ActionReview, ActionAllow:
	case "":
		fail(rn.Line, "missing action (flag, review or allow)")
	default:
		fail(line, "action %q is not flag, review or allow", r.Action)
	}
	r.Reason, line = get("reason")
	switch {
	case r.Reason == "":
		r.Reason = r.ID
	case !nameRE.MatchString(r.Reason):
		fail(line, "reason %q must match %s", r.Reason, namePattern)
	}
	r.Mode, line = get("mode")
	switch r.Mode {
	case "":
		r.Mode = ModeActive
	case ModeActive, ModeShadow:
	default:
		fail(line, "mode %q is not active or shadow", r.Mode)
	}
	return r
}

// exprLine is the line of the file where line (1-based) of the expression in n is.
func exprLine(n *yaml.Node, line int) int {
	switch n.Style {
	case yaml.LiteralStyle:
		return n.Line + line
	case yaml.FoldedStyle:
		return n.Line + 1
	}
	return n.Line
}
