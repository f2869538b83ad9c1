// Package trainingset builds the model's training set from what the service saw: the payments of
// the payments topic (or a file) and the analysts' verdicts of the labels topic (or a file). It
// keeps each payment once, in event-time order, with card numbers turned into card ids; takes the
// latest verdict of each payment; and takes a payment with no verdict as legitimate once it is
// older than the label delay, within which verdicts (and chargebacks) arrive. The replay computes
// the features of what it writes, and training/train.py learns from them.
package trainingset

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/paysentry/fraud-detector/internal/api"
	"github.com/paysentry/fraud-detector/internal/payment"
)

// Errors of Build: the set cannot train a model.
var (
	ErrNoVerdicts     = errors.New("no verdicts")
	ErrNoFraud        = errors.New("no fraud verdict")
	ErrTooFewPayments = errors.New("too few payments")
)

// Sources of a label in the set.
const (
	SourceVerdict   = "verdict"    // an analyst's verdict
	SourceNoVerdict = "no_verdict" // no verdict within the label delay: taken as legitimate
)

// Config says how the labels are completed and how small a set is refused.
type Config struct {
	// AsOf is when the set is taken (the retrain's start): a payment with no verdict is taken as
	// legitimate if its event time is at least LabelDelay before AsOf, and left out otherwise.
	AsOf       time.Time
	LabelDelay time.Duration
	// MinPayments is the fewest payments a set may have.
	MinPayments int
}

// Builder collects payments and verdicts, in the order they are read.
type Builder struct {
	dec      *payment.Decoder
	skip     func(where, why string)
	seen     map[string]struct{}
	payments []Payment
	verdicts map[string]verdict
	read     int // records read, for the order of equal times
	stats    Stats
}

// Payment is one payment of the set, as it is written: the topic's JSON with the card number (if
// any) replaced by its card id, so that the files never hold one.
type Payment struct {
	ID   string
	Card string
	Time time.Time
	Line []byte // one JSON object, no newline
	n    int
}

type verdict struct {
	api.Label
	n int
}

