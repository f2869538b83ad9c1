package console

import (
	"errors"
	"net/http"
	"net/url"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/paysentry/fraud-detector/internal/review"
)

// pageSize is the queue's page.
const pageSize = 50

// maxFilterLen bounds the card and reason filters, in characters.
const maxFilterLen = 128

// queueForm is the queue's filter as the form shows it.
type queueForm struct {
	Status, Reason, Card, From, To, Order string
}

type queueData struct {
	Form    queueForm
	Query   string // the filter's query, for the quick verdicts to come back to
	Error   string
	Cases   []review.Case
	Next    string // the next page's URL, if any
	Reasons []string
}

// knownReasons are offered in the reason filter.
var knownReasons = []string{
	"amount_over_threshold", "card_velocity_1h", "model_score", "blocked_card", "blocked_merchant",
	"blocked_country", "blocked_ip", "blocked_device", "blocked_bin",
}

// queue lists the cases that match the filter.
func (c *Console) queue(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	f, form, err := parseFilter(q)
	d := queueData{Form: form, Reasons: knownReasons}
	if err != nil {
		d.Error = err.Error()
		c.render(w, r, http.StatusBadRequest, "queue", page{Title: "Queue", User: s, Nav: "queue", Data: d})
		return
	}
	d.Query = filterQuery(f).Encode()
	cp, err := c.store.ListCases(r.Context(), f)
	switch {
	case errors.Is(err, review.ErrInvalidArgument), errors.Is(err, review.ErrInvalidCursor):
		d.Error = "The filter or the page link is not valid: " + redact(err.Error())
		c.render(w, r, http.StatusBadRequest, "queue", page{Title: "Queue", User: s, Nav: "queue", Data: d})
		return
	case err != nil:
		c.storeError(w, r, s, err, "/ui/cases")
		return
	}
	for _, cs := range cp.Cases {
		d.Cases = append(d.Cases, cleanCase(cs))
	}
	if cp.Next != "" {
		next := filterQuery(f)
		next.Set("cursor", cp.Next)
		d.Next = "/ui/cases?" + next.Encode()
	}
	c.render(w, r, http.StatusOK, "queue", page{Title: "Queue", User: s, Nav: "queue", Data: d})
}

// filterError is a filter value that is not valid; its text is for the page.
type filterError string

func (e filterError) Error() string { return string(e) }

// parseFilter reads the queue's query: status (open, fraud, legitimate, or empty for every status;
// open when absent), reason, card, from and to (RFC 3339, or the form's 2006-01-02T15:04 in UTC),
// order (riskiest, the default, or newest) and cursor. Other parameters are ignored.
func parseFilter(q url.Values) (review.CaseFilter, queueForm, error) {
	form := queueForm{Status: review.StatusOpen, Reason: q.Get("reason"), Card: q.Get("card"),
		From: q.Get("from"), To: q.Get("to"), Order: q.Get("order")}
	if v, ok := q["status"]; ok && len(v) > 0 {
		form.Status = v[0]
	}
	for _, k := range []string{"status", "reason", "card", "from", "to", "order", "cursor"} {
		if len(q[k]) > 1 {
			return review.CaseFilter{}, clean(form), filterError("Give " + k + " once.")
		}
		if v := q.Get(k); !utf8.ValidString(v) || hasControl(v) {
			return review.CaseFilter{}, clean(form), filterError("The filter holds characters that are not allowed.")
		}
	}
	f := review.CaseFilter{Status: form.Status, Reason: form.Reason, Card: form.Card, Cursor: q.Get("cursor"),
		Limit: pageSize, Riskiest: true}
	switch form.Status {
	case review.StatusOpen, review.StatusFraud, review.StatusLegitimate, "":
	case "all":
		f.Status, form.Status = "", ""
	default:
		return f, clean(form), filterError("Status must be open, fraud, legitimate or all.")
	}
	switch form.Order {
	case "", "riskiest":
		form.Order = "riskiest"
	case "newest":
		f.Riskiest = false
	default:
		return f, clean(form), filterError("Order must be riskiest or newest.")
	}
	if utf8.RuneCountInString(form.Card) > maxFilterLen || utf8.RuneCountInString(form.Reason) > maxFilterLen {
		return f, clean(form), filterError("The card and the reason are at most 128 characters.")
	}
	if redact(form.Card) != form.Card {
		return f, clean(form), filterError("The card filter looks like a card number: search by card id (a token), never by the number.")
	}
	var err error
	if f.From, err = parseTime(form.From); err != nil {
		return f, clean(form), filterError("From must be a time such as 2026-11-30T14:05 (UTC) or 2026-11-30T14:05:00Z.")
	}
	if f.To, err = parseTime(form.To); err != nil {
		return f, clean(form), filterError("To must be a time such as 2026-11-30T14:05 (UTC) or 2026-11-30T14:05:00Z.")
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return f, clean(form), filterError("From must be before to.")
	}
	form.From, form.To = formTime(f.From), formTime(f.To)
	return f, form, nil
}

// clean masks card numbers in what the form shows back.
func clean(f queueForm) queueForm {
	f.Reason, f.Card, f.From, f.To = redact(f.Reason), redact(f.Card), redact(f.From), redact(f.To)
	return f
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// timeForms are the forms a filter time may take; those without a zone are UTC.
var timeForms = []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02T15:04:05", "2006-01-02T15:04:05.999999999"}

func parseTime(v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	var err error
	for _, layout := range timeForms {
		var t time.Time
		if t, err = time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, err
}

// formTime writes t as a datetime-local input takes it, in UTC.
func formTime(t time.Time) string {
	switch {
	case t.IsZero():
		return ""
	case t.Nanosecond() != 0:
		return t.UTC().Format("2006-01-02T15:04:05.999999999")
	case t.Second() != 0:
		return t.UTC().Format("2006-01-02T15:04:05")
	}
	return t.UTC().Format("2006-01-02T15:04")
}

// filterQuery writes f back as the queue's query, without the cursor (status always: absent means
// open).
func filterQuery(f review.CaseFilter) url.Values {
	q := url.Values{"status": {f.Status}}
	if f.Reason != "" {
		q.Set("reason", f.Reason)
	}
	if f.Card != "" {
		q.Set("card", f.Card)
	}
	if !f.From.IsZero() {
		q.Set("from", f.From.UTC().Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		q.Set("to", f.To.UTC().Format(time.RFC3339Nano))
	}
	if !f.Riskiest {
		q.Set("order", "newest")
	}
	return q
}

// cleanCase masks card numbers in a case's texts.
func cleanCase(cs review.Case) review.Case {
	cs.ID, cs.CardID, cs.Assignee = redact(cs.ID), redact(cs.CardID), redact(cs.Assignee)
	reasons := make([]string, len(cs.Reasons))
	for i, code := range cs.Reasons {
		reasons[i] = redact(code)
	}
	cs.Reasons = reasons
	if cs.Verdict != nil {
		v := *cs.Verdict
		v.Analyst, v.Note = redact(v.Analyst), redact(v.Note)
		cs.Verdict = &v
	}
	return cs
}
