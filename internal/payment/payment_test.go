package payment

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

const pan = "4111111111111111" // a Luhn-valid test number

func newTestDecoder() *Decoder { return NewDecoder([]byte("test-key-0123456789"), 64<<10) }

func TestDecodeValid(t *testing.T) {
	d := newTestDecoder()
	tests := []struct {
		name string
		in   string
		want func(t *testing.T, p Payment)
	}{
		{"string amount keeps its exactness",
			`{"payment_id":"p1","card_id":"c1","amount":"100.00","currency":"EUR","timestamp":"2026-03-01T10:59:59Z"}`,
			func(t *testing.T, p Payment) {
				if p.Amount.String() != "100" || p.Amount.Exponent() != -2 {
					t.Errorf("amount = %s (exp %d), want 100.00", p.Amount, p.Amount.Exponent())
				}
				if !p.Time.Equal(time.Date(2026, 3, 1, 10, 59, 59, 0, time.UTC)) {
					t.Errorf("time = %v", p.Time)
				}
			}},
		{"number amount and an offset time",
			`{"payment_id":"p2","card_id":"c1","amount":12.5,"currency":"JPY","timestamp":"2026-03-01T12:00:00.123+02:00","country":"DE","merchant_id":"m1"}`,
			func(t *testing.T, p Payment) {
				if p.Amount.String() != "12.5" || p.Currency != "JPY" || p.Country != "DE" || p.MerchantID != "m1" {
					t.Errorf("got %+v", p)
				}
				if p.Time.UTC().Hour() != 10 {
					t.Errorf("time = %v, want 10:00 UTC", p.Time.UTC())
				}
			}},
		{"128 characters of more than a byte, lower-case t and z, a 3-digit exponent",
			`{"payment_id":"` + strings.Repeat("é", 128) + `","card_id":"c1","amount":1e+002,"currency":"EUR","timestamp":"2026-03-01t10:00:00z"}`,
			func(t *testing.T, p Payment) {
				if p.Amount.String() != "100" || p.Time.Hour() != 10 {
					t.Errorf("got %+v", p)
				}
			}},
		{"exponent amount",
			`{"payment_id":"p3","card_id":"c1","amount":1.5e2,"currency":"USD","timestamp":"2026-03-01T12:00:00Z"}`,
			func(t *testing.T, p Payment) {
				if p.Amount.String() != "150" {
					t.Errorf("amount = %s, want 150", p.Amount)
				}
			}},
		{"card number becomes a token and a mask",
			`{"payment_id":"p4","card_number":"` + pan + `","amount":"1","currency":"USD","timestamp":"2026-03-01T12:00:00Z"}`,
			func(t *testing.T, p Payment) {
				if p.CardMasked != "411111******1111" {
					t.Errorf("masked = %q", p.CardMasked)
				}
				if !strings.HasPrefix(p.CardID, "tok_") || len(p.CardID) != 36 || strings.Contains(p.CardID, pan) {
					t.Errorf("card id = %q", p.CardID)
				}
			}},
		{"card id wins over the number's token",
			`{"payment_id":"p5","card_id":"c9","card_number":"` + pan + `","amount":"1","currency":"USD","timestamp":"2026-03-01T12:00:00Z"}`,
			func(t *testing.T, p Payment) {
				if p.CardID != "c9" || p.CardMasked != "411111******1111" {
					t.Errorf("got card %q masked %q", p.CardID, p.CardMasked)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := d.Decode([]byte(tt.in))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			tt.want(t, p)
		})
	}
}

func TestTokenIsKeyedAndStable(t *testing.T) {
	in := []byte(`{"payment_id":"p","card_number":"` + pan + `","amount":"1","currency":"USD","timestamp":"2026-03-01T12:00:00Z"}`)
	a, _ := newTestDecoder().Decode(in)
	b, _ := newTestDecoder().Decode(in)
	c, _ := NewDecoder([]byte("another-key-0123456789"), 1<<20).Decode(in)
	if a.CardID != b.CardID {
		t.Errorf("same key, different tokens: %s %s", a.CardID, b.CardID)
	}
	if a.CardID == c.CardID {
		t.Errorf("different keys, same token %s", a.CardID)
	}
}

func TestDecodeInvalid(t *testing.T) {
	d := NewDecoder([]byte("k"), 1024)
	base := map[string]any{"payment_id": "p1", "card_id": "c1", "amount": "10", "currency": "EUR", "timestamp": "2026-03-01T10:00:00Z"}
	with := func(k string, v any) string {
		m := map[string]any{}
		for kk, vv := range base {
			m[kk] = vv
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return string(b)
	}
	tests := []struct {
		name, in, code, field string
	}{
		{"empty", "", CodeEmpty, ""},
		{"too large", `{"x":"` + strings.Repeat("a", 2000) + `"}`, CodeTooLarge, ""},
		{"invalid utf-8", "{\"payment_id\":\"\xff\xfe\"}", CodeInvalidUTF8, ""},
		{"bad json", `{"payment_id":`, CodeInvalidJSON, ""},
		{"array", `[1,2]`, CodeInvalidJSON, ""},
		{"string", `"hello"`, CodeInvalidJSON, ""},
		{"null", `null`, CodeInvalidJSON, ""},
		{"missing payment_id", with("payment_id", nil), CodeMissingField, "payment_id"},
		{"long payment_id", with("payment_id", strings.Repeat("x", 129)), CodeInvalidField, "payment_id"},
		{"blank payment_id", with("payment_id", "  "), CodeInvalidField, "payment_id"},
		{"control char id", with("payment_id", "a\tb"), CodeInvalidField, "payment_id"},
		{"payment_id number", with("payment_id", 5), CodeInvalidField, "payment_id"},
		{"missing card", with("card_id", nil), CodeMissingField, "card_id"},
		{"bad luhn", with("card_number", "4111111111111112"), CodeInvalidField, "card_number"},
		{"short pan", with("card_number", "411111111111"), CodeInvalidField, "card_number"},
		{"missing amount", with("amount", nil), CodeMissingField, "amount"},
		{"zero amount", with("amount", 0), CodeInvalidField, "amount"},
		{"zero string amount", with("amount", "0.00"), CodeInvalidField, "amount"},
		{"negative amount", with("amount", -5), CodeInvalidField, "amount"},
		{"word amount", with("amount", "ten"), CodeInvalidField, "amount"},
		{"bool amount", with("amount", true), CodeInvalidField, "amount"},
		{"huge exponent", `{"payment_id":"p","card_id":"c","amount":1e999999999,"currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`, CodeInvalidField, "amount"},
		{"exponent in string", with("amount", "1e5"), CodeInvalidField, "amount"},
		{"missing currency", with("currency", nil), CodeMissingField, "currency"},
		{"lowercase currency", with("currency", "eur"), CodeInvalidField, "currency"},
		{"unknown currency", with("currency", "ABC"), CodeInvalidField, "currency"},
		{"missing timestamp", with("timestamp", nil), CodeMissingField, "timestamp"},
		{"bad timestamp", with("timestamp", "2026-03-01 10:00:00"), CodeInvalidField, "timestamp"},
		{"epoch timestamp", with("timestamp", 1700000000), CodeInvalidField, "timestamp"},
		{"bad country", with("country", "Germany"), CodeInvalidField, "country"},
		{"long merchant", with("merchant_id", strings.Repeat("m", 257)), CodeInvalidField, "merchant_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Decode([]byte(tt.in))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.code || e.Field != tt.field {
				t.Fatalf("err = %#v, want code %s field %q", err, tt.code, tt.field)
			}
			if strings.Contains(err.Error(), "4111111111111112") {
				t.Errorf("error echoes the card number: %v", err)
			}
		})
	}
}

