package trainingset

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/paysentry/fraud-detector/internal/payment"
)

var t0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

func pay(id, card string, at time.Time) []byte {
	return fmt.Appendf(nil, `{"payment_id":%q,"card_id":%q,"amount":"12.50","currency":"EUR","timestamp":%q,"merchant_id":"m-1"}`,
		id, card, at.Format(time.RFC3339Nano))
}

func verdictRecord(id, label string, decided time.Time) []byte {
	return fmt.Appendf(nil, `{"payment_id":%q,"card_id":"c","label":%q,"analyst":"eve","note":"called the holder","decided_at":%q}`,
		id, label, decided.Format(time.RFC3339Nano))
}

type skipped struct{ where, why []string }

func newBuilder() (*Builder, *skipped) {
	s := &skipped{}
	return NewBuilder(payment.NewDecoder([]byte("trainingset-test-key-0123"), 64<<10), func(where, why string) {
		s.where, s.why = append(s.where, where), append(s.why, why)
	}), s
}

func labelsOf(set *Set) map[string]Label {
	m := map[string]Label{}
	for _, l := range set.Labels {
		m[l.PaymentID] = l
	}
	return m
}

// Of a payment's verdicts the latest decided_at wins, whatever the order read; of equal times,
// the last read.
func TestLatestVerdictWins(t *testing.T) {
	b, _ := newBuilder()
	for i := range 5 {
		b.AddPayment("p", pay(fmt.Sprintf("p%d", i), "c", t0))
	}
	b.AddVerdict("l", verdictRecord("p0", "fraud", t0.Add(2*time.Hour)))
	b.AddVerdict("l", verdictRecord("p0", "legitimate", t0.Add(time.Hour))) // older, read later: loses
	b.AddVerdict("l", verdictRecord("p1", "legitimate", t0.Add(time.Hour)))
	b.AddVerdict("l", verdictRecord("p1", "fraud", t0.Add(3*time.Hour))) // newer: wins
	b.AddVerdict("l", verdictRecord("p2", "fraud", t0.Add(time.Hour)))
	b.AddVerdict("l", verdictRecord("p2", "legitimate", t0.Add(time.Hour)))       // same time, read later: wins
	b.AddVerdict("l", []byte(`{"payment_id":"p3","label":"fraud","scenario":7}`)) // a file's label: no decided_at
	b.AddVerdict("l", []byte(`{"payment_id":"p3","label":"legitimate"}`))
	set, err := b.Build(Config{AsOf: t0, LabelDelay: 24 * time.Hour, MinPayments: 1})
	if err != nil {
		t.Fatal(err)
	}
	got := labelsOf(set)
	for id, want := range map[string]string{"p0": "fraud", "p1": "fraud", "p2": "legitimate", "p3": "legitimate"} {
		if l := got[id]; l.Label != want || l.Source != SourceVerdict {
			t.Errorf("%s: %+v, want %s by verdict", id, l, want)
		}
	}
	if l := got["p0"]; l.Analyst != "eve" || !l.DecidedAt.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("p0's label %+v lacks its analyst or time", l)
	}
	if _, ok := got["p4"]; ok {
		t.Errorf("p4, younger than the label delay and without a verdict, is labelled: %+v", got["p4"])
	}
	if st := set.Stats; st.Verdicts != 8 || st.Fraud != 2 || st.Legitimate != 2 || st.Unlabelled != 1 {
		t.Errorf("stats %+v", st)
	}
}

