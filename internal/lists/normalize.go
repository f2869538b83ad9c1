package lists

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/language"
)

// Kinds of list: what their values are.
const (
	KindCard     = "card"     // a card token, the card_id that payments and decisions carry
	KindMerchant = "merchant" // a merchant_id
	KindCountry  = "country"  // an ISO 3166 alpha-2 country code
	KindIP       = "ip"       // an IPv4 or IPv6 address
	KindDevice   = "device"   // a device_id
	KindBIN      = "bin"      // a card's bank identification number, 6 to 8 digits
)

// Kinds returns every kind, in a fixed order.
func Kinds() []string {
	return []string{KindCard, KindMerchant, KindCountry, KindIP, KindDevice, KindBIN}
}

// Limits of values, in characters.
const (
	maxCardLen = 128 // as payment_id and card_id
	maxTextLen = 256 // as merchant_id and device_id
)

// expected says, per kind, what a value must be.
func expected(kind string) string {
	switch kind {
	case KindCard:
		return "a card token, the card_id that decisions carry: 1 to 128 printable ASCII characters without spaces, never a card number"
	case KindMerchant:
		return "a merchant_id: 1 to 256 printable characters"
	case KindCountry:
		return "an ISO 3166 alpha-2 country code such as DE"
	case KindIP:
		return "one IPv4 or IPv6 address such as 192.0.2.1 or 2001:db8::1; prefixes (CIDR) are not supported"
	case KindDevice:
		return "a device_id: 1 to 256 printable characters"
	case KindBIN:
		return "a BIN: 6 to 8 digits"
	}
	return "a kind of " + strings.Join(Kinds(), ", ")
}

// Normalize checks that value is one of kind and returns it in the form lists store and payments
// carry: a country in upper case ("de" → "DE"), an IP address as netip.Addr.String gives it (an
// IPv4-mapped IPv6 address as its IPv4 address), other kinds as given. An error wraps
// ErrInvalidValue and says what is wrong and what is expected. A card value is never quoted in
// an error: it may be a card number.
//
//	card     1–128 printable ASCII characters, no spaces; 13 to 19 digits (also with dashes) are
//	         refused: card numbers are never stored, lists hold the card_id decisions carry
//	merchant 1–256 printable characters, not blank (as the payment's merchant_id)
//	country  two letters naming a country (golang.org/x/text/language, the payment decoder's check)
//	ip       an IPv4 or IPv6 address without a zone; a prefix such as 10.0.0.0/8 is not supported
//	device   1–256 printable characters, not blank (as the payment's device_id)
//	bin      6 to 8 digits
func Normalize(kind, value string) (string, error) {
	switch kind {
	case KindCard:
		return normalizeCard(value)
	case KindMerchant, KindDevice:
		return normalizeText(kind, value)
	case KindCountry:
		return normalizeCountry(value)
	case KindIP:
		return normalizeIP(value)
	case KindBIN:
		if n := len(value); n < 6 || n > 8 || !allDigits(value) {
			return "", invalid(kind, "%s is not 6 to 8 digits", clip(value))
		}
		return value, nil
	}
	return "", fmt.Errorf("%w: unknown kind %q (expected %s)", ErrInvalidValue, clip(kind), expected(""))
}

func invalid(kind, format string, args ...any) error {
	return fmt.Errorf("%w for kind %s: %s (expected %s)", ErrInvalidValue, kind, fmt.Sprintf(format, args...), expected(kind))
}

func normalizeCard(v string) (string, error) {
	switch {
	case v == "":
		return "", invalid(KindCard, "the value is empty")
	case len(v) > maxCardLen:
		return "", invalid(KindCard, "the value is %d characters long", len(v))
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c > '~' {
			return "", invalid(KindCard, "the value has a space, a control or a non-ASCII character at byte %d", i)
		}
	}
	if n, ok := cardNumberDigits(v); ok {
		return "", invalid(KindCard, "%d digits look like a card number, and card numbers are never stored", n)
	}
	return v, nil
}

// cardNumberDigits reports whether v is digits, perhaps grouped with dashes, 13 to 19 of them:
// the shape of a card number.
func cardNumberDigits(v string) (int, bool) {
	n := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			n++
		case c == '-':
		default:
			return 0, false
		}
	}
	return n, n >= 13 && n <= 19
}

func normalizeText(kind, v string) (string, error) {
	switch n := utf8.RuneCountInString(v); {
	case !utf8.ValidString(v):
		return "", invalid(kind, "the value is not valid UTF-8")
	case n == 0:
		return "", invalid(kind, "the value is empty")
	case n > maxTextLen:
		return "", invalid(kind, "the value is %d characters long", n)
	case strings.TrimSpace(v) == "":
		return "", invalid(kind, "the value is blank")
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return "", invalid(kind, "the value has a character that is not printable (%U)", r)
		}
	}
	return v, nil
}

func normalizeCountry(v string) (string, error) {
	if len(v) != 2 || !isASCIILetter(v[0]) || !isASCIILetter(v[1]) {
		return "", invalid(KindCountry, "%s is not two letters", clip(v))
	}
	up := strings.ToUpper(v)
	if r, err := language.ParseRegion(up); err != nil || !r.IsCountry() {
		return "", invalid(KindCountry, "%s is not a country code", strconv.Quote(up))
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

// clip quotes a value for a message, cut to 40 characters.
func clip(s string) string {
	if utf8.RuneCountInString(s) > 40 {
		s = string([]rune(s)[:40]) + "…"
	}
	return strconv.Quote(s)
}
