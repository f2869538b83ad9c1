package paygen

import (
	"bytes"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/payment"
)

func TestReproducibleAndValid(t *testing.T) {
	cfg := Config{Seed: 7, Cards: 500, BurstShare: 0.01, CardNumberShare: 0.2, MalformedShare: 0.05}
	a, b := New(cfg), New(cfg)
	dec := payment.NewDecoder([]byte("test-key-0123456789"), 64<<10)
	var valid, bad, numbers, over int
	kinds := map[string]bool{}
	for range 20_000 {
		ra, rb := a.Next(), b.Next()
		if !bytes.Equal(ra.Value, rb.Value) || ra.Key != rb.Key {
			t.Fatalf("same seed, different records:\n%s\n%s", ra.Value, rb.Value)
		}
		p, err := dec.Decode(ra.Value)
		if ra.Valid != (err == nil) {
			t.Fatalf("record %s: generated valid=%v, decoder says %v", ra.Value, ra.Valid, err)
		}
		if err != nil {
			bad++
			kinds[ra.Kind] = true
			continue
		}
		valid++
		if p.CardMasked != "" {
			numbers++
		}
		if p.Amount.String() != "" && p.Amount.GreaterThan(decimal.NewFromInt(100)) {
			over++
		}
	}
	if len(kinds) != len(malformedKinds) {
		t.Errorf("malformed kinds seen: %v", kinds)
	}
	if share := float64(bad) / 20_000; share < 0.04 || share > 0.06 {
		t.Errorf("malformed share %.3f, want about 0.05", share)
	}
	if share := float64(numbers) / float64(valid); share < 0.17 || share > 0.23 {
		t.Errorf("card number share %.3f, want about 0.2", share)
	}
	if share := float64(over) / float64(valid); share < 0.05 || share > 0.4 {
		t.Errorf("share over 100: %.3f; the mix should flag some but not most", share)
	}
}

func TestPANIsLuhnValid(t *testing.T) {
	dec := payment.NewDecoder([]byte("test-key-0123456789"), 64<<10)
	for _, card := range []int{0, 1, 42, 99_999, 123_456_789} {
		rec := `{"payment_id":"p","card_number":"` + PAN(card) + `","amount":"1","currency":"EUR","timestamp":"2026-01-01T00:00:00Z"}`
		if _, err := dec.Decode([]byte(rec)); err != nil {
			t.Errorf("card %d: %s: %v", card, PAN(card), err)
		}
	}
}
