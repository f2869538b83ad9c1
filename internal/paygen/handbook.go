package paygen

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// HandbookConfig shapes the simulated world of the Fraud Detection Handbook (Le Borgne et al.,
// "Reproducible Machine Learning for Credit Card Fraud Detection — Practical Handbook", 2022,
// chapter 3), written here from the book's description: customers and terminals on a 100×100
// square, each customer paying at the terminals near it, and three fraud scenarios. The same
// HandbookConfig gives the same payments and labels.
type HandbookConfig struct {
	Seed      uint64
	Customers int
	Terminals int
	Start     time.Time // midnight UTC of the first day
	Days      int
	// Radius: a customer pays at the terminals closer than this.
	Radius float64
	// Scenario 1: a payment above AmountOver is fraud.
	AmountOver float64
	// Scenario 2: each day, CompromisedTerminals terminals are drawn; every payment at them over
	// TerminalDays days (the day of the draw included) is fraud.
	CompromisedTerminals, TerminalDays int
	// Scenario 3: each day, CompromisedCustomers customers are drawn; over CustomerDays days (the
	// day of the draw included), a third of their payments, drawn at random, have their amount
	// multiplied by CustomerAmountFactor and are fraud.
	CompromisedCustomers, CustomerDays int
	CustomerAmountFactor               int64
}

// DefaultHandbook is the book's world: 5,000 customers, 10,000 terminals, 183 days from
// 2018-04-01, about 1.75 million payments of which about 0.8 % are fraud.
func DefaultHandbook(seed uint64) HandbookConfig {
	return HandbookConfig{Seed: seed, Customers: 5_000, Terminals: 10_000, Start: time.Date(2018, 4, 1, 0, 0, 0, 0, time.UTC),
		Days: 183, Radius: 5, AmountOver: 220, CompromisedTerminals: 2, TerminalDays: 28,
		CompromisedCustomers: 3, CustomerDays: 14, CustomerAmountFactor: 5}
}

// The handbook's fraud scenarios, in the order they are applied: a later one names a payment
// that an earlier one made fraud.
const (
	ScenarioAmountOver220       = "amount_over_220"
	ScenarioCompromisedTerminal = "compromised_terminal"
	ScenarioCompromisedCustomer = "compromised_customer"
)

var handbookScenarios = [...]string{"", ScenarioAmountOver220, ScenarioCompromisedTerminal, ScenarioCompromisedCustomer}

// hbPayment is one payment of the handbook's world before it is written.
type hbPayment struct {
	sec      int64 // since the start
	customer int32
	terminal int32
	cents    int64
	scenario uint8 // index in handbookScenarios
}

// hbDraw is a terminal or a customer compromised from a day on.
type hbDraw struct{ day, id int }

type handbookWorld struct {
	payments  []hbPayment // in event-time order
	terminals []hbDraw    // scenario 2's draws
	customers []hbDraw    // scenario 3's draws
}

// Handbook simulates the handbook's world and returns its payments in event-time order. The
// records carry payment_id, card_id (the customer), amount (EUR, two decimals), timestamp (to
// the second) and merchant_id (the terminal): the book has no country, channel, device or
// merchant category.
func Handbook(cfg HandbookConfig) []Payment {
	return handbookPayments(cfg, simulateHandbook(cfg))
}

// handbookPayments writes the payments of a simulated world.
func handbookPayments(cfg HandbookConfig, w handbookWorld) []Payment {
	cards := make([]string, cfg.Customers)
	for i := range cards {
		cards[i] = cardID(i)
	}
	terminals := make([]string, cfg.Terminals)
	for i := range terminals {
		terminals[i] = terminalID(i)
	}
	type record struct {
		PaymentID  string `json:"payment_id"`
		CardID     string `json:"card_id"`
		Amount     string `json:"amount"`
		Currency   string `json:"currency"`
		Timestamp  string `json:"timestamp"`
		MerchantID string `json:"merchant_id"`
	}
	out := make([]Payment, len(w.payments))
	for n, p := range w.payments {
		at := cfg.Start.Add(time.Duration(p.sec) * time.Second).UTC()
		r := record{
			PaymentID:  fmt.Sprintf("hb-%d-%08d", cfg.Seed, n+1),
			CardID:     cards[p.customer],
			Amount:     strconv.FormatFloat(float64(p.cents)/100, 'f', 2, 64),
			Currency:   "EUR",
			Timestamp:  at.Format(time.RFC3339),
			MerchantID: terminals[p.terminal],
		}
		b, _ := json.Marshal(r)
		label := Label{PaymentID: r.PaymentID, CardID: r.CardID, Label: "legitimate", Time: at}
		if p.scenario != 0 {
			label.Label, label.Scenario = "fraud", handbookScenarios[p.scenario]
		}
		out[n] = Payment{Value: b, Key: r.CardID, Label: label}
	}
	return out
}

func terminalID(terminal int) string { return fmt.Sprintf("term-%05d", terminal) }

