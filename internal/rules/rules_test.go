package rules

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

const defaultFile = "../../configs/rules.yaml"

// compile compiles a rules file given as text, failing the test on an error.
func compile(t *testing.T, text string) *Set {
	t.Helper()
	s, err := Compile("test.yaml", []byte(text))
	if err != nil {
		t.Fatalf("compile:\n%v", err)
	}
	return s
}

// oneRule is a file of one flag rule with expression expr (in single quotes).
func oneRule(expr string) string {
	return fmt.Sprintf(`lists:
  blocked_cards: {kind: card}
rules:
  - id: r
    description: the rule
    expression: '%s'
    action: flag
`, strings.ReplaceAll(expr, "'", "''"))
}

// ids are the ids of hits.
func ids(hits []Hit) []string {
	var out []string
	for _, h := range hits {
		out = append(out, h.Rule.ID)
	}
	return out
}

func TestDefaultFile(t *testing.T) {
	s := mustLoad(t, defaultFile)
	var got []string
	for _, r := range s.Rules() {
		got = append(got, r.ID+"/"+r.Reason+"/"+r.Action+"/"+r.Mode)
	}
	want := []string{
		"amount_over_threshold/amount_over_threshold/flag/active",
		"card_velocity_1h/card_velocity_1h/flag/active",
		"model_score/model_score/flag/active",
		"blocked_card/blocked_card/flag/active",
		"allowed_card/allowed_card/allow/active",
		"blocked_merchant/blocked_merchant/flag/active",
		"blocked_country/blocked_country/flag/active",
		"blocked_ip/blocked_ip/flag/active",
		"blocked_device/blocked_device/flag/active",
		"blocked_bin/blocked_bin/flag/active",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var lists []string
	for _, l := range s.Lists() {
		lists = append(lists, l.Name+":"+l.Kind)
	}
	wantLists := []string{"blocked_cards:card", "allowed_cards:card", "blocked_merchants:merchant",
		"blocked_countries:country", "blocked_ips:ip", "blocked_devices:device", "blocked_bins:bin"}
	if !slices.Equal(lists, wantLists) {
		t.Errorf("lists %v, want %v", lists, wantLists)
	}
	// Blocking any kind of value is one API call: every list has an active rule, each answered
	// without CEL.
	for _, l := range s.Lists() {
		i := slices.IndexFunc(s.members, func(m member) bool { return m.list == l.Name })
		if i < 0 || s.rules[i].Mode != ModeActive || s.exprs[i] != nil {
			t.Errorf("list %s: no active rule that is only a membership test", l.Name)
		}
	}
	if !regexp.MustCompile(`^rules-[0-9a-f]{12}$`).MatchString(s.Version()) {
		t.Errorf("version %q", s.Version())
	}
	for _, r := range s.Rules() {
		if r.Line == 0 || r.Description == "" {
			t.Errorf("rule %s: line %d, description %q", r.ID, r.Line, r.Description)
		}
	}
}

// TestSeedRules: the default file's rules give the seed's answers, with the seed's reasons.
func TestSeedRules(t *testing.T) {
	s := mustLoad(t, defaultFile)
	window14 := time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		change func(in *Input)
		want   []string // hit ids
		detail string   // of the first hit
	}{
		{"clear", func(in *Input) {}, nil, ""},
		{"amount 100", func(in *Input) { in.Payment.Amount = decimal.RequireFromString("100") }, nil, ""},
		{"amount 100.00", func(in *Input) { in.Payment.Amount = decimal.RequireFromString("100.00") }, nil, ""},
		{"amount 100.01", func(in *Input) { in.Payment.Amount = decimal.RequireFromString("100.01") },
			[]string{"amount_over_threshold"}, "amount 100.01 EUR is over the threshold of 100 EUR"},
		{"amount 100.0000000001", func(in *Input) { in.Payment.Amount = decimal.RequireFromString("100.0000000001") },
			[]string{"amount_over_threshold"}, "amount 100.0000000001 EUR is over the threshold of 100 EUR"},
		{"amount 150.00 USD", func(in *Input) {
			in.Payment.Amount, in.Payment.Currency = decimal.RequireFromString("150.00"), "USD"
		}, []string{"amount_over_threshold"}, "amount 150.00 USD is over the threshold of 100 USD"},
		{"amount 99999", func(in *Input) { in.Payment.Amount = decimal.RequireFromString("99999") },
			[]string{"amount_over_threshold"}, "amount 99999 EUR is over the threshold of 100 EUR"},
		{"window 10", func(in *Input) { in.State.Count = 10 }, nil, ""},
		{"window 11", func(in *Input) { in.State.Count = 11 },
			[]string{"card_velocity_1h"}, "11 payments on this card in the window from 2026-11-30T14:00:00Z, over the limit of 10"},
		{"window 11 in another zone", func(in *Input) {
			in.State.Count, in.State.Window = 11, window14.In(time.FixedZone("CET", 3600))
		}, []string{"card_velocity_1h"}, "11 payments on this card in the window from 2026-11-30T14:00:00Z, over the limit of 10"},
		{"no state", func(in *Input) { in.State = nil }, nil, ""},
		{"late", func(in *Input) { in.State.Count, in.State.Late = 50, true }, nil, ""},
		{"ahead", func(in *Input) { in.State.Count, in.State.Ahead = 50, true }, nil, ""},
		{"score 0.5", func(in *Input) { in.Score = 0.5 }, nil, ""},
		{"score 0.5000001", func(in *Input) { in.Score = 0.5000001 },
			[]string{"model_score"}, "fraud probability 0.500 is over 0.5 (model m1)"},
		{"score 0.93", func(in *Input) { in.Score = 0.93 },
			[]string{"model_score"}, "fraud probability 0.930 is over 0.5 (model m1)"},
		{"unscored", func(in *Input) { in.Score, in.Scored = 0.9, false }, nil, ""},
		{"all three", func(in *Input) {
			in.Payment.Amount, in.State.Count, in.Score = decimal.RequireFromString("500"), 12, 0.99
		}, []string{"amount_over_threshold", "card_velocity_1h", "model_score"}, "amount 500 EUR is over the threshold of 100 EUR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := clearInput()
			tt.change(in)
			hits, errs := s.Eval(in, nil)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if !slices.Equal(ids(hits), tt.want) {
				t.Fatalf("hits %v, want %v", ids(hits), tt.want)
			}
			if len(hits) > 0 && hits[0].Detail != tt.detail {
				t.Errorf("detail %q, want %q", hits[0].Detail, tt.detail)
			}
		})
	}
}

