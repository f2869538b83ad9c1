package rules

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/window"
)

// clearInput is a typical payment that no rule flags: 42.50 EUR, the card's third payment of the
// hour, a score of 0.1, no list holding anything.
func clearInput() *Input {
	return &Input{
		Payment: &payment.Payment{ID: "p-000123", CardID: "card-42", CardMasked: "411111******1111",
			Amount: decimal.RequireFromString("42.50"), Currency: "EUR", Country: "FR",
			MerchantID: "m-77", MerchantCategory: "5411", Channel: "web", DeviceID: "d-9", IP: "192.0.2.10",
			Time: time.Date(2026, 11, 30, 14, 5, 0, 0, time.UTC)},
		State: &window.Result{Count: 3, Window: time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC),
			Aggregates: window.Aggregates{Count1h: 2, Count24h: 5, Count7d: 12, Count30d: 30,
				Sum1h: 80, Sum24h: 250, Sum7d: 900, Sum30d: 2500, SincePrevious: 600}},
		Score: 0.1, Scored: true, ModelVersion: "m1",
		Lists: memLists{},
	}
}

// memLists is a Lists for tests: list name → values.
type memLists map[string][]string

func (l memLists) Contains(list, value string) bool {
	for _, v := range l[list] {
		if v == value {
			return true
		}
	}
	return false
}

func benchEval(b *testing.B, s *Set) {
	in := clearInput()
	hits := make([]Hit, 0, 8)
	if hits, errs := s.Eval(in, hits); len(hits) != 0 || len(errs) != 0 {
		b.Fatalf("hits %v, errors %v: want none on a clear payment", hits, errs)
	}
	b.ReportAllocs()
	for b.Loop() {
		hits, _ = s.Eval(in, hits[:0])
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(s.Rules())), "ns/rule")
}

// BenchmarkEvalDefault: the default rules of configs/rules.yaml on a clear payment.
func BenchmarkEvalDefault(b *testing.B) {
	benchEval(b, mustLoad(b, "../../configs/rules.yaml"))
}

// BenchmarkEval50: 50 rules of a realistic mix on a clear payment.
func BenchmarkEval50(b *testing.B) {
	s, err := Compile("fifty.yaml", []byte(fiftyRules(50)))
	if err != nil {
		b.Fatal(err)
	}
	benchEval(b, s)
}

// fiftyRules is a file of n rules of the kinds a rules file has: amount thresholds (some per
// currency), window and history counts, the score, list membership, string equality, and a few
// combinations.
func fiftyRules(n int) string {
	templates := []string{
		`payment.amount > %d00`,
		`payment.amount >= %d99.99`,
		`payment.amount > (payment.currency == "JPY" ? %d5000 : %d50)`,
		`card.window_count > %d0`,
		`card.count_24h > %d0 && card.sum_24h > %d000.0`,
		`card.count_7d > %d00`,
		`model.scored && model.score > 0.9%d`,
		`payment.card_id in lists.blocked_cards`,
		`payment.merchant_id in lists.blocked_merchants`,
		`payment.country in lists.blocked_countries`,
		`payment.ip in lists.blocked_ips || payment.device_id in lists.blocked_devices`,
		`payment.bin in lists.blocked_bins`,
		`payment.country == "K%d"`,
		`payment.channel == "atm%d" && payment.amount > %d0`,
		`card.new_country && payment.amount > %d00`,
		`card.known && card.seconds_since_previous >= 0 && card.seconds_since_previous < %d`,
		`payment.merchant_category in ["7995", "60%d1"] && payment.amount > %d0`,
		`card.new_device && card.new_merchant && model.score > 0.%d`,
		`payment.currency != "EUR" && payment.country == "FR" && payment.amount > %d000`,
		`card.count_1h > %d && card.sum_1h > %d00.0`,
	}
	var b strings.Builder
	b.WriteString(`lists:
  blocked_cards: {kind: card}
  blocked_merchants: {kind: merchant}
  blocked_countries: {kind: country}
  blocked_ips: {kind: ip}
  blocked_devices: {kind: device}
  blocked_bins: {kind: bin}
rules:
`)
	for i := range n {
		t := templates[i%len(templates)]
		k := i/len(templates) + 1
		expr := t
		if strings.Contains(t, "%d") {
			expr = fmt.Sprintf(strings.ReplaceAll(t, "%d", "%[1]d"), k)
		}
		expr = strings.ReplaceAll(expr, "'", "''")
		fmt.Fprintf(&b, "  - id: rule_%d\n    description: rule %d\n    expression: '%s'\n    action: flag\n", i, i, expr)
	}
	return b.String()
}

func mustLoad(tb testing.TB, path string) *Set {
	tb.Helper()
	s, err := Load(path)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkEvalFlagged: the default rules on a clear payment, and on one that matches
// amount_over_threshold (150.00 EUR), model_score (0.9) or card_velocity_1h (the 11th payment in
// the window): a match costs its detail.
func BenchmarkEvalFlagged(b *testing.B) {
	s := mustLoad(b, defaultFile)
	for _, bc := range []struct {
		name string
		in   func(*Input)
		want string // the rule that matches, "" for none
	}{
		{"clear", func(*Input) {}, ""},
		{"amount", func(in *Input) { in.Payment.Amount = decimal.RequireFromString("150.00") }, "amount_over_threshold"},
		{"model", func(in *Input) { in.Score = 0.9 }, "model_score"},
		{"velocity", func(in *Input) { in.State.Count = 11 }, "card_velocity_1h"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := clearInput()
			bc.in(in)
			hits := make([]Hit, 0, 8)
			hits, errs := s.Eval(in, hits)
			if got := strings.Join(ids(hits), ","); got != bc.want || len(errs) != 0 {
				b.Fatalf("hits %v, errors %v: want %q", hits, errs, bc.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				hits, _ = s.Eval(in, hits[:0])
			}
		})
	}
}