// simulateHandbook draws the profiles, the legitimate payments day by day, then applies the
// three fraud scenarios in order.
func simulateHandbook(cfg HandbookConfig) handbookWorld {
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x4b0b))
	type customer struct {
		x, y, mean, std, rate float64
		terminals             []int32
	}
	customers := make([]customer, cfg.Customers)
	for i := range customers {
		c := &customers[i]
		c.x, c.y = rng.Float64()*100, rng.Float64()*100
		c.mean = 5 + rng.Float64()*95
		c.std = c.mean / 2
		c.rate = rng.Float64() * 4
	}
	tx, ty := make([]float64, cfg.Terminals), make([]float64, cfg.Terminals)
	for i := range tx {
		tx[i], ty[i] = rng.Float64()*100, rng.Float64()*100
	}
	// A customer's terminals, in the order of their ids, found through a grid of cells as wide
	// as the radius: only the 3×3 cells around the customer's can hold one.
	cells := max(1, int(100/cfg.Radius))
	cell := func(v float64) int { return min(cells-1, int(v/100*float64(cells))) }
	grid := make([][]int32, cells*cells)
	for j := range tx {
		k := cell(tx[j])*cells + cell(ty[j])
		grid[k] = append(grid[k], int32(j))
	}
	r2 := cfg.Radius * cfg.Radius
	for i := range customers {
		c := &customers[i]
		cx, cy := cell(c.x), cell(c.y)
		for gx := max(0, cx-1); gx <= min(cells-1, cx+1); gx++ {
			for gy := max(0, cy-1); gy <= min(cells-1, cy+1); gy++ {
				for _, j := range grid[gx*cells+gy] {
					if dx, dy := c.x-tx[j], c.y-ty[j]; dx*dx+dy*dy < r2 {
						c.terminals = append(c.terminals, j)
					}
				}
			}
		}
		slices.Sort(c.terminals)
	}

	var w handbookWorld
	for d := range cfg.Days {
		first := len(w.payments)
		for i := range customers {
			c := &customers[i]
			for range poisson(rng, c.rate) {
				t := int64(43_200 + 20_000*rng.NormFloat64()) // truncated, as int() does
				if t <= 0 || t >= 86_400 {
					continue
				}
				amount := c.mean + c.std*rng.NormFloat64()
				if amount < 0 {
					amount = rng.Float64() * 2 * c.mean
				}
				if len(c.terminals) == 0 {
					continue
				}
				term := c.terminals[rng.IntN(len(c.terminals))]
				// The contract wants an amount above zero: one that rounds to 0.00 is 0.01.
				cents := max(int64(math.Round(amount*100)), 1)
				w.payments = append(w.payments, hbPayment{sec: int64(d)*86_400 + t, customer: int32(i), terminal: term, cents: cents})
			}
		}
		slices.SortStableFunc(w.payments[first:], func(a, b hbPayment) int { return cmp.Compare(a.sec, b.sec) })
	}

	// Scenario 1: large amounts.
	over := int64(math.Round(cfg.AmountOver * 100))
	for i := range w.payments {
		if w.payments[i].cents > over {
			w.payments[i].scenario = 1
		}
	}
	// Scenario 2: compromised terminals.
	compromised := make([][]int, cfg.Terminals) // the days of each terminal's draws
	for d := range cfg.Days {
		for _, t := range distinct(rng, cfg.Terminals, cfg.CompromisedTerminals) {
			w.terminals = append(w.terminals, hbDraw{day: d, id: t})
			compromised[t] = append(compromised[t], d)
		}
	}
	for i := range w.payments {
		p := &w.payments[i]
		day := int(p.sec / 86_400)
		for _, from := range compromised[p.terminal] {
			if from <= day && day < from+cfg.TerminalDays {
				p.scenario = 2
				break
			}
		}
	}
	// Scenario 3: compromised customers.
	byCustomer := make([][]int, cfg.Customers) // indexes of payments, in event-time order
	for i, p := range w.payments {
		byCustomer[p.customer] = append(byCustomer[p.customer], i)
	}
	var window []int
	for d := range cfg.Days {
		from, to := int64(d)*86_400, int64(d+cfg.CustomerDays)*86_400
		for _, c := range distinct(rng, cfg.Customers, cfg.CompromisedCustomers) {
			w.customers = append(w.customers, hbDraw{day: d, id: c})
			window = window[:0]
			for _, i := range byCustomer[c] {
				if s := w.payments[i].sec; from <= s && s < to {
					window = append(window, i)
				}
			}
			// A third of them, drawn without replacement (a partial Fisher–Yates shuffle).
			k := len(window) / 3
			for j := range k {
				r := j + rng.IntN(len(window)-j)
				window[j], window[r] = window[r], window[j]
				p := &w.payments[window[j]]
				p.cents *= cfg.CustomerAmountFactor
				p.scenario = 3
			}
		}
	}
	return w
}

// distinct draws k distinct integers from [0, n), or all of them if k >= n.
func distinct(rng *rand.Rand, n, k int) []int {
	if k >= n {
		return rng.Perm(n)
	}
	out := make([]int, 0, k)
	for len(out) < k {
		if v := rng.IntN(n); !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// Worlds that paygen simulates.
const (
	WorldProject  = "project"  // World: the project's cards and merchants
	WorldHandbook = "handbook" // Handbook: the Fraud Detection Handbook's customers and terminals
)

// WorldFlag is paygen's -world flag: a flag.Value that is also a boolean flag, so that -world
// alone (or -world=true) names the project's world, -world=handbook the handbook's, and
// -world=false none. Name is "" for none.
type WorldFlag struct{ Name string }

func (w *WorldFlag) String() string {
	if w == nil {
		return ""
	}
	return w.Name
}

// Set takes handbook, project, or a boolean as strconv.ParseBool reads it.
func (w *WorldFlag) Set(s string) error {
	switch s {
	case WorldProject, WorldHandbook:
		w.Name = s
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want %s, %s, true or false, got %q", WorldHandbook, WorldProject, s)
	}
	w.Name = ""
	if b {
		w.Name = WorldProject
	}
	return nil
}

// IsBoolFlag lets -world stand alone on the command line.
func (w *WorldFlag) IsBoolFlag() bool { return true }