// TestPerCurrencyThreshold: a threshold per currency in one expression.
func TestPerCurrencyThreshold(t *testing.T) {
	s := compile(t, oneRule(`payment.amount > (payment.currency == "JPY" ? 15000 : 100)`))
	for _, tt := range []struct {
		amount, currency string
		want             bool
	}{
		{"15000", "JPY", false},
		{"15000.00", "JPY", false},
		{"15000.01", "JPY", true},
		{"15001", "JPY", true},
		{"9000", "JPY", false},
		{"9000", "EUR", true},
		{"100.00", "EUR", false},
		{"100.01", "EUR", true},
	} {
		t.Run(tt.amount+tt.currency, func(t *testing.T) {
			in := clearInput()
			in.Payment.Amount, in.Payment.Currency = decimal.RequireFromString(tt.amount), tt.currency
			hits, errs := s.Eval(in, nil)
			if len(errs) > 0 || (len(hits) == 1) != tt.want {
				t.Errorf("hits %v, errors %v; want a hit: %v", ids(hits), errs, tt.want)
			}
		})
	}
}

func TestLists(t *testing.T) {
	s := mustLoad(t, defaultFile)
	tests := []struct {
		name  string
		lists Lists
		want  []string
	}{
		{"blocked", memLists{"blocked_cards": {"card-42"}}, []string{"blocked_card"}},
		{"allowed", memLists{"allowed_cards": {"card-42"}}, []string{"allowed_card"}},
		{"both", memLists{"blocked_cards": {"card-42"}, "allowed_cards": {"card-42"}}, []string{"blocked_card", "allowed_card"}},
		{"another card", memLists{"blocked_cards": {"card-43"}}, nil},
		{"the card in another list", memLists{"blocked_merchants": {"card-42"}}, nil},
		{"merchant", memLists{"blocked_merchants": {"m-77"}}, []string{"blocked_merchant"}},
		{"country", memLists{"blocked_countries": {"FR"}}, []string{"blocked_country"}},
		{"ip", memLists{"blocked_ips": {"192.0.2.10"}}, []string{"blocked_ip"}},
		{"device", memLists{"blocked_devices": {"d-9"}}, []string{"blocked_device"}},
		{"bin", memLists{"blocked_bins": {"411111"}}, []string{"blocked_bin"}},
		{"every list", memLists{"blocked_cards": {"card-42"}, "allowed_cards": {"card-42"},
			"blocked_merchants": {"m-77"}, "blocked_countries": {"FR"}, "blocked_ips": {"192.0.2.10"},
			"blocked_devices": {"d-9"}, "blocked_bins": {"411111"}},
			[]string{"blocked_card", "allowed_card", "blocked_merchant", "blocked_country", "blocked_ip", "blocked_device", "blocked_bin"}},
		{"nil lists", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := clearInput()
			in.Lists = tt.lists
			hits, errs := s.Eval(in, nil)
			if len(errs) > 0 || !slices.Equal(ids(hits), tt.want) {
				t.Errorf("hits %v, errors %v; want %v", ids(hits), errs, tt.want)
			}
			for _, h := range hits {
				if h.Detail != h.Rule.Description {
					t.Errorf("detail %q, want the description", h.Detail)
				}
			}
		})
	}
}

