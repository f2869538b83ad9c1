package rules

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"cel.dev/cel-go/common/types"

	"github.com/paysentry/fraud-detector/internal/payment"
)

// TestMembershipDetected: exactly the expressions that are a string variable's membership in a
// list are evaluated without CEL.
func TestMembershipDetected(t *testing.T) {
	for _, tt := range []struct {
		expr   string
		native bool
	}{
		{`payment.card_id in lists.blocked_cards`, true},
		{`(payment.card_id in lists.blocked_cards)`, true},
		{`payment.bin in lists.blocked_cards`, true},
		{`model.version in lists.blocked_cards`, true},
		{`(payment.card_id in lists.blocked_cards) == true`, false},
		{`!(payment.card_id in lists.blocked_cards)`, false},
		{`payment.card_id in lists.blocked_cards || payment.ip in lists.blocked_cards`, false},
		{`"card-42" in lists.blocked_cards`, false},
		{`payment.country.lowerAscii() in lists.blocked_cards`, false},
		{`["a"].exists(x, x in lists.blocked_cards)`, false},
		{`payment.card_id in ["card-42"]`, false},
		{`payment.card_id in {"card-42": true}`, false},
	} {
		t.Run(tt.expr, func(t *testing.T) {
			s := compile(t, oneRule(tt.expr))
			if native := s.exprs[0] == nil; native != tt.native {
				t.Errorf("evaluated without CEL: %v, want %v", native, tt.native)
			}
			if tt.native && s.members[0].list != "blocked_cards" {
				t.Errorf("member %+v", s.members[0])
			}
		})
	}
}

// TestMembershipAsCEL: a membership test evaluated without CEL matches when the same test
// evaluated by CEL does, for every string variable, over inputs and lists of every shape; and
// its detail is CEL's.
func TestMembershipAsCEL(t *testing.T) {
	var vars []string
	for _, v := range fieldVariables() {
		if v.typ == types.StringType {
			vars = append(vars, v.name)
		}
	}
	var b strings.Builder
	b.WriteString("lists:\n  a: {kind: card}\n  b: {kind: device}\nrules:\n")
	for i, v := range vars {
		for _, l := range []string{"a", "b"} {
			// native_N_l, then cel_N_l: the same test, which CEL evaluates.
			fmt.Fprintf(&b, "  - {id: native_%d_%s, description: x, expression: '%s in lists.%s', detail: '\"value \" + %s', action: flag}\n", i, l, v, l, v)
			fmt.Fprintf(&b, "  - {id: cel_%d_%s, description: x, expression: '(%s in lists.%s) == true', detail: '\"value \" + %s', action: flag}\n", i, l, v, l, v)
		}
	}
	s := compile(t, b.String())
	for i, r := range s.Rules() {
		if native := strings.HasPrefix(r.ID, "native_"); native != (s.exprs[i] == nil) {
			t.Fatalf("rule %s: evaluated without CEL: %v", r.ID, !native)
		}
	}

	rnd := rand.New(rand.NewPCG(1, 2))
	values := []string{"", "x", "FR", "fr", "card-42", "m-77", "d-9", "192.0.2.10", "411111", "m1", "EUR", "web"}
	pick := func() string { return values[rnd.IntN(len(values))] }
	masked := []string{"", "411111******1111", "41111", "4111a1******1111", "411111", "x"}
	matches := 0
	for n := range 5000 {
		in := &Input{
			Payment: &payment.Payment{ID: pick(), CardID: pick(), CardMasked: masked[rnd.IntN(len(masked))],
				Currency: pick(), Country: pick(), MerchantID: pick(), MerchantCategory: pick(), Channel: pick(),
				DeviceID: pick(), IP: pick()},
			ModelVersion: pick(), Scored: rnd.IntN(2) == 0,
		}
		lists := memLists{}
		for _, l := range []string{"a", "b"} {
			for range rnd.IntN(4) {
				lists[l] = append(lists[l], pick())
			}
		}
		in.Lists = lists
		switch rnd.IntN(20) {
		case 0:
			in = nil
		case 1:
			in.Payment = nil
		case 2:
			in.Lists = nil
		}
		hits, errs := s.Eval(in, nil)
		if len(errs) > 0 {
			t.Fatalf("input %d: errors %v", n, errs)
		}
		got := map[string]string{}
		for _, h := range hits {
			got[h.Rule.ID] = h.Detail
		}
		for id, detail := range got {
			if rest, ok := strings.CutPrefix(id, "native_"); ok {
				matches++
				if d, ok := got["cel_"+rest]; !ok || d != detail {
					t.Fatalf("input %d (%+v, lists %v): %s matched with detail %q, its CEL twin: %q, %v", n, in, lists, id, detail, d, ok)
				}
			} else if _, ok := got["native_"+strings.TrimPrefix(id, "cel_")]; !ok {
				t.Fatalf("input %d (%+v, lists %v): %s matched, not its native twin", n, in, lists, id)
			}
		}
	}
	if matches < 1000 {
		t.Errorf("%d native matches in all: the inputs do not test much", matches)
	}
}

// TestMembershipEmptyValue: the list decides about an empty value (a payment without the field).
func TestMembershipEmptyValue(t *testing.T) {
	s := compile(t, oneRule(`payment.device_id in lists.blocked_cards`))
	in := clearInput()
	in.Payment.DeviceID = ""
	spy := &spyLists{}
	in.Lists = spy
	if hits, _ := s.Eval(in, nil); len(hits) != 1 {
		t.Errorf("hits %v, want the list's answer", ids(hits))
	}
	if want := []string{"blocked_cards/"}; strings.Join(spy.asked, ",") != strings.Join(want, ",") {
		t.Errorf("asked %q, want %q", spy.asked, want)
	}
}

// spyLists holds every value and records what it is asked.
type spyLists struct{ asked []string }

func (l *spyLists) Contains(list, value string) bool {
	l.asked = append(l.asked, list+"/"+value)
	return true
}

// TestMembershipAllocates: membership tests alone take no activation and allocate nothing.
func TestMembershipAllocates(t *testing.T) {
	s := compile(t, `lists:
  blocked_cards: {kind: card}
  blocked_ips: {kind: ip}
rules:
  - {id: c, description: c, expression: payment.card_id in lists.blocked_cards, action: flag}
  - {id: i, description: i, expression: payment.ip in lists.blocked_ips, action: flag}
  - {id: b, description: b, expression: payment.bin in lists.blocked_cards, action: flag}
`)
	in := clearInput()
	hits := make([]Hit, 0, 4)
	if n := testing.AllocsPerRun(100, func() { hits, _ = s.Eval(in, hits[:0]) }); n != 0 {
		t.Errorf("%v allocations an Eval", n)
	}
}
