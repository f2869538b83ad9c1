// Package payment decodes and validates the Payment contract of the `payments` topic: exact
// decimal amounts, RFC 3339 event time, ISO currency and country codes, and card numbers turned
// into a keyed-HMAC card id and masked wherever they are shown.
package payment

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"github.com/shopspring/decimal"
	"golang.org/x/text/currency"
	"golang.org/x/text/language"
)

// ErrInvalid is matched by every error that Decode returns: the record breaks the contract and
// retrying it cannot help.
var ErrInvalid = errors.New("invalid payment")

// Error codes, carried in the dead-letter headers.
const (
	CodeEmpty        = "empty"
	CodeTooLarge     = "too_large"
	CodeInvalidUTF8  = "invalid_utf8"
	CodeInvalidJSON  = "invalid_json"
	CodeMissingField = "missing_field"
	CodeInvalidField = "invalid_field"
)

// Error says why a record is not a valid payment.
type Error struct {
	Code  string // one of the Code constants
	Field string // the offending field, if there is one
	Msg   string
}

func (e *Error) Error() string {
	if e.Field == "" {
		return e.Msg
	}
	return e.Field + ": " + e.Msg
}

// Is makes every *Error match ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// invalid makes a field error. Messages may quote the offending value; any card number in them is
// masked here, once for all of them.
func invalid(field, format string, args ...any) *Error {
	msg, _ := RedactPANs(fmt.Appendf(nil, format, args...))
	return &Error{Code: CodeInvalidField, Field: field, Msg: string(msg)}
}

func missing(field string) *Error {
	return &Error{Code: CodeMissingField, Field: field, Msg: "is required"}
}

// Payment is one decoded, valid payment.
type Payment struct {
	ID     string
	CardID string // the card token: as sent, or the keyed HMAC of the card number
	// CardMasked is the card number as it may be shown (first 6 and last 4 digits), or "" when
	// the payment carried no card number.
	CardMasked       string
	Amount           decimal.Decimal
	Currency         string
	Time             time.Time // event time
	MerchantID       string
	MerchantCategory string
	Country          string
	Channel          string
	DeviceID         string
	IP               string

	raw       []byte // the record as received; unknown fields pass through from here
	hasNumber bool
}

// wire is the JSON shape of a payment. Every field is a string except amount, which may be a
// JSON number or a decimal string.
type wire struct {
	PaymentID        string         `json:"payment_id"`
	CardID           string         `json:"card_id"`
	CardNumber       string         `json:"card_number"`
	Amount           jsontext.Value `json:"amount"`
	Currency         string         `json:"currency"`
	Timestamp        string         `json:"timestamp"`
	MerchantID       string         `json:"merchant_id"`
	MerchantCategory string         `json:"merchant_category"`
	Country          string         `json:"country"`
	Channel          string         `json:"channel"`
	DeviceID         string         `json:"device_id"`
	IP               string         `json:"ip"`
}

// Limits of the contract.
const (
	maxIDLen       = 128
	maxOptionalLen = 256
	maxAmountLen   = 40 // characters of the amount literal
	maxExponent    = 40 // |exponent| of an amount written in scientific notation
)

// Decoder turns records into payments. It is safe for concurrent use.
type Decoder struct {
	maxBytes   int
	macs       sync.Pool // of hash.Hash keyed with the card key
	currencies []bool    // ISO 4217 codes, indexed by code3
	regions    []bool    // ISO 3166 alpha-2 country codes, indexed by code2
}

// NewDecoder returns a decoder that tokenises card numbers with HMAC-SHA256 under cardKey and
// rejects records larger than maxBytes.
func NewDecoder(cardKey []byte, maxBytes int) *Decoder {
	key := bytes.Clone(cardKey)
	d := &Decoder{
		maxBytes:   maxBytes,
		macs:       sync.Pool{New: func() any { return hmac.New(sha256.New, key) }},
		currencies: make([]bool, 26*26*26),
		regions:    make([]bool, 26*26),
	}
	// The code lists are looked up once here rather than for every payment.
	for i := range d.currencies {
		_, err := currency.ParseISO(string([]byte{'A' + byte(i/676), 'A' + byte(i/26%26), 'A' + byte(i%26)}))
		d.currencies[i] = err == nil
	}
	for i := range d.regions {
		r, err := language.ParseRegion(string([]byte{'A' + byte(i/26), 'A' + byte(i%26)}))
		d.regions[i] = err == nil && r.IsCountry()
	}
	return d
}