// TestListKinds: each kind of list matches on its payment field.
func TestListKinds(t *testing.T) {
	s := compile(t, `lists:
  m: {kind: merchant}
  c: {kind: country}
  i: {kind: ip}
  d: {kind: device}
  b: {kind: bin}
rules:
  - {id: m, description: m, expression: payment.merchant_id in lists.m, action: flag}
  - {id: c, description: c, expression: payment.country in lists.c, action: flag}
  - {id: i, description: i, expression: payment.ip in lists.i, action: review}
  - {id: d, description: d, expression: payment.device_id in lists.d, action: flag}
  - {id: b, description: b, expression: payment.bin in lists.b, action: flag}
`)
	in := clearInput()
	in.Lists = memLists{"m": {"m-77"}, "c": {"FR"}, "i": {"192.0.2.10"}, "d": {"d-9"}, "b": {"411111"}}
	hits, errs := s.Eval(in, nil)
	if want := []string{"m", "c", "i", "d", "b"}; len(errs) > 0 || !slices.Equal(ids(hits), want) {
		t.Errorf("hits %v, errors %v; want %v", ids(hits), errs, want)
	}
	in.Payment.CardMasked = ""
	if hits, _ := s.Eval(in, nil); slices.Contains(ids(hits), "b") {
		t.Error("a payment without a card number matched on its BIN")
	}
}

func TestShadow(t *testing.T) {
	s := compile(t, `rules:
  - id: big
    description: big
    expression: payment.amount > 10
    action: flag
    mode: shadow
    reason: big_amount
  - id: ok
    description: allowed in shadow
    expression: "true"
    action: allow
    mode: shadow
  - id: small
    description: small
    expression: payment.amount < 1000
    action: review
`)
	hits, errs := s.Eval(clearInput(), nil)
	if len(errs) > 0 || !slices.Equal(ids(hits), []string{"big", "ok", "small"}) {
		t.Fatalf("hits %v, errors %v", ids(hits), errs)
	}
	for i, want := range []string{ModeShadow, ModeShadow, ModeActive} {
		if hits[i].Rule.Mode != want {
			t.Errorf("%s: mode %q, want %q", hits[i].Rule.ID, hits[i].Rule.Mode, want)
		}
	}
	if hits[0].Rule.Reason != "big_amount" || hits[2].Rule.Reason != "small" {
		t.Errorf("reasons %q %q", hits[0].Rule.Reason, hits[2].Rule.Reason)
	}
}

