package rules

import (
	"errors"
	"strings"
	"testing"
)

// TestCompileErrors: every problem is reported, naming its rule and its line.
func TestCompileErrors(t *testing.T) {
	type want struct {
		rule string
		line int
		msg  string // a part of the message
	}
	tests := []struct {
		name string
		text string
		want []want
	}{
		{"yaml syntax", `rules:
  - id: a
    description: x: y
`, []want{{"", 3, "YAML: mapping values are not allowed in this context"}}},
		{"empty file", "", []want{{"", 1, "the file is empty"}}},
		{"neither key", "rulez: []\n", []want{
			{"", 1, `unknown key "rulez": the file has lists and rules`},
			{"", 1, "no lists: and no rules: in the file"}}},
		{"not a mapping", "- a\n", []want{{"", 1, "must be a mapping with lists: and rules:"}}},
		{"rules not a list", "rules: {a: b}\n", []want{{"", 1, "rules: must be a list of rules"}}},
		{"unknown key in a rule", `rules:
  - id: a
    description: x
    expresion: "true"
    action: flag
`, []want{
			{"a", 2, "missing expression"},
			{"a", 4, `unknown key "expresion"; a rule has id, description, expression, detail, action, reason, mode`}}},
		{"unknown key in a list", `lists:
  blocked_cards: {kind: card, desc: x}
rules: []
`, []want{
			{"", 2, `list blocked_cards: unknown key "desc"; a list has kind and description`},
			{"", 3, "the file has no active rule (no rule)"}}},
		{"missing fields", `rules:
  - id: a
  - description: no id
    expression: "true"
    action: flag
`, []want{
			{"a", 2, "missing description"},
			{"a", 2, "missing expression"},
			{"a", 2, "missing action (flag, review or allow)"},
			{"#2", 3, "missing id"}}},
		{"bad id and reason", `rules:
  - id: Bad-Id
    description: x
    expression: "true"
    action: flag
  - id: b
    description: x
    expression: "true"
    action: flag
    reason: Not Ok
`, []want{
			{"#1", 2, `id "Bad-Id" must match [a-z][a-z0-9_]{0,63}`},
			{"b", 10, `reason "Not Ok" must match [a-z][a-z0-9_]{0,63}`}}},
		{"long id", "rules:\n  - id: a" + strings.Repeat("b", 64) + "\n    description: x\n    expression: \"true\"\n    action: flag\n",
			[]want{{"#1", 2, "must match"}}},
		{"duplicate id", `rules:
  - id: a
    description: x
    expression: "true"
    action: flag
  - id: b
    description: x
    expression: "true"
    action: flag
  - id: a
    description: y
    expression: "false"
    action: flag
`, []want{{"a", 10, "duplicate id a (first on line 2)"}}},
		{"duplicate key", `rules:
  - id: a
    description: x
    expression: "true"
    expression: "false"
    action: flag
`, []want{{"a", 5, "expression given twice (first on line 4)"}}},
		{"bad action, mode, kind", `lists:
  l: {kind: person}
rules:
  - id: a
    description: x
    expression: "true"
    action: block
    mode: dry_run
`, []want{
			{"", 2, `list l: kind "person" is not one of card, merchant, country, ip, device, bin`},
			{"a", 7, `action "block" is not flag, review or allow`},
			{"a", 8, `mode "dry_run" is not active or shadow`}}},
		{"list without kind", "lists:\n  l: {description: x}\nrules:\n  - {id: a, description: x, expression: payment.card_id in lists.l, action: flag}\n",
			[]want{{"", 2, "list l: missing kind"}}},
		{"bad list name", "lists:\n  Blocked: {kind: card}\nrules:\n  - {id: a, description: x, expression: \"false\", action: flag}\n",
			[]want{{"", 2, `list "Blocked": the name must match`}}},
		{"cel syntax", `rules:
  - id: a
    description: x
    expression: payment.amount > > 100
    action: flag
`, []want{{"a", 4, "expression (column 18): syntax error: "}}},
		{"type error", `rules:
  - id: a
    description: x
    expression: payment.amount > "100"
    action: flag
`, []want{{"a", 4, "found no matching overload for '_>_' applied to '(decimal, string)'"}}},
		{"unknown field", `rules:
  - id: a
    description: x
    expression: payment.amont > 100
    action: flag
`, []want{{"a", 4, "expression (column 1): unknown field payment.amont; payment has: amount, bin, card_id, channel"}}},
		{"unknown card field", `rules:
  - id: a
    description: x
    expression: card.count_2h > 1
    action: flag
`, []want{{"a", 4, "unknown field card.count_2h; card has: count_1h, count_24h, count_30d, count_7d, known"}}},
		{"unknown variable", `rules:
  - id: a
    description: x
    expression: amount > 100
    action: flag
`, []want{{"a", 4, "undeclared reference to 'amount'"}}},
		{"namespace as a value", `rules:
  - id: a
    description: x
    expression: payment != null
    action: flag
`, []want{{"a", 4, "payment is not a value; payment has: amount"}}},
		{"unknown list", `lists:
  blocked_cards: {kind: card}
  allowed_cards: {kind: card}
rules:
  - id: a
    description: x
    expression: payment.card_id in lists.nope
    action: flag
`, []want{{"a", 7, "unknown list nope; declared lists: allowed_cards, blocked_cards"}}},
		{"no lists", `rules:
  - id: a
    description: x
    expression: payment.card_id in lists.nope
    action: flag
`, []want{{"a", 4, "unknown list nope; the file declares no lists"}}},
		{"list not with in", `lists:
  blocked_cards: {kind: card}
rules:
  - id: a
    description: x
    expression: size(lists.blocked_cards) > 0
    action: flag
`, []want{{"a", 6, "expression (column 6): lists.blocked_cards can only be tested with in"}}},
		{"not bool", `rules:
  - id: a
    description: x
    expression: payment.country
    action: flag
`, []want{{"a", 4, "expression is string, want bool"}}},
		{"detail not string", `rules:
  - id: a
    description: x
    expression: "true"
    detail: card.window_count
    action: flag
`, []want{{"a", 5, "detail is int, want string"}}},
		{"bad format string", `rules:
  - id: a
    description: x
    expression: "true"
    detail: '"%q".format([1])'
    action: flag
`, []want{{"a", 5, "detail"}}},
		{"bad decimal", `rules:
  - id: a
    description: x
    expression: payment.amount > decimal("1,5")
    action: flag
`, []want{{"a", 4, `decimal("1,5"): not a decimal number`}}},
		{"too costly", `rules:
  - id: a
    description: x
    expression: >-
      payment.id.split("").all(a, payment.merchant_id.split("").all(b,
      payment.ip.split("").all(c, a + b + c != "")))
    action: flag
`, []want{{"a", 5, "too costly: its estimated cost is up to"}}},
		{"error on a later line of a literal block", `rules:
  - id: a
    description: x
    expression: |
      payment.amount > 100 &&
      card.window_cnt > 3
    action: flag
`, []want{{"a", 6, "expression (line 2, column 1): unknown field card.window_cnt"}}},
		{"every problem at once", `lists:
  blocked_cards: {kind: card}
rules:
  - id: a
    description: x
    expression: payment.amont > 100
    action: flag
  - id: b
    expression: payment.country == 1
    action: warn
  - id: a
    description: again
    expression: lists.nope
    detail: "1"
    action: flag
`, []want{
			{"a", 6, "unknown field payment.amont"},
			{"b", 8, "missing description"},
			{"b", 9, "found no matching overload for '_==_' applied to '(string, int)'"},
			{"b", 10, `action "warn" is not flag, review or allow`},
			{"a", 11, "duplicate id a (first on line 4)"},
			{"a", 13, "unknown list nope"},
			{"a", 14, "detail is int, want string"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile("bad.yaml", []byte(tt.text))
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v (%T), want *Errors", err, err)
			}
			if errs.File != "bad.yaml" {
				t.Errorf("file %q", errs.File)
			}
			if len(errs.List) != len(tt.want) {
				t.Fatalf("%d problems, want %d:\n%v", len(errs.List), len(tt.want), err)
			}
			for i, w := range tt.want {
				got := errs.List[i]
				if got.Rule != w.rule || got.Line != w.line || !strings.Contains(got.Msg, w.msg) {
					t.Errorf("problem %d: %+v\nwant rule %q, line %d, a message with %q", i, got, w.rule, w.line, w.msg)
				}
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Errorf("Error() has %d lines, want %d", len(lines), len(tt.want))
			}
		})
	}
}