// Label is a line of the labels file: what the replay reads (payment_id, label), with where the
// label came from.
type Label struct {
	PaymentID string    `json:"payment_id"`
	Label     string    `json:"label"`
	Source    string    `json:"source"`
	Analyst   string    `json:"analyst,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
}

// Stats counts what was read and what the set holds.
type Stats struct {
	Payments          int // kept: valid and not seen before
	InvalidPayments   int // left out: not a valid payment
	DuplicatePayments int // left out: a payment id read before
	Verdicts          int // valid verdict records read
	MalformedVerdicts int // left out: not a verdict
	// Set by Build.
	Fraud, Legitimate int // payments labelled by a verdict
	Aged              int // payments with no verdict, taken as legitimate
	Unlabelled        int // payments with no verdict yet, left out of training
	Orphans           int // verdicts of payments not read
}

// NewBuilder returns a builder that decodes payments with dec (the service's card key) and
// tells skip about every record it leaves out: where it was and why, never its content.
func NewBuilder(dec *payment.Decoder, skip func(where, why string)) *Builder {
	if skip == nil {
		skip = func(string, string) {}
	}
	return &Builder{dec: dec, skip: skip, seen: map[string]struct{}{}, verdicts: map[string]verdict{}}
}

// paymentLine is a payment as the set writes it; the fields of the payments' contract that the
// pipeline reads. Unknown fields are left out.
type paymentLine struct {
	PaymentID        string `json:"payment_id"`
	CardID           string `json:"card_id"`
	Amount           string `json:"amount"`
	Currency         string `json:"currency"`
	Timestamp        string `json:"timestamp"`
	MerchantID       string `json:"merchant_id,omitempty"`
	MerchantCategory string `json:"merchant_category,omitempty"`
	Country          string `json:"country,omitempty"`
	Channel          string `json:"channel,omitempty"`
	DeviceID         string `json:"device_id,omitempty"`
	IP               string `json:"ip,omitempty"`
}

// AddPayment adds a record of the payments topic; where names it in messages.
func (b *Builder) AddPayment(where string, value []byte) {
	b.read++
	p, err := b.dec.Decode(value)
	if err != nil {
		b.stats.InvalidPayments++
		var pe *payment.Error
		why := "not a valid payment"
		if errors.As(err, &pe) {
			why += " (" + pe.Code + ")"
		}
		b.skip(where, why)
		return
	}
	if _, dup := b.seen[p.ID]; dup {
		b.stats.DuplicatePayments++ // sent twice: the service counts it once, and so does training
		return
	}
	b.seen[p.ID] = struct{}{}
	line, err := json.Marshal(paymentLine{
		PaymentID: p.ID, CardID: p.CardID, Amount: p.Amount.String(), Currency: p.Currency,
		Timestamp: p.Time.UTC().Format(time.RFC3339Nano), MerchantID: p.MerchantID,
		MerchantCategory: p.MerchantCategory, Country: p.Country, Channel: p.Channel, DeviceID: p.DeviceID, IP: p.IP,
	})
	if err != nil { // strings only: cannot happen for a decoded payment
		b.stats.InvalidPayments++
		b.skip(where, "payment not written: "+err.Error())
		return
	}
	b.stats.Payments++
	b.payments = append(b.payments, Payment{ID: p.ID, Card: p.CardID, Time: p.Time, Line: line, n: b.read})
}

// AddVerdict adds a record of the labels topic (api.Label's JSON); where names it in messages.
// Of a payment's verdicts the latest decided_at wins, and of equal ones the last read.
func (b *Builder) AddVerdict(where string, value []byte) {
	b.read++
	var l api.Label
	why := ""
	switch err := json.Unmarshal(value, &l); {
	case err != nil:
		why = "not a label's JSON"
	case l.PaymentID == "":
		why = "no payment_id"
	case l.Label != "fraud" && l.Label != "legitimate":
		why = `label is not "fraud" or "legitimate"`
	}
	if why != "" {
		b.stats.MalformedVerdicts++
		b.skip(where, why)
		return
	}
	b.stats.Verdicts++
	if prev, ok := b.verdicts[l.PaymentID]; ok && prev.DecidedAt.After(l.DecidedAt) {
		return
	}
	l.Note = "" // never written: free text is no training data
	b.verdicts[l.PaymentID] = verdict{Label: l, n: b.read}
}

// Stats are the counts so far.
func (b *Builder) Stats() Stats { return b.stats }

// Set is a training set: the payments in event-time order (the order read among equal times) and
// the label of each that has one, in the same order.
type Set struct {
	Payments []Payment
	Labels   []Label
	Stats    Stats
}

// Build orders the payments and labels them. It fails with ErrTooFewPayments, ErrNoVerdicts or
// ErrNoFraud when the set could not train a model.
func (b *Builder) Build(c Config) (*Set, error) {
	st := b.stats
	if st.Payments < max(c.MinPayments, 1) {
		return nil, fmt.Errorf("%w: %d valid payments, want at least %d", ErrTooFewPayments, st.Payments, max(c.MinPayments, 1))
	}
	if st.Verdicts == 0 {
		return nil, fmt.Errorf("%w: no analyst's verdict was read; training needs fraud and legitimate labels", ErrNoVerdicts)
	}
	ps := slices.Clone(b.payments)
	slices.SortStableFunc(ps, func(a, b Payment) int { return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.n, b.n)) })
	cutoff := c.AsOf.Add(-c.LabelDelay)
	labels := make([]Label, 0, len(ps))
	for _, p := range ps {
		v, ok := b.verdicts[p.ID]
		switch {
		case ok:
			labels = append(labels, Label{PaymentID: p.ID, Label: v.Label.Label, Source: SourceVerdict, Analyst: v.Analyst, DecidedAt: v.DecidedAt})
			if v.Label.Label == "fraud" {
				st.Fraud++
			} else {
				st.Legitimate++
			}
		case !p.Time.After(cutoff):
			labels = append(labels, Label{PaymentID: p.ID, Label: "legitimate", Source: SourceNoVerdict})
			st.Aged++
		default:
			st.Unlabelled++
		}
	}
	st.Orphans = len(b.verdicts) - st.Fraud - st.Legitimate
	if st.Fraud == 0 {
		return nil, fmt.Errorf("%w among the %d verdicts of payments read (%d verdicts are of payments not read); training needs fraud",
			ErrNoFraud, st.Fraud+st.Legitimate, st.Orphans)
	}
	return &Set{Payments: ps, Labels: labels, Stats: st}, nil
}

// Write writes the payments (JSONL, the topic's format) and the labels (JSONL) into dir, made if
// need be, readable by the owner alone, and returns their paths.
func (s *Set) Write(dir string) (payments, labels string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	payments, labels = filepath.Join(dir, "payments.jsonl"), filepath.Join(dir, "labels.jsonl")
	var buf []byte
	for _, p := range s.Payments {
		buf = append(append(buf, p.Line...), '\n')
	}
	if err := os.WriteFile(payments, buf, 0o600); err != nil {
		return "", "", err
	}
	buf = buf[:0]
	for _, l := range s.Labels {
		line, err := json.Marshal(l)
		if err != nil {
			return "", "", err
		}
		buf = append(append(buf, line...), '\n')
	}
	if err := os.WriteFile(labels, buf, 0o600); err != nil {
		return "", "", err
	}
	return payments, labels, nil
}