// TestEvalErrors: a rule that fails does not match and is reported; a detail that fails leaves
// the description.
func TestEvalErrors(t *testing.T) {
	s := compile(t, `rules:
  - id: divides
    description: divides by the count less 3
    expression: 10 / (card.window_count - 3) > 1
    action: flag
  - id: dyn
    description: compares a string with an int
    expression: dyn(payment.country) > 1
    action: flag
  - id: bad_detail
    description: the detail divides by zero
    expression: "true"
    detail: string(1 / (card.window_count - 3))
    action: review
  - id: fine
    description: fine
    expression: card.window_count == 3
    detail: '"count " + string(card.window_count)'
    action: review
`)
	hits, errs := s.Eval(clearInput(), nil)
	if !slices.Equal(ids(hits), []string{"bad_detail", "fine"}) {
		t.Fatalf("hits %v", ids(hits))
	}
	if hits[0].Detail != "the detail divides by zero" || hits[1].Detail != "count 3" {
		t.Errorf("details %q, %q", hits[0].Detail, hits[1].Detail)
	}
	var got []string
	for _, e := range errs {
		got = append(got, e.Rule.ID+": "+e.Err.Error())
	}
	want := []string{"divides: division by zero", "dyn: no such overload", "bad_detail: detail: division by zero"}
	if len(got) != len(want) {
		t.Fatalf("errors %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("error %q, want %q...", got[i], want[i])
		}
	}
}

func TestVersion(t *testing.T) {
	base := `# the rules
lists:
  blocked_cards: {kind: card, description: blocked}
rules:
  - id: a
    description: amount
    expression: payment.amount > 100 && card.window_count > 2
    detail: '"over " + string(payment.amount)'
    action: flag
  - {id: z, description: another, expression: "false", action: flag}
`
	same := []string{
		// comments, blank lines, block style, quoting, spacing inside the expression
		`lists:

  # the blocked ones
  blocked_cards:
    kind: card
    description: blocked
rules:
  - action: flag
    expression: "payment.amount>100&&card.window_count>2"   # compact
    id: a
    description: "amount"
    detail: >-
      "over " +
      string(payment.amount)
  - id: z
    description: another
    expression: "false"
    action: flag
`,
		// the defaults written out; a list's description is documentation
		strings.Replace(strings.Replace(base, "action: flag", "action: flag\n    mode: active\n    reason: a", 1),
			"description: blocked", "description: cards we block", 1),
	}
	different := []string{
		strings.Replace(base, "> 100", "> 101", 1),
		strings.Replace(base, "> 100", ">= 100", 1),
		strings.Replace(base, `"over "`, `"above "`, 1),
		strings.Replace(base, "action: flag", "action: review", 1),
		strings.Replace(base, "action: flag", "action: flag\n    mode: shadow", 1),
		strings.Replace(base, "action: flag", "action: flag\n    reason: big", 1),
		strings.Replace(base, "description: amount", "description: the amount", 1),
		strings.Replace(base, "kind: card", "kind: device", 1),
		strings.Replace(base, "blocked_cards:", "blocked_cards2:", 1),
		strings.Replace(base, "id: a", "id: b", 1),
	}
	v := compile(t, base).Version()
	for i, text := range same {
		if got := compile(t, text).Version(); got != v {
			t.Errorf("same %d: version %s, want %s", i, got, v)
		}
	}
	seen := map[string]int{v: -1}
	for i, text := range different {
		got := compile(t, text).Version()
		if j, dup := seen[got]; dup {
			t.Errorf("different %d: version %s, as %d's", i, got, j)
		}
		seen[got] = i
	}
}

