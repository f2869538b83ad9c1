package window

import (
	"encoding/binary"

	"github.com/shopspring/decimal"
)

// A card's history is a string of fixed-size entries, one per payment counted, in the order they
// were counted (arrival order). Each entry, big-endian:
//
//	0..4    event time, Unix seconds
//	4..8    amount in hundredths of the currency unit, saturated at 2^32-1
//	8..14   the payment id's tag: first 6 bytes of SHA-256(payment_id), the dedupe marker
//	14..16  country (ISO 3166 alpha-2), or two zero bytes
//	16..20  merchant tag: FNV-1a of merchant_id (never zero), or zero
//	20..24  device tag: FNV-1a of device_id (never zero), or zero
const entrySize = 24

// Horizons of the aggregates.
const (
	hour  = 3600
	day   = 24 * hour
	week  = 7 * day
	month = 30 * day
)

// Aggregates describe a card's and a merchant's history before a payment, for the model.
//
// A card's aggregates are over the card's earlier payments: those counted before this one (in
// arrival order) whose event time is not after this one's and within the horizon, (t-h, t]. They
// come from every payment's own entry, so the edges are exact to the second (event times are kept
// in whole seconds, amounts in hundredths), up to Config.MaxPaymentsPerCard entries a card. A
// payment not counted (late, ahead) gets the aggregates of all the card's payments counted so far.
// Currencies are not converted: sums add the amounts as they are.
//
// A merchant's counts are of whole days before the day of the payment's event time (UTC): 1d is
// the day before, 7d the 7 days before, 30d the 30 before. They are a snapshot per merchant and
// day, taken by the first payment of that day at the merchant from the counts folded by then,
// and every later payment of that day (a redelivered one too) gets the same snapshot, whatever
// was folded or labelled in between.
type Aggregates struct {
	Count1h, Count24h, Count7d, Count30d int64
	Sum1h, Sum24h, Sum7d, Sum30d         float64
	// SincePrevious is the seconds from the card's previous payment to this one, -1 if none.
	SincePrevious int64
	// New*: the payment has the field and the card had no payment with that value in 30 days.
	NewCountry, NewMerchant, NewDevice                 bool
	MerchantCount1d, MerchantCount7d, MerchantCount30d int64
	// The merchant's payments of the 30 days before that analysts had labelled fraud when the
	// snapshot was taken (see Store.Label).
	MerchantFraud30d int64
	MerchantDelayed
}

// MerchantDelayed are a merchant's payments and those labelled fraud over the 1, 7 and 30 days
// before the LabelDelayDays days before the payment's day (for a payment on day d: d-8, d-14 to
// d-8, d-37 to d-8), when the labels of those days are in: the merchant's risk as a fraud rate,
// as the Fraud Detection Handbook computes a terminal's. Of the same snapshot as the other merchant
// counts.
type MerchantDelayed struct {
	Count, Fraud [3]int64
}

// tag4 is the 4-byte tag of an optional field, FNV-1a: zero when the field is absent, never zero
// when present. Tags only tell one card's merchants (or devices) apart, so 32 bits are plenty.
func tag4(s string) uint32 {
	if s == "" {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return max(h, 1)
}

var (
	hundred   = decimal.NewFromInt(100)
	maxAmount = decimal.NewFromInt(1<<32 - 1)
	pow10     = [...]int64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000}
)

// hundredths is an amount in hundredths of its unit, rounded half away from zero, within a uint32.
func hundredths(a decimal.Decimal) uint32 {
	// The common case without big-number arithmetic: a coefficient of up to 10 digits (times
	// 100 fits easily) and an exponent from -9 to 0.
	if exp := a.Exponent(); exp <= 0 && exp >= -9 && a.Sign() > 0 && a.NumDigits() <= 10 {
		c := a.CoefficientInt64()
		var h int64
		if exp >= -2 {
			h = c * pow10[exp+2]
		} else {
			div := pow10[-exp-2]
			h = (c + div/2) / div
		}
		return uint32(min(h, 1<<32-1))
	}
	h := a.Mul(hundred).Round(0)
	switch {
	case h.Sign() <= 0:
		return 0
	case h.Cmp(maxAmount) >= 0:
		return 1<<32 - 1
	}
	return uint32(h.IntPart())
}

// encode writes an event's history entry into b; pid is the payment id's hash.
func encode(b []byte, e *Event, pid *[32]byte) {
	binary.BigEndian.PutUint32(b[0:], uint32(max(e.Time.Unix(), 0)))
	binary.BigEndian.PutUint32(b[4:], hundredths(e.Amount))
	copy(b[8:14], pid[:6])
	b[14], b[15] = 0, 0
	if len(e.Country) == 2 {
		copy(b[14:16], e.Country)
	}
	binary.BigEndian.PutUint32(b[16:], tag4(e.Merchant))
	binary.BigEndian.PutUint32(b[20:], tag4(e.Device))
}

// read finds an entry in a card's history and sums up what came before it. own is the payment's
// entry; length the window length in seconds; entries older than cutoff are left out. found reports whether the
// payment is in the history (it was counted); count is then its window count as first counted.
func read(history string, own []byte, length, cutoff int64) (agg Aggregates, count int64, found bool) {
	t := int64(binary.BigEndian.Uint32(own[0:]))
	win := t / length
	pid := string(own[8:14])
	country, merchant, device := string(own[14:16]), binary.BigEndian.Uint32(own[16:]), binary.BigEndian.Uint32(own[20:])
	var sums [4]int64 // hundredths
	prev := int64(-1)
	seenCountry, seenMerchant, seenDevice := false, false, false
	for off := 0; off+entrySize <= len(history); off += entrySize {
		e := history[off : off+entrySize]
		et := int64(u32(e, 0))
		if et < cutoff {
			continue // past keeping: not yet dropped, but as good as
		}
		if e[8:14] == pid {
			found = true
			break
		}
		if et/length == win {
			count++
		}
		if et > t {
			continue
		}
		age := t - et
		if age >= month {
			continue
		}
		amount := int64(u32(e, 4))
		agg.Count30d++
		sums[3] += amount
		if age < week {
			agg.Count7d++
			sums[2] += amount
		}
		if age < day {
			agg.Count24h++
			sums[1] += amount
		}
		if age < hour {
			agg.Count1h++
			sums[0] += amount
		}
		prev = max(prev, et)
		seenCountry = seenCountry || e[14:16] == country
		seenMerchant = seenMerchant || u32(e, 16) == merchant
		seenDevice = seenDevice || u32(e, 20) == device
	}
	agg.Sum1h, agg.Sum24h, agg.Sum7d, agg.Sum30d = float64(sums[0])/100, float64(sums[1])/100, float64(sums[2])/100, float64(sums[3])/100
	agg.SincePrevious = -1
	if prev >= 0 {
		agg.SincePrevious = t - prev
	}
	agg.NewCountry = country != "\x00\x00" && !seenCountry
	agg.NewMerchant = merchant != 0 && !seenMerchant
	agg.NewDevice = device != 0 && !seenDevice
	if found {
		count++
	}
	return agg, count, found
}

// u32 reads a big-endian uint32 at s[i:].
func u32(s string, i int) uint32 {
	return uint32(s[i])<<24 | uint32(s[i+1])<<16 | uint32(s[i+2])<<8 | uint32(s[i+3])
}
