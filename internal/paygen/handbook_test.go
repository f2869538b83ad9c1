package paygen

import (
	"bytes"
	"flag"
	"io"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/payment"
)

func TestHandbookReproducible(t *testing.T) {
	cfg := DefaultHandbook(3)
	cfg.Customers, cfg.Terminals, cfg.Days = 500, 1_000, 20
	a, b := Handbook(cfg), Handbook(cfg)
	if len(a) == 0 || len(a) != len(b) {
		t.Fatalf("same seed: %d and %d payments", len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].Value, b[i].Value) || a[i].Key != b[i].Key || a[i].Label != b[i].Label {
			t.Fatalf("same seed, payment %d differs:\n%s %+v\n%s %+v", i, a[i].Value, a[i].Label, b[i].Value, b[i].Label)
		}
	}
	cfg.Seed = 4
	if c := Handbook(cfg); len(c) == len(a) && bytes.Equal(c[0].Value, a[0].Value) {
		t.Errorf("seeds 3 and 4 gave the same world")
	}
}

// TestHandbookRates simulates the book's population over five weeks: about 10,000 payments a
// day, and fraud a little under the book's 0.8 % (scenario 2 builds up over its 28 days).
func TestHandbookRates(t *testing.T) {
	cfg := DefaultHandbook(1)
	cfg.Days = 35
	world := simulateHandbook(cfg)
	perScenario := map[string]int{}
	for _, p := range world.payments {
		perScenario[handbookScenarios[p.scenario]]++
	}
	n := float64(len(world.payments))
	fraud := n - float64(perScenario[""])
	t.Logf("%d payments, fraud %.3f %%, by scenario %v", len(world.payments), 100*fraud/n, perScenario)
	if perDay := n / float64(cfg.Days); perDay < 9_000 || perDay > 10_500 {
		t.Errorf("%.0f payments a day, want about 9,600", perDay)
	}
	if rate := fraud / n; rate < 0.004 || rate > 0.012 {
		t.Errorf("fraud rate %.4f, want about 0.006", rate)
	}
	for s, want := range map[string][2]float64{
		ScenarioAmountOver220:       {0.0003, 0.003},
		ScenarioCompromisedTerminal: {0.001, 0.008},
		ScenarioCompromisedCustomer: {0.001, 0.006},
	} {
		if share := float64(perScenario[s]) / n; share < want[0] || share > want[1] {
			t.Errorf("%s: %.4f of payments, want %.4f to %.4f", s, share, want[0], want[1])
		}
	}
}