// Decode parses and validates one record. Every error it returns matches ErrInvalid and is an
// *Error.
func (d *Decoder) Decode(b []byte) (Payment, error) {
	switch {
	case len(b) == 0:
		return Payment{}, &Error{Code: CodeEmpty, Msg: "record has no value"}
	case len(b) > d.maxBytes:
		return Payment{}, &Error{Code: CodeTooLarge, Msg: fmt.Sprintf("record is %d bytes, the limit is %d", len(b), d.maxBytes)}
	case !utf8.Valid(b):
		return Payment{}, &Error{Code: CodeInvalidUTF8, Msg: "record is not valid UTF-8"}
	}
	if b = bytes.TrimSpace(b); len(b) == 0 || b[0] != '{' {
		return Payment{}, &Error{Code: CodeInvalidJSON, Msg: "not a JSON object"}
	}
	// Field names match case-sensitively, and a name given twice is an error: a record must not
	// mean one thing to us and another to the next reader.
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		var se *json.SemanticError
		if errors.As(err, &se) && se.JSONKind != 0 && len(se.JSONPointer) > 1 && se.JSONPointer.Parent() == "" {
			field := se.JSONPointer.LastToken()
			return Payment{}, invalid(field, "must be a %s, not a JSON %s", fieldKind(field), se.JSONKind)
		}
		msg, _ := RedactPANs([]byte(err.Error())) // the library quotes names and values
		return Payment{}, &Error{Code: CodeInvalidJSON, Msg: "not a valid JSON object: " + string(msg)}
	}
	p := Payment{
		ID:               w.PaymentID,
		Currency:         w.Currency,
		MerchantID:       w.MerchantID,
		MerchantCategory: w.MerchantCategory,
		Country:          w.Country,
		Channel:          w.Channel,
		DeviceID:         w.DeviceID,
		IP:               w.IP,
		raw:              b,
	}
	if err := checkText("payment_id", w.PaymentID, maxIDLen, true); err != nil {
		return Payment{}, err
	}
	if err := d.card(&p, &w); err != nil {
		return Payment{}, err
	}
	amount, err := parseAmount(w.Amount)
	if err != nil {
		return Payment{}, err
	}
	p.Amount = amount
	if err := d.checkCurrency(w.Currency); err != nil {
		return Payment{}, err
	}
	if w.Timestamp == "" {
		return Payment{}, missing("timestamp")
	}
	if p.Time, err = parseTime(w.Timestamp); err != nil {
		return Payment{}, invalid("timestamp", "must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", clip(w.Timestamp))
	}
	for _, f := range [...]struct{ name, v string }{
		{"merchant_id", w.MerchantID}, {"merchant_category", w.MerchantCategory},
		{"channel", w.Channel}, {"device_id", w.DeviceID}, {"ip", w.IP},
	} {
		if err := checkText(f.name, f.v, maxOptionalLen, false); err != nil {
			return Payment{}, err
		}
	}
	if w.Country != "" {
		if !isUpperAlpha(w.Country, 2) || !d.regions[int(w.Country[0]-'A')*26+int(w.Country[1]-'A')] {
			return Payment{}, invalid("country", "must be an ISO 3166 alpha-2 code such as DE, got %q", clip(w.Country))
		}
	}
	return p, nil
}

func (d *Decoder) card(p *Payment, w *wire) error {
	if w.CardNumber != "" {
		if !isPAN(w.CardNumber) {
			// Never echo the number back: it may be a real one with a typo.
			return invalid("card_number", "must be 13 to 19 digits with a valid Luhn check digit")
		}
		p.CardMasked = Mask(w.CardNumber)
		p.hasNumber = true
	}
	switch {
	case w.CardID != "":
		if err := checkText("card_id", w.CardID, maxIDLen, true); err != nil {
			return err
		}
		// A card_id that is, or holds, a card number (also grouped by spaces or dashes) would show
		// it in every decision, review and log line.
		if _, found := RedactPANs([]byte(w.CardID)); found || isPAN(w.CardID) {
			return invalid("card_id", "is or holds a card number: send it as card_number, which is tokenised and masked")
		}
		p.CardID = w.CardID
	case p.hasNumber:
		p.CardID = d.token(w.CardNumber)
	default:
		return &Error{Code: CodeMissingField, Field: "card_id", Msg: "is required unless card_number is given"}
	}
	return nil
}

