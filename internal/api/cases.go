package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-json-experiment/json"

	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/review"
)

type caseList struct {
	Cases []review.Case `json:"cases"`
	Next  string        `json:"next_cursor,omitempty"`
}

func (s *Server) listCases(w http.ResponseWriter, r *http.Request) {
	l, ok := parseList(w, r)
	if !ok {
		return
	}
	page, err := s.reviews.ListCases(r.Context(), review.CaseFilter{Status: l.status, Card: l.card, Reason: l.reason, From: l.from,
		To: l.to, Riskiest: l.riskiest, Limit: l.limit, Cursor: l.cursor})
	if err != nil {
		s.storeError(w, err)
		return
	}
	if page.Cases == nil {
		page.Cases = []review.Case{}
	}
	writeJSON(w, http.StatusOK, caseList{Cases: page.Cases, Next: page.Next})
}

// caseView is a case with its payments' reviews, newest first.
type caseView struct {
	review.Case
	Reviews []review.Review `json:"reviews"`
}

func (s *Server) getCase(w http.ResponseWriter, r *http.Request) {
	c, reviews, err := s.reviews.GetCase(r.Context(), chi.URLParam(r, "case_id"))
	if err != nil {
		s.storeError(w, err)
		return
	}
	if reviews == nil {
		reviews = []review.Review{}
	}
	writeJSON(w, http.StatusOK, caseView{Case: c, Reviews: reviews})
}

// caseVerdict is the answer to a case's verdict: the case, and the payments it labelled.
type caseVerdict struct {
	review.Case
	Labelled []string `json:"labelled"`
}

func (s *Server) postCaseVerdict(w http.ResponseWriter, r *http.Request) {
	req, ok := s.readVerdict(w, r)
	if !ok {
		return
	}
	analyst, _ := r.Context().Value(ctxKey{}).(string)
	c, labelled, err := s.decideCase(r.Context(), chi.URLParam(r, "case_id"), req.Label, analyst, req.Note)
	if err != nil {
		s.verdictError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, caseVerdict{Case: c, Labelled: labelled})
}

// decideCase records a verdict on a case and on its reviews still open, and publishes their
// labels, one a payment. The same verdict again publishes those its first try could not; any
// other verdict on a decided case is ErrAlreadyDecided. It returns the payments it labelled.
func (s *Server) decideCase(ctx context.Context, id, label, analyst, note string) (review.Case, []string, error) {
	v := review.Verdict{Label: label, Analyst: analyst, Note: note, DecidedAt: s.now().UTC()}
	c, decided, err := s.reviews.DecideCase(ctx, id, v)
	if err == nil && s.ops.Verdicts != nil {
		for _, rv := range decided {
			s.ops.Verdicts.Count(rv)
		}
	}
	if errors.Is(err, review.ErrAlreadyDecided) {
		prev, _, gerr := s.reviews.GetCase(ctx, id)
		if gerr != nil || !sameVerdict(prev.Verdict, label, analyst, note) {
			return review.Case{}, nil, err
		}
		// Its reviews that took the case's verdict: those whose labels are not out yet.
		reviews, rerr := s.reviews.CaseReviews(ctx, id)
		if rerr != nil {
			return review.Case{}, nil, rerr
		}
		c, decided, err = prev, nil, nil
		for _, rv := range reviews {
			if !rv.Published && sameVerdict(rv.Verdict, label, analyst, note) && rv.Verdict.DecidedAt.Equal(prev.Verdict.DecidedAt) {
				decided = append(decided, rv)
			}
		}
	}
	if err != nil {
		return review.Case{}, nil, err
	}
	labelled, err := s.publish(ctx, decided)
	if err != nil {
		return review.Case{}, nil, err
	}
	return c, labelled, nil
}

type assignRequest struct {
	Assignee string `json:"assignee"` // empty: the caller
}

func (s *Server) postAssign(w http.ResponseWriter, r *http.Request) {
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	var req assignRequest
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req, json.RejectUnknownMembers(true)); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_json", `the body must be {"assignee": string} or empty: `+err.Error())
			return
		}
	}
	if req.Assignee == "" {
		req.Assignee, _ = r.Context().Value(ctxKey{}).(string)
	}
	if _, found := payment.RedactPANs([]byte(req.Assignee)); len(req.Assignee) > 128 || found {
		writeError(w, http.StatusUnprocessableEntity, "invalid_assignee", "assignee must be at most 128 bytes, and never a card number")
		return
	}
	c, err := s.reviews.AssignCase(r.Context(), chi.URLParam(r, "case_id"), req.Assignee)
	if err != nil {
		s.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

// The console's actions: the same as the API's routes, for a signed-in analyst.

// DecideCase records and publishes a verdict on a case, as POST /v1/cases/{id}/verdict does.
func (s *Server) DecideCase(ctx context.Context, caseID, label, analyst, note string) error {
	if err := checkVerdict(label, note); err != nil {
		return errors.Join(review.ErrInvalidArgument, err)
	}
	_, _, err := s.decideCase(ctx, caseID, label, analyst, note)
	return err
}

// DecidePayment records and publishes a verdict on one payment's review.
func (s *Server) DecidePayment(ctx context.Context, paymentID, label, analyst, note string) error {
	if err := checkVerdict(label, note); err != nil {
		return errors.Join(review.ErrInvalidArgument, err)
	}
	_, err := s.decidePayment(ctx, paymentID, label, analyst, note)
	return err
}

// AssignCase records who works on a case.
func (s *Server) AssignCase(ctx context.Context, caseID, analyst string) error {
	_, err := s.reviews.AssignCase(ctx, caseID, analyst)
	return err
}