// TestAcceptedFiles: what the checks let through.
func TestAcceptedFiles(t *testing.T) {
	for name, text := range map[string]string{
		"allow in shadow": "rules:\n  - {id: a, description: x, expression: \"true\", action: allow, mode: shadow}\n" +
			"  - {id: b, description: x, expression: \"false\", action: flag}\n",
		"comprehension variables named like a namespace": `rules:
  - id: a
    description: x
    expression: '["a"].exists(payment, payment == "a") && [1].all(card, card > 0)'
    action: flag
`,
		"null detail is none": "rules:\n  - {id: a, description: x, expression: \"true\", detail: null, action: flag}\n",
	} {
		t.Run(name, func(t *testing.T) {
			compile(t, text)
		})
	}
}

func TestErrorsFormat(t *testing.T) {
	e := &Errors{File: "configs/rules.yaml", List: []Error{
		{Rule: "a", Line: 12, Msg: "missing action (flag, review or allow)"},
		{Line: 3, Msg: "list x: missing kind"},
	}}
	want := "configs/rules.yaml:12: rule a: missing action (flag, review or allow)\n" +
		"configs/rules.yaml:3: list x: missing kind"
	if e.Error() != want {
		t.Errorf("got\n%s\nwant\n%s", e.Error(), want)
	}
}
