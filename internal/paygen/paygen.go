// Package paygen makes a synthetic, reproducible stream of payments: many cards with amounts
// drawn per currency, some cards that burst, and, on request, a share of malformed records.
package paygen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"time"
)

// Config shapes the stream. The same Config and Seed give the same records.
type Config struct {
	Seed  uint64
	Cards int // distinct cards
	// Start is the event time of the first payment; Interval the mean event-time gap between
	// payments (exponentially distributed). Clock, if set, replaces both with the wall clock.
	Start    time.Time
	Interval time.Duration
	Clock    func() time.Time
	// BurstShare is the share of payments that start a burst: 11 to 20 payments of one card
	// within a few minutes.
	BurstShare float64
	// CardNumberShare is the share of payments that carry a card_number instead of a card_id.
	CardNumberShare float64
	// MalformedShare is the share of records that are not valid payments.
	MalformedShare float64
}

// Record is one generated record.
type Record struct {
	Key   string // the card, as the payment system would key it
	Value []byte
	// Amount and Currency as generated; Valid is false for malformed records.
	ID       string
	Amount   string
	Currency string
	Valid    bool
	Kind     string // for malformed records, what is wrong
}

// Generator makes records one at a time. It is not safe for concurrent use.
type Generator struct {
	cfg   Config
	rng   *rand.Rand
	n     int64
	now   time.Time
	burst []int // cards with payments of a burst still to come
}

// New returns a generator for cfg.
func New(cfg Config) *Generator {
	if cfg.Cards <= 0 {
		cfg.Cards = 10_000
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Millisecond
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	}
	return &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x5eed)), now: cfg.Start}
}

// currencyMix is a currency with its share of payments and a typical (median) amount.
type currencyMix struct {
	code   string
	share  float64
	median float64
	places int
}

var currencies = []currencyMix{
	{"EUR", 0.42, 32, 2}, {"USD", 0.30, 35, 2}, {"GBP", 0.14, 28, 2},
	{"CHF", 0.05, 40, 2}, {"JPY", 0.05, 4200, 0}, {"SEK", 0.04, 300, 2},
}

var (
	countries = []string{"DE", "FR", "NL", "ES", "IT", "GB", "US", "CH", "SE", "JP", "PL", "AT"}
	channels  = []string{"pos", "ecom", "ecom", "pos", "atm", "moto"}
	mccs      = []string{"5411", "5812", "5999", "4111", "5732", "7011", "5541", "5311", "4814", "6011"}
)

// Wire is a payment as the payments topic carries it, in JSON.
type Wire struct {
	PaymentID        string `json:"payment_id"`
	CardID           string `json:"card_id,omitempty"`
	CardNumber       string `json:"card_number,omitempty"`
	Amount           string `json:"amount"`
	Currency         string `json:"currency"`
	Timestamp        string `json:"timestamp"`
	MerchantID       string `json:"merchant_id"`
	MerchantCategory string `json:"merchant_category"`
	Country          string `json:"country"`
	Channel          string `json:"channel"`
	DeviceID         string `json:"device_id"`
}