func TestRulesAreCopies(t *testing.T) {
	s := mustLoad(t, defaultFile)
	r, l := s.Rules(), s.Lists()
	r[0].ID, l[0].Name = "changed", "changed"
	if s.Rules()[0].ID == "changed" || s.Lists()[0].Name == "changed" {
		t.Error("Rules or Lists gave the Set's own slice")
	}
}

// TestNoActiveRule: a file that would decide nothing is refused, with the line of rules: (1
// without one); a file that says so with a rule is accepted.
func TestNoActiveRule(t *testing.T) {
	shadow := "  - {id: s, description: s, expression: payment.amount > 10, action: flag, mode: shadow}\n"
	for _, tt := range []struct {
		name, text string
		line       int
		what       string
	}{
		{"empty list", "rules: []\n", 1, "no rule"},
		{"null", "lists:\n  a: {kind: card}\nrules:\n", 3, "no rule"},
		{"no rules key", "lists:\n  a: {kind: card}\n", 1, "no rule"},
		{"both empty", "lists: {}\nrules: []\n", 2, "no rule"},
		{"a shadow rule", "# cut short\nrules:\n" + shadow, 2, "only a shadow rule"},
		{"shadow rules", "rules:\n" + shadow + strings.ReplaceAll(shadow, "id: s", "id: t"), 1, "only shadow rules"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile("cut.yaml", []byte(tt.text))
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) != 1 {
				t.Fatalf("error %v, want one problem", err)
			}
			want := Error{Line: tt.line, Msg: "the file has no active rule (" + tt.what + "): it would decide nothing " +
				"(a file cut short?); a policy that flags nothing must say so with an active rule, e.g. expression: false"}
			if errs.List[0] != want {
				t.Errorf("problem %+v\nwant %+v", errs.List[0], want)
			}
		})
	}
	// The message's advice works: an active rule that is always false, and shadow rules.
	s := compile(t, "rules:\n  - {id: nothing, description: flags nothing, expression: false, action: flag}\n"+shadow)
	in := clearInput()
	hits, errs := s.Eval(in, nil)
	if len(errs) != 0 || !slices.Equal(ids(hits), []string{"s"}) {
		t.Errorf("hits %v, errors %v; want the shadow rule's", ids(hits), errs)
	}
}

// TestConcurrentEval evaluates from 8 goroutines at once, each its own payments (run with -race).
func TestConcurrentEval(t *testing.T) {
	s := mustLoad(t, defaultFile)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			var hits []Hit
			for i := range 500 {
				in := clearInput()
				over := (g+i)%2 == 0
				if over {
					in.Payment.Amount = decimal.New(int64(10001+g), -2) // 100.01 and up
				}
				in.State.Count = int64(i % 20)
				in.Lists = memLists{"blocked_cards": {fmt.Sprintf("card-%d", g)}}
				in.Payment.CardID = fmt.Sprintf("card-%d", (g+i)%8)
				var errs []EvalError
				hits, errs = s.Eval(in, hits[:0])
				want := 0
				if over {
					want++
				}
				if in.State.Count > 10 {
					want++
				}
				if in.Payment.CardID == fmt.Sprintf("card-%d", g) {
					want++
				}
				if len(errs) > 0 || len(hits) != want {
					errc <- fmt.Errorf("goroutine %d, payment %d: hits %v, errors %v, want %d hits", g, i, ids(hits), errs, want)
					return
				}
				if over && hits[0].Detail != fmt.Sprintf("amount %s EUR is over the threshold of 100 EUR", in.Payment.Amount.StringFixed(2)) {
					errc <- fmt.Errorf("goroutine %d: detail %q", g, hits[0].Detail)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("testdata/no-such-file.yaml")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v, want one saying the file does not exist", err)
	}
}
