package paygen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// WorldConfig shapes a simulated population of cards and merchants over some days, with
// labelled fraud. The same WorldConfig gives the same payments and labels.
type WorldConfig struct {
	Seed      uint64
	Cards     int
	Merchants int
	Start     time.Time // midnight UTC of the first day
	Days      int
	// Daily chances, per card, that a fraud scenario starts on it (card testing, account
	// takeover, an amount far above its history); CompromisedMerchants is how many merchants a
	// day leak their customers' cards.
	CardTesting, AccountTakeover, AmountAnomaly float64
	CompromisedMerchants                        float64
}

// DefaultWorld is the world `make train` simulates: eight weeks, 10,000 cards, 2,000 merchants.
func DefaultWorld(seed uint64) WorldConfig {
	return WorldConfig{Seed: seed, Cards: 10_000, Merchants: 2_000, Start: time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC),
		Days: 56, CardTesting: 0.00006, AccountTakeover: 0.0001, AmountAnomaly: 0.0001, CompromisedMerchants: 0.12}
}

// Scenarios of labelled fraud.
const (
	ScenarioCardTesting         = "card_testing"         // bursts of small amounts at web shops, then a large one
	ScenarioAccountTakeover     = "account_takeover"     // a new device and country, then high amounts
	ScenarioCompromisedMerchant = "compromised_merchant" // cards seen at a merchant are hit over the next days
	ScenarioAmountAnomaly       = "amount_anomaly"       // one amount far above the card's own history
)

// Label is the truth about one payment, for training and evaluation; it never goes into the
// stream the service scores.
type Label struct {
	PaymentID string    `json:"payment_id"`
	CardID    string    `json:"card_id"`
	Label     string    `json:"label"`              // fraud or legitimate
	Scenario  string    `json:"scenario,omitempty"` // for fraud: which one
	Time      time.Time `json:"timestamp"`
}

// Payment is one generated payment with its label.
type Payment struct {
	Value []byte // the JSON record
	Key   string // the card
	Label Label
}

type card struct {
	id       int
	currency currencyMix
	rate     float64 // payments a day
	median   float64 // amount, in its currency
	spread   float64
	home     string
	devices  []string
	usual    []int // merchants
	channel  string
}

type merchant struct {
	id, mcc, country string
	online           bool
}

type event struct {
	at       time.Time
	card     int
	merchant int
	amount   float64
	country  string
	device   string
	channel  string
	scenario string
}