func TestJSONKeepsUnknownFieldsAndMasks(t *testing.T) {
	d := newTestDecoder()
	in := `{"payment_id":"p1","card_number":"` + pan + `","amount":"250.00","currency":"USD","timestamp":"2026-03-01T10:00:00Z","loyalty":{"tier":"gold"}}`
	p, err := d.Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	out := p.JSON()
	if bytes.Contains(out, []byte(pan)) {
		t.Fatalf("output holds the card number: %s", out)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	if m["card_number"] != "411111******1111" || m["amount"] != "250.00" || m["loyalty"].(map[string]any)["tier"] != "gold" {
		t.Errorf("got %s", out)
	}
	plain, _ := d.Decode([]byte(`{"payment_id":"p2","card_id":"c","amount":"1","currency":"USD","timestamp":"2026-03-01T10:00:00Z","x":1}`))
	if out := plain.JSON(); !bytes.Contains(out, []byte(`"x":1`)) {
		t.Errorf("unknown field lost: %s", out)
	}
}

func TestCardNumbersNeverInClear(t *testing.T) {
	d := newTestDecoder()
	rec := func(extra string) []byte {
		return []byte(`{"payment_id":"p1","card_id":"c1","amount":"250.00","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"` + extra + `}`)
	}
	t.Run("card_id that is or holds a card number is refused", func(t *testing.T) {
		for _, id := range []string{pan, "card " + pan, "4111-1111-1111-1111", "4111 1111 1111 1111"} {
			_, err := d.Decode([]byte(`{"payment_id":"p1","card_id":"` + id + `","amount":"1","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`))
			var e *Error
			if !errors.As(err, &e) || e.Field != "card_id" || strings.Contains(err.Error(), pan) || strings.Contains(err.Error(), id) {
				t.Errorf("%q: err = %v", id, err)
			}
		}
		// Digits that are no card number are a card id like any other.
		if _, err := d.Decode([]byte(`{"payment_id":"p1","card_id":"1234567890123456","amount":"1","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`)); err != nil {
			t.Errorf("a 16-digit card id that fails the Luhn check: %v", err)
		}
	})
	t.Run("errors quoting a value mask it", func(t *testing.T) {
		for _, in := range [][]byte{
			[]byte(`{"payment_id":"p1","card_id":"c1","amount":"1","currency":"EUR","timestamp":"` + pan + `"}`),
			[]byte(`{"payment_id":"p1","card_id":"c1","amount":"1","currency":"EUR","timestamp":"2026-03-01T10:00:00Z","` + pan + `":1,"` + pan + `":2}`),
		} {
			_, err := d.Decode(in)
			if err == nil || strings.Contains(err.Error(), pan) || !strings.Contains(err.Error(), "411111******1111") {
				t.Errorf("err = %v", err)
			}
		}
	})
	t.Run("unknown fields are masked in the output, which stays valid", func(t *testing.T) {
		p, err := d.Decode(rec(`,"pan":"4111 1111 1111 1111","ref":4111111111111111,"neg":-4111111111111111.5,"esc":"\u0041` + pan + `","n":[1,2,12345678901234567890123]`))
		if err != nil {
			t.Fatal(err)
		}
		out := p.JSON()
		var m map[string]any
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("output is not JSON: %v: %s", err, out)
		}
		want := map[string]any{"pan": "4111 11** **** 1111", "ref": "411111******1111", "neg": "411111******1111", "esc": "A411111******1111"}
		for k, v := range want {
			if m[k] != v {
				t.Errorf("%s = %v, want %v", k, m[k], v)
			}
		}
		if n := m["n"].([]any); len(n) != 3 {
			t.Errorf("a long number that is no card number changed: %v", n)
		}
	})
}

