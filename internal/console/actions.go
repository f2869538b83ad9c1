package console

import (
	"net/http"
	"net/url"
	"unicode/utf8"

	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/review"
)

// maxNoteLen bounds a verdict's note, in characters, as the API does.
const maxNoteLen = 2000

// caseVerdict records a verdict on a case (its open payments).
func (c *Console) caseVerdict(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	back := backTo(r.PostForm, caseURL(id))
	label, note, ok := c.verdictForm(w, r, s, back)
	if !ok {
		return
	}
	if len(id) > maxIDLen {
		c.errorPageBack(w, r, s, http.StatusNotFound, "Not found", "There is no such case.", "/ui/cases")
		return
	}
	if err := c.actions.DecideCase(r.Context(), id, label, s.Name, note); err != nil {
		c.storeError(w, r, s, err, back)
		return
	}
	c.log.Info("console case verdict", "case_id", redact(id), "label", label, "analyst", s.Name)
	seeOther(w, r, back)
}

// paymentVerdict records a verdict on one payment of a case.
func (c *Console) paymentVerdict(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("pid")
	back := "/ui/cases"
	if cs := r.PostForm.Get("case"); cs != "" && len(cs) <= maxIDLen && utf8.ValidString(cs) {
		back = caseURL(cs)
	}
	back = backTo(r.PostForm, back)
	label, note, ok := c.verdictForm(w, r, s, back)
	if !ok {
		return
	}
	if len(id) > maxIDLen {
		c.errorPageBack(w, r, s, http.StatusNotFound, "Not found", "There is no such payment.", back)
		return
	}
	if err := c.actions.DecidePayment(r.Context(), id, label, s.Name, note); err != nil {
		c.storeError(w, r, s, err, back)
		return
	}
	c.log.Info("console payment verdict", "payment_id", redact(id), "label", label, "analyst", s.Name)
	seeOther(w, r, back)
}

// assign records the signed-in analyst as the case's assignee.
func (c *Console) assign(w http.ResponseWriter, r *http.Request, s *session) {
	id := r.PathValue("id")
	back := backTo(r.PostForm, caseURL(id))
	if len(id) > maxIDLen {
		c.errorPageBack(w, r, s, http.StatusNotFound, "Not found", "There is no such case.", "/ui/cases")
		return
	}
	if err := c.actions.AssignCase(r.Context(), id, s.Name); err != nil {
		c.storeError(w, r, s, err, back)
		return
	}
	c.log.Info("console case assigned", "case_id", redact(id), "analyst", s.Name)
	seeOther(w, r, back)
}

// verdictForm reads a verdict's label and note; on a bad one it answers 400 and returns false.
func (c *Console) verdictForm(w http.ResponseWriter, r *http.Request, s *session, back string) (label, note string, ok bool) {
	label, note = r.PostForm.Get("label"), r.PostForm.Get("note")
	switch {
	case label != review.StatusFraud && label != review.StatusLegitimate:
		c.errorPageBack(w, r, s, http.StatusBadRequest, "Bad request", "The label must be fraud or legitimate.", back)
	case !utf8.ValidString(note):
		c.errorPageBack(w, r, s, http.StatusBadRequest, "Bad request", "The note must be text.", back)
	case utf8.RuneCountInString(note) > maxNoteLen:
		c.errorPageBack(w, r, s, http.StatusBadRequest, "Note too long", "The note must be at most 2000 characters.", back)
	default:
		if _, found := payment.RedactPANs([]byte(note)); found {
			c.errorPageBack(w, r, s, http.StatusBadRequest, "Bad request",
				"The note holds what looks like a card number; verdicts never store one (the case names the card by its id).", back)
			return "", "", false
		}
		return label, note, true
	}
	return "", "", false
}

// backTo is where a form goes back to: the queue (with the filter it came from) when it sends
// back=queue, otherwise def.
func backTo(form url.Values, def string) string {
	if form.Get("back") != "queue" {
		return def
	}
	q, err := url.ParseQuery(form.Get("query"))
	if err != nil {
		return "/ui/cases"
	}
	kept := url.Values{}
	for _, k := range []string{"status", "reason", "card", "from", "to", "order"} {
		if v, ok := q[k]; ok && len(v) == 1 {
			kept[k] = v
		}
	}
	if len(kept) == 0 {
		return "/ui/cases"
	}
	return "/ui/cases?" + kept.Encode()
}

func seeOther(w http.ResponseWriter, r *http.Request, to string) {
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, http.StatusSeeOther)
}
