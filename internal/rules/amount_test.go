package rules

import (
	"testing"

	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/decision"
)

func TestAmount(t *testing.T) {
	a := NewAmount(Config{
		AmountThreshold:    decimal.RequireFromString("100"),
		CurrencyThresholds: map[string]decimal.Decimal{"JPY": decimal.RequireFromString("15000")},
	})
	tests := []struct {
		amount, currency string
		flagged          bool
		detail           string
	}{
		{"100", "EUR", false, ""},
		{"100.00", "EUR", false, ""},
		{"100.0000000001", "EUR", true, "amount 100.0000000001 EUR is over the threshold of 100 EUR"},
		{"100.01", "USD", true, "amount 100.01 USD is over the threshold of 100 USD"},
		{"150.00", "USD", true, "amount 150.00 USD is over the threshold of 100 USD"},
		{"0.01", "EUR", false, ""},
		{"99999", "EUR", true, "amount 99999 EUR is over the threshold of 100 EUR"},
		{"15000", "JPY", false, ""},
		{"9000", "JPY", false, ""},
		{"15001", "JPY", true, "amount 15001 JPY is over the threshold of 15000 JPY"},
	}
	for _, tt := range tests {
		t.Run(tt.amount+tt.currency, func(t *testing.T) {
			r, ok := a.Check(decimal.RequireFromString(tt.amount), tt.currency)
			if ok != tt.flagged {
				t.Fatalf("flagged = %v, want %v", ok, tt.flagged)
			}
			if ok && (r.Code != decision.CodeAmount || r.Detail != tt.detail) {
				t.Errorf("reason = %+v, want detail %q", r, tt.detail)
			}
		})
	}
}

func TestVersionFollowsThresholds(t *testing.T) {
	v1 := NewAmount(Config{AmountThreshold: decimal.RequireFromString("100")}).Version()
	v2 := NewAmount(Config{AmountThreshold: decimal.RequireFromString("100")}).Version()
	v3 := NewAmount(Config{AmountThreshold: decimal.RequireFromString("200")}).Version()
	v4 := NewAmount(Config{AmountThreshold: decimal.RequireFromString("100"),
		CurrencyThresholds: map[string]decimal.Decimal{"JPY": decimal.RequireFromString("1")}}).Version()
	if v1 != v2 || v1 == v3 || v1 == v4 {
		t.Errorf("versions %s %s %s %s", v1, v2, v3, v4)
	}
}

func TestValidate(t *testing.T) {
	if err := (Config{AmountThreshold: decimal.RequireFromString("-1")}).Validate(); err == nil {
		t.Error("negative threshold accepted")
	}
	for _, cur := range []string{"EURO", "jpy", "XYZ"} {
		if err := (Config{CurrencyThresholds: map[string]decimal.Decimal{cur: decimal.NewFromInt(1)}}).Validate(); err == nil {
			t.Errorf("currency %q accepted", cur)
		}
	}
}
