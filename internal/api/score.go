package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/score"
)

// Limits of a batch to score: payments, and the body's bytes.
const (
	maxScoreBatch      = score.MaxRequest
	maxScoreBatchBytes = 4 << 20
)

func (s *Server) postScore(w http.ResponseWriter, r *http.Request) {
	body, ok := readScoreBody(w, r)
	if !ok {
		return
	}
	ds, ok := s.score(w, r, [][]byte{body})
	if !ok {
		return
	}
	writeRaw(w, ds[0].AppendJSON(nil))
}

func (s *Server) postScoreBatch(w http.ResponseWriter, r *http.Request) {
	body, ok := readScoreBody(w, r)
	if !ok {
		return
	}
	var raws []jsontext.Value
	if err := json.Unmarshal(body, &raws); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "the body must be a JSON array of payments: "+err.Error())
		return
	}
	switch {
	case len(raws) == 0:
		writeError(w, http.StatusBadRequest, "invalid_request", "the batch is empty")
		return
	case len(raws) > maxScoreBatch:
		writeError(w, http.StatusUnprocessableEntity, "batch_too_large", fmt.Sprintf("a batch holds at most %d payments, got %d", maxScoreBatch, len(raws)))
		return
	}
	bs := make([][]byte, len(raws))
	for i, v := range raws {
		bs[i] = v
	}
	ds, ok := s.score(w, r, bs)
	if !ok {
		return
	}
	b := []byte(`{"decisions":[`)
	for i := range ds {
		if i > 0 {
			b = append(b, ',')
		}
		b = ds[i].AppendJSON(b)
	}
	writeRaw(w, append(b, "]}"...))
}

// score decides payments, answering the error statuses itself.
func (s *Server) score(w http.ResponseWriter, r *http.Request, raws [][]byte) ([]decision.Decision, bool) {
	if s.scoring == nil {
		writeError(w, http.StatusServiceUnavailable, "scoring_unavailable", "this instance does not score payments")
		return nil, false
	}
	ds, err := s.scoring.ScoreJSON(r.Context(), raws)
	var invalid *score.InvalidError
	switch {
	case err == nil:
		return ds, true
	case errors.As(err, &invalid):
		msg := invalid.Err.Error()
		if len(raws) > 1 {
			msg = "payment " + strconv.Itoa(invalid.Index) + ": " + msg
		}
		status := http.StatusUnprocessableEntity // a payment the stream would dead-letter
		if c := invalid.Err.Code; c == payment.CodeInvalidJSON || c == payment.CodeEmpty || c == payment.CodeInvalidUTF8 {
			status = http.StatusBadRequest // not a JSON object at all
		}
		writeError(w, status, invalid.Err.Code, msg)
	case errors.Is(err, score.ErrOverloaded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "overloaded", err.Error()+"; retry shortly")
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "not scored: "+err.Error())
	}
	return nil, false
}

func writeRaw(w http.ResponseWriter, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(append(b, '\n'))
}

// readScoreBody reads a body to score, up to maxScoreBatchBytes (a payment's own limit is the
// stream's, stream.max_payment_bytes, which the decoder holds it to), and answers 415, 413 or 400
// when it cannot: then it returns false.
func readScoreBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxScoreBatchBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is over %d bytes", maxScoreBatchBytes))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "invalid_request", "cannot read the body")
		return nil, false
	}
	return body, true
}