// A payment with no verdict is legitimate from the label delay on, and left out before.
func TestUnlabelledLegitimateAfterTheDelay(t *testing.T) {
	b, _ := newBuilder()
	asOf, delay := t0, 7*24*time.Hour
	cutoff := asOf.Add(-delay)
	cases := map[string]time.Time{
		"old":      cutoff.Add(-time.Hour),
		"at":       cutoff, // exactly the delay old: its verdict would have come
		"young":    cutoff.Add(time.Second),
		"recent":   asOf.Add(-time.Minute),
		"ahead":    asOf.Add(time.Hour), // a clock ahead: no verdict yet
		"decided":  asOf.Add(-time.Minute),
		"oldfraud": cutoff.Add(-48 * time.Hour),
	}
	for id, at := range cases {
		b.AddPayment(id, pay(id, "c-"+id, at))
	}
	b.AddVerdict("l", verdictRecord("decided", "legitimate", asOf))
	b.AddVerdict("l", verdictRecord("oldfraud", "fraud", asOf))
	set, err := b.Build(Config{AsOf: asOf, LabelDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	got := labelsOf(set)
	want := map[string]Label{
		"old":      {Label: "legitimate", Source: SourceNoVerdict},
		"at":       {Label: "legitimate", Source: SourceNoVerdict},
		"decided":  {Label: "legitimate", Source: SourceVerdict},
		"oldfraud": {Label: "fraud", Source: SourceVerdict},
	}
	for id := range cases {
		w, labelled := want[id]
		l, ok := got[id]
		if ok != labelled || ok && (l.Label != w.Label || l.Source != w.Source) {
			t.Errorf("%s (event time %s, cutoff %s): %+v (labelled %v), want %+v (labelled %v)", id, cases[id], cutoff, l, ok, w, labelled)
		}
	}
	if st := set.Stats; st.Aged != 2 || st.Unlabelled != 3 || st.Fraud != 1 || st.Legitimate != 1 {
		t.Errorf("stats %+v", st)
	}
}

// The payments are written in event-time order, in the order read among equal times; a
// payment id read again is left out; the labels follow the payments' order.
func TestOrderAndDuplicates(t *testing.T) {
	b, _ := newBuilder()
	b.AddPayment("a", pay("late", "c1", t0.Add(time.Hour)))
	b.AddPayment("b", pay("tie-1", "c2", t0))
	b.AddPayment("c", pay("first", "c1", t0.Add(-time.Hour)))
	b.AddPayment("d", pay("tie-2", "c1", t0))
	b.AddPayment("e", pay("first", "c9", t0.Add(-2*time.Hour))) // the same id again: left out
	b.AddVerdict("l", verdictRecord("late", "fraud", t0))
	set, err := b.Build(Config{AsOf: t0.Add(30 * 24 * time.Hour), LabelDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	var ids, labelled []string
	for _, p := range set.Payments {
		ids = append(ids, p.ID)
	}
	for _, l := range set.Labels {
		labelled = append(labelled, l.PaymentID)
	}
	if want := []string{"first", "tie-1", "tie-2", "late"}; !slices.Equal(ids, want) || !slices.Equal(labelled, want) {
		t.Errorf("payments %v, labels %v, want %v", ids, labelled, want)
	}
	if set.Payments[0].Card != "c1" {
		t.Errorf("the first read of a payment id is kept; got card %s", set.Payments[0].Card)
	}
	if st := set.Stats; st.Payments != 4 || st.DuplicatePayments != 1 {
		t.Errorf("stats %+v", st)
	}
}

// Records that are not payments or verdicts are counted and named by where they were, never by
// what they held; a card number becomes its card id and is in no file.
func TestMalformedAndCardNumbers(t *testing.T) {
	const pan = "4111111111111111"
	b, skips := newBuilder()
	b.AddPayment("payments/0@0", fmt.Appendf(nil, `{"payment_id":"n1","card_number":%q,"amount":"150","currency":"EUR","timestamp":%q,"extra":"x"}`, pan, t0.Format(time.RFC3339)))
	b.AddPayment("payments/0@1", fmt.Appendf(nil, `{"payment_id":"n2","card_number":"%s2","amount":"1","currency":"EUR","timestamp":%q}`, pan[:15], t0.Format(time.RFC3339))) // Luhn fails
	b.AddPayment("payments/0@2", []byte(`not json `+pan))
	b.AddVerdict("labels/0@0", verdictRecord("n1", "fraud", t0))
	b.AddVerdict("labels/0@1", []byte(`{"payment_id":"n1","label":"maybe"}`))
	b.AddVerdict("labels/0@2", []byte(`{"label":"fraud"}`))
	b.AddVerdict("labels/0@3", []byte(pan))
	b.AddVerdict("labels/0@4", verdictRecord("unseen", "fraud", t0))
	set, err := b.Build(Config{AsOf: t0, LabelDelay: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"payments/0@1", "payments/0@2", "labels/0@1", "labels/0@2", "labels/0@3"}; !slices.Equal(skips.where, want) {
		t.Errorf("skipped %v, want %v", skips.where, want)
	}
	for _, why := range skips.why {
		if strings.Contains(why, pan[6:12]) {
			t.Errorf("a message holds digits of the card number: %q", why)
		}
	}
	if st := set.Stats; st.Payments != 1 || st.InvalidPayments != 2 || st.Verdicts != 2 || st.MalformedVerdicts != 3 || st.Orphans != 1 || st.Fraud != 1 {
		t.Errorf("stats %+v", st)
	}
	dir := t.TempDir()
	pp, lp, err := set.Write(filepath.Join(dir, "work"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{pp, lp} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), pan) || strings.Contains(string(b), "called the holder") {
			t.Errorf("%s holds the card number or an analyst's note:\n%s", path, b)
		}
	}
	// The payment written is the one the service decoded: same card id, amount, time.
	line, _ := os.ReadFile(pp)
	got, err := payment.NewDecoder([]byte("trainingset-test-key-0123"), 64<<10).Decode([]byte(strings.TrimSpace(string(line))))
	if err != nil {
		t.Fatalf("the payment written does not decode: %v\n%s", err, line)
	}
	if got.CardID != set.Payments[0].Card || !strings.HasPrefix(got.CardID, "tok_") || got.Amount.String() != "150" || !got.Time.Equal(t0) {
		t.Errorf("written %+v", got)
	}
	var l Label
	lines, _ := os.ReadFile(lp)
	if err := json.Unmarshal([]byte(strings.TrimSpace(string(lines))), &l); err != nil || l.PaymentID != "n1" || l.Label != "fraud" || l.Source != SourceVerdict || l.Analyst != "eve" {
		t.Errorf("labels file %q (%v)", lines, err)
	}
}

// A set that cannot train a model is refused with the reason.
func TestRefused(t *testing.T) {
	for _, c := range []struct {
		name     string
		payments int
		verdicts []string
		min      int
		want     error
	}{
		{"too few payments", 3, []string{"fraud"}, 10, ErrTooFewPayments},
		{"no payments", 0, []string{"fraud"}, 0, ErrTooFewPayments},
		{"no verdicts", 20, nil, 10, ErrNoVerdicts},
		{"no fraud", 20, []string{"legitimate", "legitimate"}, 10, ErrNoFraud},
		{"fraud only of payments not read", 20, []string{"legitimate", "", "fraud:unseen"}, 10, ErrNoFraud},
		{"enough", 20, []string{"fraud"}, 10, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, _ := newBuilder()
			for i := range c.payments {
				b.AddPayment("p", pay(fmt.Sprintf("p%d", i), "c", t0.Add(-30*24*time.Hour)))
			}
			for i, v := range c.verdicts {
				id := fmt.Sprintf("p%d", i)
				if label, other, ok := strings.Cut(v, ":"); ok {
					v, id = label, other
				}
				if v != "" {
					b.AddVerdict("l", verdictRecord(id, v, t0))
				}
			}
			_, err := b.Build(Config{AsOf: t0, LabelDelay: 7 * 24 * time.Hour, MinPayments: c.min})
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Errorf("err %v, want %v", err, c.want)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.jsonl")
	if err := os.WriteFile(path, []byte("a\n\nb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := ReadFile(path, func(where string, v []byte) { got = append(got, where+"="+string(v)) }); err != nil {
		t.Fatal(err)
	}
	if want := []string{path + ":1=a", path + ":3=b"}; !slices.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
}