// Next returns the next record.
func (g *Generator) Next() Record {
	g.n++
	if g.cfg.MalformedShare > 0 && g.rng.Float64() < g.cfg.MalformedShare {
		return g.malformed()
	}
	if g.cfg.Clock != nil {
		g.now = g.cfg.Clock()
	} else {
		g.now = g.now.Add(time.Duration(g.rng.ExpFloat64() * float64(g.cfg.Interval)))
	}
	var card int
	switch {
	case len(g.burst) > 0 && g.rng.IntN(4) == 0:
		card, g.burst = g.burst[0], g.burst[1:]
	case g.rng.Float64() < g.cfg.BurstShare:
		card = g.rng.IntN(g.cfg.Cards)
		for range 10 + g.rng.IntN(10) {
			g.burst = append(g.burst, card)
		}
	default:
		card = g.cardZipf()
	}
	cur := g.currency()
	amount := cur.median * math.Exp(g.rng.NormFloat64()*0.9)
	amount = max(amount, math.Pow10(-cur.places))
	w := Wire{
		PaymentID:        fmt.Sprintf("pay-%d-%09d", g.cfg.Seed, g.n),
		Amount:           strconv.FormatFloat(amount, 'f', cur.places, 64),
		Currency:         cur.code,
		Timestamp:        g.now.UTC().Format(time.RFC3339Nano),
		MerchantID:       fmt.Sprintf("m-%05d", g.rng.IntN(5000)),
		MerchantCategory: mccs[g.rng.IntN(len(mccs))],
		Country:          countries[(card+g.rng.IntN(2))%len(countries)],
		Channel:          channels[g.rng.IntN(len(channels))],
		DeviceID:         fmt.Sprintf("dev-%07d", card*3+g.rng.IntN(3)),
	}
	key := cardID(card)
	if g.rng.Float64() < g.cfg.CardNumberShare {
		w.CardNumber = PAN(card)
	} else {
		w.CardID = key
	}
	b, _ := json.Marshal(w)
	return Record{Key: key, Value: b, ID: w.PaymentID, Amount: w.Amount, Currency: w.Currency, Valid: true}
}

func cardID(card int) string { return fmt.Sprintf("card-%07d", card) }

// cardZipf picks cards unevenly: a few are used much more than most, as in life.
func (g *Generator) cardZipf() int {
	u := g.rng.Float64()
	return int(float64(g.cfg.Cards) * u * u)
}

func (g *Generator) currency() currencyMix {
	u := g.rng.Float64()
	for _, c := range currencies {
		if u < c.share {
			return c
		}
		u -= c.share
	}
	return currencies[0]
}

// PAN returns a Luhn-valid 16-digit test card number for a card.
func PAN(card int) string {
	body := fmt.Sprintf("400000%09d", card)
	sum := 0
	for i := len(body) - 1; i >= 0; i-- {
		n := int(body[i] - '0')
		if (len(body)-1-i)%2 == 0 {
			if n *= 2; n > 9 {
				n -= 9
			}
		}
		sum += n
	}
	return body + strconv.Itoa((10-sum%10)%10)
}

// Malformed record kinds.
var malformedKinds = []string{"bad_json", "missing_field", "zero_amount", "negative_amount", "bad_currency", "bad_timestamp", "invalid_utf8", "empty"}

func (g *Generator) malformed() Record {
	kind := malformedKinds[g.rng.IntN(len(malformedKinds))]
	id := fmt.Sprintf("bad-%d-%09d", g.cfg.Seed, g.n)
	ts := g.now.UTC().Format(time.RFC3339)
	var v string
	switch kind {
	case "bad_json":
		v = `{"payment_id":"` + id + `","amount":`
	case "missing_field":
		v = `{"payment_id":"` + id + `","card_id":"card-1","currency":"EUR","timestamp":"` + ts + `"}`
	case "zero_amount":
		v = `{"payment_id":"` + id + `","card_id":"card-1","amount":"0.00","currency":"EUR","timestamp":"` + ts + `"}`
	case "negative_amount":
		v = `{"payment_id":"` + id + `","card_id":"card-1","amount":-12.5,"currency":"EUR","timestamp":"` + ts + `"}`
	case "bad_currency":
		v = `{"payment_id":"` + id + `","card_id":"card-1","amount":"12.50","currency":"EURO","timestamp":"` + ts + `"}`
	case "bad_timestamp":
		v = `{"payment_id":"` + id + `","card_id":"card-1","amount":"12.50","currency":"EUR","timestamp":"yesterday"}`
	case "invalid_utf8":
		v = `{"payment_id":"` + id + "\xff\xfe" + `","card_id":"card-1","amount":"12.50","currency":"EUR","timestamp":"` + ts + `"}`
	case "empty":
		v = ""
	}
	return Record{Key: "bad", Value: []byte(v), ID: id, Kind: kind}
}