// TestHandbook checks the records of a world of a fifth of the book's population over five
// weeks: every one is a valid payment, and the three scenarios hold.
func TestHandbook(t *testing.T) {
	cfg := DefaultHandbook(1)
	cfg.Customers, cfg.Terminals, cfg.Days = 1_000, 2_000, 35
	world := simulateHandbook(cfg) // with its draws
	payments := handbookPayments(cfg, world)
	if want := Handbook(cfg); len(want) != len(payments) || !bytes.Equal(want[len(want)-1].Value, payments[len(payments)-1].Value) {
		t.Fatal("Handbook and handbookPayments of simulateHandbook differ")
	}
	dec := payment.NewDecoder([]byte("test-key-0123456789"), 64<<10)
	decoded := make([]payment.Payment, len(payments))
	day := func(i int) int { return int(decoded[i].Time.Sub(cfg.Start) / (24 * time.Hour)) }
	over := decimal.NewFromInt(220)

	t.Run("records", func(t *testing.T) {
		ids := make(map[string]bool, len(payments))
		end := cfg.Start.AddDate(0, 0, cfg.Days)
		for i, rec := range payments {
			p, err := dec.Decode(rec.Value)
			if err != nil {
				t.Fatalf("payment %d does not decode: %v\n%s", i, err, rec.Value)
			}
			decoded[i] = p
			if p.CardID != rec.Key || p.CardID != rec.Label.CardID || p.ID != rec.Label.PaymentID || !p.Time.Equal(rec.Label.Time) {
				t.Fatalf("payment %d: record and label disagree: %s %+v", i, rec.Value, rec.Label)
			}
			if p.Currency != "EUR" || p.Country != "" || p.Channel != "" || p.DeviceID != "" || p.MerchantCategory != "" || p.MerchantID == "" {
				t.Fatalf("payment %d: %s", i, rec.Value)
			}
			if ids[p.ID] {
				t.Fatalf("payment id %s twice", p.ID)
			}
			ids[p.ID] = true
			if p.Time.Before(cfg.Start) || !p.Time.Before(end) || i > 0 && p.Time.Before(decoded[i-1].Time) {
				t.Fatalf("payment %d at %s: out of order or out of the %d days", i, p.Time, cfg.Days)
			}
			if (rec.Label.Label == "fraud") != (rec.Label.Scenario != "") {
				t.Fatalf("payment %d: label %+v", i, rec.Label)
			}
		}
	})
	if t.Failed() {
		return
	}

	t.Run("amount over 220", func(t *testing.T) {
		for i, rec := range payments {
			if decoded[i].Amount.GreaterThan(over) && rec.Label.Label != "fraud" {
				t.Fatalf("payment over 220 not fraud: %s", rec.Value)
			}
			if rec.Label.Scenario == ScenarioAmountOver220 && !decoded[i].Amount.GreaterThan(over) {
				t.Fatalf("%s at 220 or less: %s", ScenarioAmountOver220, rec.Value)
			}
		}
	})

	t.Run("compromised terminals", func(t *testing.T) {
		if len(world.terminals) != cfg.Days*cfg.CompromisedTerminals {
			t.Fatalf("%d terminal draws over %d days", len(world.terminals), cfg.Days)
		}
		// covered[terminal][day]: a draw makes the terminal's payments of that day fraud.
		covered := map[string]map[int]bool{}
		for _, d := range world.terminals {
			id := terminalID(d.id)
			if covered[id] == nil {
				covered[id] = map[int]bool{}
			}
			for k := range cfg.TerminalDays {
				covered[id][d.day+k] = true
			}
		}
		var hit int
		for i, rec := range payments {
			onCompromised := covered[decoded[i].MerchantID][day(i)]
			switch {
			case onCompromised && rec.Label.Label != "fraud":
				t.Fatalf("payment at a compromised terminal not fraud: %s", rec.Value)
			case onCompromised && rec.Label.Scenario == ScenarioAmountOver220:
				t.Fatalf("payment at a compromised terminal named %s: %s", ScenarioAmountOver220, rec.Value)
			case !onCompromised && rec.Label.Scenario == ScenarioCompromisedTerminal:
				t.Fatalf("%s outside its terminal's 28 days: %s", ScenarioCompromisedTerminal, rec.Value)
			}
			if onCompromised {
				hit++
			}
		}
		if hit == 0 {
			t.Fatal("no payment at a compromised terminal")
		}
	})

	t.Run("compromised customers", func(t *testing.T) {
		if len(world.customers) != cfg.Days*cfg.CompromisedCustomers {
			t.Fatalf("%d customer draws over %d days", len(world.customers), cfg.Days)
		}
		draws := map[string][]int{} // a card's draw days
		for _, d := range world.customers {
			draws[cardID(d.id)] = append(draws[cardID(d.id)], d.day)
		}
		inWindow := func(card string, day int) bool {
			for _, from := range draws[card] {
				if from <= day && day < from+cfg.CustomerDays {
					return true
				}
			}
			return false
		}
		five := decimal.NewFromFloat(0.05)
		for i, rec := range payments {
			if rec.Label.Scenario != ScenarioCompromisedCustomer {
				continue
			}
			if !inWindow(rec.Key, day(i)) {
				t.Fatalf("%s outside its card's 14 days: %s", ScenarioCompromisedCustomer, rec.Value)
			}
			if !decoded[i].Amount.Mod(five).IsZero() {
				t.Fatalf("%s amount not five times a cent amount: %s", ScenarioCompromisedCustomer, rec.Value)
			}
		}
		// A card drawn once: exactly a third (rounded down) of its payments of the 14 days.
		var checked int
		for card, days := range draws {
			if len(days) != 1 {
				continue
			}
			var all, hit int
			for i, rec := range payments {
				if rec.Key == card && day(i) >= days[0] && day(i) < days[0]+cfg.CustomerDays {
					all++
					if rec.Label.Scenario == ScenarioCompromisedCustomer {
						hit++
					}
				}
			}
			if hit != all/3 {
				t.Errorf("card %s drawn on day %d: %d of its %d payments are %s, want %d", card, days[0], hit, all, ScenarioCompromisedCustomer, all/3)
			}
			if checked++; checked == 10 {
				break
			}
		}
		if checked == 0 {
			t.Fatal("no card drawn once")
		}
	})
}

func TestWorldFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
		rest int
	}{
		{nil, "", 0},
		{[]string{"-world"}, WorldProject, 0},
		{[]string{"-world", "-seed", "2"}, WorldProject, 0},
		{[]string{"-world=true"}, WorldProject, 0},
		{[]string{"-world=false"}, "", 0},
		{[]string{"-world=handbook", "-seed", "2"}, WorldHandbook, 0},
		{[]string{"-world=project"}, WorldProject, 0},
		// A bool flag takes no separate value: "handbook" is an argument, which paygen refuses.
		{[]string{"-world", "handbook"}, WorldProject, 1},
	} {
		fs := flag.NewFlagSet("paygen", flag.ContinueOnError)
		var w WorldFlag
		fs.Var(&w, "world", "")
		fs.Uint64("seed", 1, "")
		if err := fs.Parse(tc.args); err != nil {
			t.Errorf("%q: %v", tc.args, err)
			continue
		}
		if w.Name != tc.want || fs.NArg() != tc.rest {
			t.Errorf("%q: world %q and %d arguments, want %q and %d", tc.args, w.Name, fs.NArg(), tc.want, tc.rest)
		}
	}
	fs := flag.NewFlagSet("paygen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var w WorldFlag
	fs.Var(&w, "world", "")
	if err := fs.Parse([]string{"-world=handbok"}); err == nil {
		t.Errorf("-world=handbok accepted as %q", w.Name)
	}
}
