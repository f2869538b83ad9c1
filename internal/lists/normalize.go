package lists

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"

	"github.com/paysentry/fraud-detector/internal/payment"
)

// Kinds of list: what their values are.
const (
	KindCard     = "card"     // a card token, the card_id that payments and decisions carry
	KindMerchant = "merchant" // a merchant_id
	KindCountry  = "country"  // an ISO 3166 alpha-2 country code
	KindIP       = "ip"       // an IPv4 or IPv6 address
	KindDevice   = "device"   // a device_id
	KindBIN      = "bin"      // a card's bank identification number: the first 6 digits of its number
)

// Kinds returns every kind, in a fixed order.
func Kinds() []string {
	return []string{KindCard, KindMerchant, KindCountry, KindIP, KindDevice, KindBIN}
}

// Limits of values, in characters: the payment decoder's for the fields they match.
const (
	maxCardLen = 128 // as card_id (payment.maxIDLen)
	maxTextLen = 256 // as merchant_id and device_id (payment.maxOptionalLen)
	binLen     = 6   // payment.bin: the first 6 digits of the masked card number (rules.bin)
)

// expected says, per kind, what a value must be.
func expected(kind string) string {
	switch kind {
	case KindCard:
		return "a card token, the card_id that payments carry: 1 to 128 printable characters, never a card number"
	case KindMerchant:
		return "a merchant_id: 1 to 256 printable characters"
	case KindCountry:
		return "an ISO 3166 alpha-2 country code such as DE"
	case KindIP:
		return "one IPv4 or IPv6 address such as 192.0.2.1 or 2001:db8::1; prefixes (CIDR) are not supported"
	case KindDevice:
		return "a device_id: 1 to 256 printable characters"
	case KindBIN:
		return "a BIN: 6 digits (the first 6 of the card number)"
	}
	return "a kind of " + strings.Join(Kinds(), ", ")
}

// Normalize checks that value is one of kind and returns it in the form lists store and payments
// carry: a country in upper case ("de" → "DE"), an IP address as netip.Addr.String gives it (an
// IPv4-mapped IPv6 address as its IPv4 address), other kinds as given. An error wraps
// ErrInvalidValue and says what is wrong and what is expected.
//
// No value of any kind may hold a card number as payment.RedactPANs finds one (13 to 19 digits
// passing the Luhn check, perhaps grouped by spaces or dashes): lists store their values, the
// audit trail and the logs repeat them, and card numbers are never stored. Such a value is
// refused without being quoted, and no error quotes a card number: a value that is quoted is
// cut and then passed through payment.RedactPANs.
//
//	card     as the payment decoder takes a card_id: 1–128 printable characters (spaces and
//	         non-ASCII letters too), not blank; a card number is refused
//	merchant 1–256 printable characters, not blank (as the payment's merchant_id)
//	country  two letters naming a country (golang.org/x/text/language, the payment decoder's check)
//	ip       an IPv4 or IPv6 address without a zone; a prefix such as 10.0.0.0/8 is not supported
//	device   1–256 printable characters, not blank (as the payment's device_id)
//	bin      exactly 6 digits: payment.bin, which rules compare, is the first 6 digits of the
//	         card number, so a longer BIN could never match
func Normalize(kind, value string) (string, error) {
	if !slices.Contains(Kinds(), kind) {
		return "", fmt.Errorf("%w: unknown kind %s (expected %s)", ErrInvalidValue, clip(kind), expected(""))
	}
	if _, found := payment.RedactPANs([]byte(value)); found {
		return "", invalid(kind, "the value holds what looks like a card number; lists never store one")
	}
	switch kind {
	case KindCard:
		return value, checkText(kind, value, maxCardLen)
	case KindMerchant, KindDevice:
		return value, checkText(kind, value, maxTextLen)
	case KindCountry:
		return normalizeCountry(value)
	case KindIP:
		return normalizeIP(value)
	default: // KindBIN
		if len(value) != binLen || !allDigits(value) {
			return "", invalid(kind, "%s is not 6 digits", clip(value))
		}
		return value, nil
	}
}

// invalid makes an error of ErrInvalidValue for kind.
func invalid(kind, format string, args ...any) error {
	return fmt.Errorf("%w for kind %s: %s (expected %s)", ErrInvalidValue, kind, fmt.Sprintf(format, args...), expected(kind))
}

// checkText is the payment decoder's check of its text fields (payment.checkText, which card_id,
// merchant_id and device_id pass): valid UTF-8 (the decoder has checked the whole record), 1 to
// maxLen characters, not blank, every character printable (unicode.IsPrint: an ASCII space is,
// a control, U+00A0 or U+2028 is not). The decoder's other refusal of a card_id, a card number,
// Normalize makes for every kind. Keep the two in step; the value is never quoted.
func checkText(kind, v string, maxLen int) error {
	switch n := utf8.RuneCountInString(v); {
	case !utf8.ValidString(v):
		return invalid(kind, "the value is not valid UTF-8")
	case n == 0:
		return invalid(kind, "the value is empty")
	case n > maxLen:
		return invalid(kind, "the value is %d characters long", n)
	case strings.TrimSpace(v) == "":
		return invalid(kind, "the value is blank")
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return invalid(kind, "the value has a character that is not printable (%U)", r)
		}
	}
	return nil
}

func normalizeCountry(v string) (string, error) {
	if len(v) != 2 || !isASCIILetter(v[0]) || !isASCIILetter(v[1]) {
		return "", invalid(KindCountry, "%s is not two letters", clip(v))
	}
	up := strings.ToUpper(v)
	if r, err := language.ParseRegion(up); err != nil || !r.IsCountry() {
		return "", invalid(KindCountry, "%s is not a country code", clip(up))
	}
	return up, nil
}

func normalizeIP(v string) (string, error) {
	if strings.Contains(v, "/") {
		return "", invalid(KindIP, "%s is a prefix; list the addresses one by one", clip(v))
	}
	a, err := netip.ParseAddr(v)
	switch {
	case err != nil:
		return "", invalid(KindIP, "%s is not an IP address", clip(v))
	case a.Zone() != "":
		return "", invalid(KindIP, "%s has a zone", clip(v))
	}
	return a.Unmap().String(), nil
}

// ipKey is the form an IP list stores for an address as a payment carries it, and whether it
// is an address at all. A zone is left out: a list names the address.
func ipKey(v string) (string, bool) {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return "", false
	}
	return a.WithZone("").Unmap().String(), true
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// clip quotes a value for a message, cut to 40 characters, with any card number in what is left
// masked (payment.RedactPANs): cutting a longer run of digits can leave one.
func clip(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		s = string([]rune(s)[:40]) + "…"
	}
	q, _ := payment.RedactPANs([]byte(strconv.Quote(s)))
	return string(q)
}