// token is the card id of a card number: "tok_" and the first 128 bits of HMAC-SHA256 in hex.
func (d *Decoder) token(pan string) string {
	mac := d.macs.Get().(hash.Hash)
	mac.Reset()
	mac.Write([]byte(pan))
	var sum [sha256.Size]byte
	out := mac.Sum(sum[:0])
	d.macs.Put(mac)
	return "tok_" + hex.EncodeToString(out[:16])
}

// Mask shows a card number as its first 6 and last 4 digits with the rest replaced by '*'.
func Mask(pan string) string {
	if len(pan) < 11 {
		return "****"
	}
	b := []byte(pan)
	for i := 6; i < len(b)-4; i++ {
		b[i] = '*'
	}
	return string(b)
}

func isPAN(s string) bool {
	if len(s) < 13 || len(s) > 19 {
		return false
	}
	sum := 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		n := int(c - '0')
		if (len(s)-1-i)%2 == 1 {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return sum%10 == 0
}

// parseAmount accepts a JSON number or a string holding a plain decimal ("12.50"), and requires it
// to be greater than zero. The literal is checked before it is parsed so that no input can make
// the decimal arithmetic expensive (1e999999999).
func parseAmount(raw jsontext.Value) (decimal.Decimal, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return decimal.Decimal{}, missing("amount")
	}
	lit := string(raw)
	quoted := raw[0] == '"'
	if quoted {
		if bytes.IndexByte(raw, '\\') < 0 {
			lit = string(raw[1 : len(raw)-1])
		} else if err := json.Unmarshal(raw, &lit); err != nil {
			return decimal.Decimal{}, invalid("amount", "must be a number or a decimal string")
		}
	} else if raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return decimal.Decimal{}, invalid("amount", "must be a number or a decimal string")
	}
	if len(lit) > maxAmountLen || !isDecimalLiteral(lit, !quoted) {
		return decimal.Decimal{}, invalid("amount", "must be a decimal number such as 12.50, got %q", clip(lit))
	}
	d, err := decimal.NewFromString(lit)
	if err != nil {
		return decimal.Decimal{}, invalid("amount", "must be a decimal number such as 12.50, got %q", clip(lit))
	}
	if d.Sign() <= 0 {
		return decimal.Decimal{}, invalid("amount", "must be greater than 0, got %s", d.String())
	}
	return d, nil
}

// isDecimalLiteral reports whether s is [-]digits[.digits], followed, when exponent is allowed, by
// an exponent of at most maxExponent.
func isDecimalLiteral(s string, exponent bool) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i, n = i+1, n+1
		}
		return n
	}
	if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if exponent && i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		if n := digits(); n == 0 || n > 3 {
			return false
		}
		e := 0
		for _, c := range s[start:i] {
			e = e*10 + int(c-'0')
		}
		if e > maxExponent {
			return false
		}
	}
	return i == len(s)
}

// parseTime reads an RFC 3339 time, which may write its T and Z in lower case.
func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil && strings.ContainsAny(s, "tz") {
		t, err = time.Parse(time.RFC3339Nano, strings.ToUpper(s))
	}
	return t, err
}

func (d *Decoder) checkCurrency(c string) error {
	if c == "" {
		return missing("currency")
	}
	if !isUpperAlpha(c, 3) {
		return invalid("currency", "must be an ISO 4217 alpha-3 code such as EUR, got %q", clip(c))
	}
	if !d.currencies[int(c[0]-'A')*676+int(c[1]-'A')*26+int(c[2]-'A')] {
		return invalid("currency", "%q is not an ISO 4217 currency code", c)
	}
	return nil
}

func checkText(field, v string, maxLen int, required bool) error {
	if v == "" {
		if required {
			return missing(field)
		}
		return nil
	}
	if len(v) > 4*maxLen || utf8.RuneCountInString(v) > maxLen {
		return invalid(field, "must be at most %d characters, got %d", maxLen, utf8.RuneCountInString(v))
	}
	if strings.TrimSpace(v) == "" {
		return invalid(field, "must not be blank")
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return invalid(field, "must hold printable characters only")
		} else if c >= utf8.RuneSelf {
			for _, r := range v[i:] {
				if !unicode.IsPrint(r) {
					return invalid(field, "must hold printable characters only")
				}
			}
			break
		}
	}
	return nil
}

func isUpperAlpha(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < n; i++ {
		if s[i] < 'A' || s[i] > 'Z' {
			return false
		}
	}
	return true
}

func fieldKind(field string) string {
	if field == "amount" {
		return "number or a decimal string"
	}
	return "string"
}