// World simulates the population and returns its payments in event-time order.
func World(cfg WorldConfig) []Payment {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x3031d))
	merchants := make([]merchant, cfg.Merchants)
	for i := range merchants {
		online := rng.Float64() < 0.3
		merchants[i] = merchant{id: fmt.Sprintf("m-%05d", i), mcc: mccs[rng.IntN(len(mccs))],
			country: countries[rng.IntN(len(countries))], online: online}
	}
	// Merchants are picked unevenly: a few big ones, many small.
	popular := func() int { u := rng.Float64(); return int(float64(cfg.Merchants) * u * u * u) }
	cards := make([]card, cfg.Cards)
	for i := range cards {
		c := card{id: i, currency: pickCurrency(rng), rate: 0.2 + rng.ExpFloat64()*1.2,
			spread: 0.5 + rng.Float64()*0.6, home: countries[rng.IntN(len(countries))]}
		c.median = c.currency.median * math.Exp(rng.NormFloat64()*0.6)
		for range 1 + rng.IntN(2) {
			c.devices = append(c.devices, fmt.Sprintf("dev-%07d-%d", i, len(c.devices)))
		}
		for range 4 + rng.IntN(10) {
			c.usual = append(c.usual, popular())
		}
		c.channel = []string{"pos", "pos", "ecom", "ecom", "moto"}[rng.IntN(5)]
		cards[i] = c
	}

	var events []event
	legit := func(c *card, at time.Time) event {
		m := c.usual[rng.IntN(len(c.usual))]
		if rng.Float64() < 0.1 {
			m = popular()
		}
		ch := c.channel
		if merchants[m].online {
			ch = "ecom"
		} else if rng.Float64() < 0.5 {
			ch = "pos"
		}
		country := c.home
		if rng.Float64() < 0.03 {
			country = countries[rng.IntN(len(countries))] // travel
		}
		return event{at: at, card: c.id, merchant: m, amount: c.median * math.Exp(rng.NormFloat64()*c.spread),
			country: country, device: c.devices[rng.IntN(len(c.devices))], channel: ch}
	}
	for d := range cfg.Days {
		day := cfg.Start.AddDate(0, 0, d)
		weekend := day.Weekday() == time.Saturday || day.Weekday() == time.Sunday
		for i := range cards {
			c := &cards[i]
			rate := c.rate
			if weekend {
				rate *= 0.8
			}
			for range poisson(rng, rate) {
				events = append(events, legit(c, day.Add(timeOfDay(rng))))
			}
			// Fraud starting on this card today.
			switch u := rng.Float64(); {
			case u < cfg.CardTesting:
				at := day.Add(timeOfDay(rng))
				dev := fmt.Sprintf("dev-x%07d-%d", i, d)
				for range 5 + rng.IntN(25) {
					at = at.Add(time.Duration(10+rng.IntN(90)) * time.Second)
					events = append(events, event{at: at, card: i, merchant: onlineMerchant(rng, merchants), amount: 0.5 + rng.Float64()*2.5,
						country: countries[rng.IntN(len(countries))], device: dev, channel: "ecom", scenario: ScenarioCardTesting})
				}
				at = at.Add(time.Duration(1+rng.IntN(30)) * time.Minute)
				events = append(events, event{at: at, card: i, merchant: onlineMerchant(rng, merchants), amount: c.median * (5 + rng.Float64()*20),
					country: countries[rng.IntN(len(countries))], device: dev, channel: "ecom", scenario: ScenarioCardTesting})
			case u < cfg.CardTesting+cfg.AccountTakeover:
				at := day.Add(timeOfDay(rng))
				dev := fmt.Sprintf("dev-t%07d-%d", i, d)
				country := countries[rng.IntN(len(countries))]
				for range 2 + rng.IntN(4) {
					at = at.Add(time.Duration(5+rng.IntN(120)) * time.Minute)
					events = append(events, event{at: at, card: i, merchant: popular(), amount: c.median * (5 + rng.Float64()*20),
						country: country, device: dev, channel: "ecom", scenario: ScenarioAccountTakeover})
				}
			case u < cfg.CardTesting+cfg.AccountTakeover+cfg.AmountAnomaly:
				e := legit(c, day.Add(timeOfDay(rng)))
				e.amount, e.scenario = c.median*(10+rng.Float64()*40), ScenarioAmountAnomaly
				events = append(events, e)
			}
		}
		// Compromised merchants: cards that pay there today are hit over the next days.
		for range poisson(rng, cfg.CompromisedMerchants) {
			m := popular()
			var victims []int
			for _, e := range events[max(0, len(events)-5*cfg.Cards):] {
				if e.merchant == m && e.at.After(day) && e.scenario == "" && rng.Float64() < 0.7 {
					victims = append(victims, e.card)
				}
			}
			for _, v := range victims {
				at := day.Add(time.Duration(24+rng.IntN(24*6)) * time.Hour).Add(timeOfDay(rng) / 24)
				for range 1 + rng.IntN(3) {
					at = at.Add(time.Duration(rng.IntN(180)) * time.Minute)
					events = append(events, event{at: at, card: v, merchant: onlineMerchant(rng, merchants), amount: cards[v].median * (2 + rng.Float64()*10),
						country: countries[rng.IntN(len(countries))], device: cards[v].devices[0], channel: "ecom", scenario: ScenarioCompromisedMerchant})
				}
			}
		}
	}
	end := cfg.Start.AddDate(0, 0, cfg.Days)
	events = slices.DeleteFunc(events, func(e event) bool { return !e.at.Before(end) })
	slices.SortStableFunc(events, func(a, b event) int { return a.at.Compare(b.at) })

	out := make([]Payment, len(events))
	for n, e := range events {
		c := &cards[e.card]
		m := &merchants[e.merchant]
		w := Wire{
			PaymentID:        fmt.Sprintf("pay-%d-%09d", cfg.Seed, n+1),
			CardID:           cardID(e.card),
			Amount:           strconv.FormatFloat(max(e.amount, math.Pow10(-c.currency.places)), 'f', c.currency.places, 64),
			Currency:         c.currency.code,
			Timestamp:        e.at.UTC().Format(time.RFC3339),
			MerchantID:       m.id,
			MerchantCategory: m.mcc,
			Country:          e.country,
			Channel:          e.channel,
			DeviceID:         e.device,
		}
		b, _ := json.Marshal(w)
		label := Label{PaymentID: w.PaymentID, CardID: w.CardID, Label: "legitimate", Time: e.at}
		if e.scenario != "" {
			label.Label, label.Scenario = "fraud", e.scenario
		}
		out[n] = Payment{Value: b, Key: w.CardID, Label: label}
	}
	return out
}

// timeOfDay draws a time of day with more payments by day than by night.
func timeOfDay(rng *rand.Rand) time.Duration {
	for {
		h := rng.Float64() * 24
		// Busiest around 13:00 and 19:00, quiet from 1:00 to 6:00.
		w := 0.15 + math.Exp(-math.Pow(h-13, 2)/18) + 0.8*math.Exp(-math.Pow(h-19, 2)/8)
		if rng.Float64()*2 < w {
			return time.Duration(h * float64(time.Hour))
		}
	}
}

func onlineMerchant(rng *rand.Rand, merchants []merchant) int {
	for {
		if i := rng.IntN(len(merchants)); merchants[i].online {
			return i
		}
	}
}

func pickCurrency(rng *rand.Rand) currencyMix {
	u := rng.Float64()
	for _, c := range currencies {
		if u < c.share {
			return c
		}
		u -= c.share
	}
	return currencies[0]
}

// poisson draws from a Poisson distribution of mean lambda (Knuth's method: lambda is small).
func poisson(rng *rand.Rand, lambda float64) int {
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