func TestRedactPANs(t *testing.T) {
	in := []byte(`garbage 4111111111111111 and 4111111111111112 and 12345 {"card_number":"5500005555555559" 4111-1111-1111-1111 2026-03-01`)
	out, ok := RedactPANs(in)
	if !ok {
		t.Fatal("nothing redacted")
	}
	want := `garbage 411111******1111 and 4111111111111112 and 12345 {"card_number":"550000******5559" 4111-11**-****-1111 2026-03-01`
	if string(out) != want {
		t.Errorf("got  %s\nwant %s", out, want)
	}
	if !bytes.Contains(in, []byte(pan)) {
		t.Error("input was changed")
	}
	if _, ok := RedactPANs([]byte("no numbers")); ok {
		t.Error("redacted a record without card numbers")
	}
}

// RedactJSON and RedactPANs scan again after masking.
func TestRedactionLeavesNoCardNumberNextToAMask(t *testing.T) {
	in := []byte(`{"x":"00000000000 00000000000 000000","y":"4111111111111111 4111"}`)
	// The digits a mask keeps, next to another group of digits, made a new card number.
	for name, redact := range map[string]func([]byte) ([]byte, bool){"RedactJSON": RedactJSON, "RedactPANs": RedactPANs} {
		out, _ := redact(in)
		if pan := shown(in, out); pan != nil {
			t.Errorf("%s shows %s: %s", name, pan, out)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"payment_id":"p1","card_id":"c1","amount":"100.00","currency":"EUR","timestamp":"2026-03-01T10:59:59Z"}`))
	f.Add([]byte(`{"payment_id":"p1","card_number":"4111111111111111","amount":1e2,"currency":"USD","timestamp":"2026-03-01T10:59:59+01:00","extra":[1,{"a":null}]}`))
	f.Add([]byte(`{"amount":-0.0}`))
	f.Add([]byte("\xff"))
	d := newTestDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := d.Decode(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) || e.Code == "" {
				t.Fatalf("error %v is not an *Error matching ErrInvalid", err)
			}
			if pan := shown(b, []byte(err.Error())); pan != nil {
				t.Fatalf("error shows card number %s: %v", pan, err)
			}
			return
		}
		if p.ID == "" || p.CardID == "" || p.Currency == "" || p.Amount.Sign() <= 0 || p.Time.IsZero() {
			t.Fatalf("accepted an incomplete payment: %+v", p)
		}
		out := p.JSON()
		if !json.Valid(out) {
			t.Fatalf("JSON() = %q is not valid JSON", out)
		}
		if pan := shown(b, out); pan != nil {
			t.Fatalf("card number %s in clear in %s", pan, out)
		}
	})
}

// pansIn returns the card numbers in b, as they are written there.
func pansIn(b []byte) [][]byte {
	var pans [][]byte
	eachPAN(b, func(start, end int) { pans = append(pans, b[start:end]) })
	return pans
}

// shown returns a card number of in that out shows as a card number, or nil.
func shown(in, out []byte) []byte {
	was := map[string]bool{}
	for _, pan := range pansIn(in) {
		was[string(pan)] = true
	}
	for _, pan := range pansIn(out) {
		if was[string(pan)] {
			return pan
		}
	}
	return nil
}

func BenchmarkDecode(b *testing.B) {
	d := newTestDecoder()
	rec := []byte(`{"payment_id":"pay-000000012345","card_id":"card-0000042","amount":"37.20","currency":"EUR","timestamp":"2026-03-01T10:59:59.123Z","merchant_id":"m-00123","merchant_category":"5411","country":"DE","channel":"pos","device_id":"dev-778","ip":"203.0.113.7"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		if _, err := d.Decode(rec); err != nil {
			b.Fatal(err)
		}
	}
}