// clip keeps an echoed value short in error messages.
func clip(s string) string {
	const n = 40
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// JSON is the payment as it may be shown and passed on: the record as received, unknown fields
// included, with the card number masked.
//
// Card numbers anywhere else in it, as in an unknown field, are masked too (see RedactJSON).
func (p *Payment) JSON() jsontext.Value {
	out, _ := RedactJSON(p.raw)
	return out
}

// RedactPANs returns b with every card number in it masked as Mask does: a run of 13 to 19
// digits, which may be grouped by single spaces or dashes ("4111 1111 1111 1111"), that passes the
// Luhn check. It is for text that is passed on as it came, such as dead letters and error messages.
// b is not changed; redacted reports whether anything was masked.
//
// It scans again until nothing looks like a card number: the digits a mask keeps, next to a
// group of digits before or after it, could make one.
func RedactPANs(b []byte) (out []byte, redacted bool) {
	out = b
	for {
		found := false
		eachPAN(out, func(start, end int) {
			if !redacted {
				out, redacted = bytes.Clone(b), true
			}
			found = true
			maskRun(out[start:end])
		})
		if !found {
			return out, redacted
		}
	}
}

// eachPAN calls f with the bounds of every card number in b, as RedactPANs finds them.
func eachPAN(b []byte, f func(start, end int)) {
	for i := 0; i < len(b); {
		if !isDigit(b[i]) {
			i++
			continue
		}
		end, next := panAt(b, i)
		if end > 0 {
			f(i, end)
		}
		i = next
	}
}

// RedactJSON masks the card numbers in a valid JSON text and keeps it valid: inside strings as
// RedactPANs does, and a number that is a card number becomes a string of its masked digits.
//
// Like RedactPANs it scans again until nothing looks like a card number.
func RedactJSON(b []byte) (out []byte, redacted bool) {
	out, redacted = redactJSONOnce(b)
	for more := redacted; more; {
		var again []byte
		if again, more = redactJSONOnce(out); more {
			out = again
		}
	}
	return out, redacted
}

func redactJSONOnce(b []byte) (out []byte, redacted bool) {
	from := 0 // b[from:] is still to be copied to out
	inString := false
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case inString && c == '\\':
			if i+1 < len(b) && b[i+1] == 'u' {
				i += 6 // \uXXXX: its hex digits are not part of a run
			} else {
				i += 2
			}
		case c == '"':
			inString = !inString
			i++
		case inString && isDigit(c):
			end, next := panAt(b, i)
			if end > 0 {
				out = append(out, b[from:end]...)
				maskRun(out[len(out)-(end-i):])
				from, redacted = end, true
			}
			i = next
		case !inString && (isDigit(c) || c == '-'):
			end := i
			for end < len(b) && bytes.IndexByte([]byte("0123456789+-.eE"), b[end]) >= 0 {
				end++
			}
			intPart := bytes.TrimPrefix(b[i:end], []byte("-"))
			if k := bytes.IndexAny(intPart, ".eE"); k >= 0 {
				intPart = intPart[:k]
			}
			if isPAN(string(intPart)) {
				out = append(append(append(out, b[from:i]...), '"'), Mask(string(intPart))...)
				out = append(out, '"')
				from, redacted = end, true
			}
			i = end
		default:
			i++
		}
	}
	if !redacted {
		return b, false
	}
	return append(out, b[from:]...), true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// panAt looks for a card number starting at b[i], the first digit of a group: 13 to 19 digits in
// groups joined by single spaces or dashes, ending at a group's end and passing the Luhn check. It
// returns the end of the card number (0 if there is none) and where to look next: after the card
// number, or at the next group.
func panAt(b []byte, i int) (end, next int) {
	var d [19]byte
	n, j := 0, i
	next = -1
	for {
		k := j
		for k < len(b) && isDigit(b[k]) {
			k++
		}
		if next < 0 {
			next = k
		}
		if n+k-j > len(d) {
			return 0, next
		}
		n += copy(d[n:], b[j:k])
		if n >= 13 && isPAN(string(d[:n])) {
			return k, k
		}
		if k+1 < len(b) && (b[k] == ' ' || b[k] == '-') && isDigit(b[k+1]) {
			j = k + 1
			continue
		}
		return 0, next
	}
}

// maskRun masks, in place, the digits of a card number found by panAt but its first 6 and last 4.
func maskRun(run []byte) {
	total := 0
	for _, c := range run {
		if isDigit(c) {
			total++
		}
	}
	seen := 0
	for k, c := range run {
		if isDigit(c) {
			if seen >= 6 && seen < total-4 {
				run[k] = '*'
			}
			seen++
		}
	}
}
