package rules

// The amount thresholds, one default and optional ones per currency, compared exactly (100.00 is
// not over 100): what the stream used before the rules file. They stay until nothing calls them.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/shopspring/decimal"
	"golang.org/x/text/currency"

	"github.com/paysentry/fraud-detector/internal/decision"
)

// Config sets the thresholds. An amount strictly greater than its currency's threshold, or the
// default threshold for currencies without one, is high risk.
type Config struct {
	AmountThreshold    decimal.Decimal            `yaml:"amount_threshold" env:"AMOUNT_THRESHOLD"`
	CurrencyThresholds map[string]decimal.Decimal `yaml:"currency_thresholds" env:"CURRENCY_THRESHOLDS"`
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	if c.AmountThreshold.Sign() < 0 {
		return fmt.Errorf("rules.amount_threshold: must not be negative, got %s", c.AmountThreshold)
	}
	for cur, t := range c.CurrencyThresholds {
		if _, err := currency.ParseISO(cur); err != nil || strings.ToUpper(cur) != cur {
			return fmt.Errorf("rules.currency_thresholds: %q is not an ISO 4217 code such as JPY", cur)
		}
		if t.Sign() < 0 {
			return fmt.Errorf("rules.currency_thresholds.%s: must not be negative, got %s", cur, t)
		}
	}
	return nil
}

// Amount applies the amount thresholds.
type Amount struct {
	def     decimal.Decimal
	byCur   map[string]decimal.Decimal
	version string
}

// NewAmount returns the amount rule for cfg.
func NewAmount(cfg Config) *Amount {
	h := sha256.New()
	fmt.Fprintf(h, "amount>%s", cfg.AmountThreshold)
	for _, cur := range slices.Sorted(maps.Keys(cfg.CurrencyThresholds)) {
		fmt.Fprintf(h, ";%s>%s", cur, cfg.CurrencyThresholds[cur])
	}
	return &Amount{
		def:     cfg.AmountThreshold,
		byCur:   maps.Clone(cfg.CurrencyThresholds),
		version: "amount-" + hex.EncodeToString(h.Sum(nil)[:4]),
	}
}

// Version names the thresholds in force: it changes whenever one of them does.
func (a *Amount) Version() string { return a.version }

// Check reports whether amount in currency is over its threshold, and why.
func (a *Amount) Check(amount decimal.Decimal, currency string) (decision.Reason, bool) {
	t, ok := a.byCur[currency]
	if !ok {
		t = a.def
	}
	if amount.Cmp(t) <= 0 {
		return decision.Reason{}, false
	}
	return decision.Reason{
		Code:   decision.CodeAmount,
		Detail: fmt.Sprintf("amount %s %s is over the threshold of %s %s", show(amount), currency, show(t), currency),
	}, true
}

// show writes d with the decimal places it was given (150.00 stays 150.00).
func show(d decimal.Decimal) string {
	if e := d.Exponent(); e < 0 {
		return d.StringFixed(-e)
	}
	return d.String()
}
