// Package api is the analysts' HTTP API under /v1 (go-chi): list and read reviews of flagged
// payments, record verdicts (published to the labels topic), look a card up, and keep the lists
// that rules test (block and allow lists of cards, merchants, countries, IPs, devices, BINs).
// Every request needs a bearer token from the configuration; tokens have roles: viewer reads,
// analyst also decides and changes lists. Errors are {"error": {"code", "message"}} with the
// status that fits; a malformed request never gets a 5xx. The routes are described in
// /v1/openapi.json.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-json-experiment/json"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/lists"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/review"
)

// Roles.
const (
	RoleViewer  = "viewer"
	RoleAnalyst = "analyst"
	RoleScorer  = "scorer" // scores payments (POST /v1/score), nothing else
)

// Token is a bearer token as the configuration holds it: hashed, never in clear.
type Token struct {
	Name   string `yaml:"name"`
	Role   string `yaml:"role"`
	SHA256 string `yaml:"sha256"` // hex SHA-256 of the token
}

// Tokens is the configured list; from the environment as name:role:sha256hex, comma-separated.
type Tokens []Token

// MarshalJSON shows names and roles only: a hash of a weak token can be guessed offline, so the
// configuration log leaves them out.
func (t Tokens) MarshalJSON() ([]byte, error) { return json.Marshal(t.redacted()) }

// MarshalYAML keeps the hashes out of YAML output too.
func (t Tokens) MarshalYAML() (any, error) { return t.redacted(), nil }

func (t Tokens) redacted() []map[string]string {
	out := make([]map[string]string, len(t))
	for i, tk := range t {
		out[i] = map[string]string{"name": tk.Name, "role": tk.Role, "sha256": "[redacted]"}
	}
	return out
}

// String is what %v shows.
func (t Tokens) String() string {
	b, _ := t.MarshalJSON()
	return string(b)
}

// UnmarshalText reads the environment's form.
func (t *Tokens) UnmarshalText(b []byte) error {
	*t = nil
	for _, item := range strings.Split(string(b), ",") {
		parts := strings.Split(strings.TrimSpace(item), ":")
		if len(parts) != 3 {
			return fmt.Errorf("want name:role:sha256hex, got %d parts", len(parts))
		}
		*t = append(*t, Token{Name: parts[0], Role: parts[1], SHA256: parts[2]})
	}
	return nil
}

// Config sets the API.
type Config struct {
	Listen       string        `yaml:"listen" env:"LISTEN"`
	Tokens       Tokens        `yaml:"tokens" env:"TOKENS"`
	MaxBodyBytes int64         `yaml:"max_body_bytes" env:"MAX_BODY_BYTES"`
	ReadTimeout  time.Duration `yaml:"read_timeout" env:"READ_TIMEOUT"`
	WriteTimeout time.Duration `yaml:"write_timeout" env:"WRITE_TIMEOUT"`
	// SessionTTL is how long a console sign-in lasts.
	SessionTTL time.Duration `yaml:"session_ttl" env:"SESSION_TTL"`
	// SecureCookies marks the console's cookies Secure: set it when browsers reach the service
	// over HTTPS (a TLS proxy in front of it).
	SecureCookies bool `yaml:"secure_cookies" env:"SECURE_COOKIES"`
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for i, t := range c.Tokens {
		b, err := hex.DecodeString(t.SHA256)
		if seen[strings.ToLower(t.SHA256)] {
			return fmt.Errorf("api.tokens[%d] (%s): the same token as an earlier one", i, t.Name)
		}
		seen[strings.ToLower(t.SHA256)] = true
		switch {
		case t.Name == "":
			return fmt.Errorf("api.tokens[%d]: name must not be empty", i)
		case t.Role != RoleViewer && t.Role != RoleAnalyst && t.Role != RoleScorer:
			return fmt.Errorf("api.tokens[%d] (%s): role must be viewer, analyst or scorer, got %q", i, t.Name, t.Role)
		case err != nil || len(b) != sha256.Size:
			return fmt.Errorf("api.tokens[%d] (%s): sha256 must be 64 hex digits (the SHA-256 of the token, not the token)", i, t.Name)
		}
	}
	switch {
	case c.MaxBodyBytes < 1024:
		return fmt.Errorf("api.max_body_bytes: at least 1024, got %d", c.MaxBodyBytes)
	case c.ReadTimeout <= 0 || c.WriteTimeout <= 0:
		return errors.New("api: read_timeout and write_timeout must be positive")
	case c.SessionTTL < time.Minute || c.SessionTTL > 7*24*time.Hour:
		return fmt.Errorf("api.session_ttl: must be from 1m to 168h, got %s", c.SessionTTL)
	}
	return nil
}

// Reviews is the review store: reviews, one a flagged payment, and the cases that gather a
// card's.
type Reviews interface {
	List(ctx context.Context, f review.Filter) (review.Page, error)
	Get(ctx context.Context, paymentID string) (review.Review, []review.AuditEntry, error)
	Decide(ctx context.Context, paymentID string, v review.Verdict) (review.Review, error)
	MarkPublished(ctx context.Context, paymentID string) error
	ListCases(ctx context.Context, f review.CaseFilter) (review.CasePage, error)
	GetCase(ctx context.Context, id string) (review.Case, []review.Review, error)
	DecideCase(ctx context.Context, id string, v review.Verdict) (review.Case, []review.Review, error)
	AssignCase(ctx context.Context, id, analyst string) (review.Case, error)
	CaseReviews(ctx context.Context, id string) ([]review.Review, error)
	ClaimPublish(ctx context.Context, paymentIDs []string, lease time.Duration) ([]string, error)
	ReleasePublish(ctx context.Context, paymentIDs []string) error
}

var _ Reviews = (*review.Store)(nil)

// Cards is the card state.
type Cards interface {
	Counts(ctx context.Context, card string) (map[time.Time]int64, error)
}

// Label is a verdict as the labels topic carries it.
type Label struct {
	PaymentID string    `json:"payment_id"`
	CardID    string    `json:"card_id"`
	Label     string    `json:"label"`
	Analyst   string    `json:"analyst"`
	Note      string    `json:"note"`
	DecidedAt time.Time `json:"decided_at"`
}

// Lists is the lists' store: the lists the rules declare and their items.
type Lists interface {
	Specs() []lists.Spec
	Counts(ctx context.Context) (map[string]int, error)
	Put(ctx context.Context, list, value, by, note string) (lists.Item, bool, error)
	Delete(ctx context.Context, list, value, by string) (lists.Item, error)
	Get(ctx context.Context, list, value string) (lists.Item, error)
	Items(ctx context.Context, list, cursor string, limit int) ([]lists.Item, string, error)
	Changes(ctx context.Context, list string, limit int) ([]lists.Change, error)
}

var _ Lists = (*lists.Store)(nil)

// Publisher sends labels to the labels topic.
type Publisher interface {
	Publish(ctx context.Context, l Label) error
}

//go:embed openapi.json
var openapi []byte

// Ops are the operator's endpoints beside the API, served without a token: /healthz (the process
// answers), /readyz (every check passes) and /metrics (when Metrics is set).
type Ops struct {
	Metrics http.Handler
	Checks  []Check
	// Verdicts, when set, is told of each verdict once it is recorded (not again when the same
	// verdict is sent again to publish its label), to compare the models with the labels.
	Verdicts VerdictCounter
}

// VerdictCounter counts recorded verdicts (review.Verdicts: fraud_model_verdicts_total).
type VerdictCounter interface {
	Count(r review.Review)
}

var _ VerdictCounter = (*review.Verdicts)(nil)

// Check is one thing readiness needs, such as a broker or Redis answering.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// readyTimeout bounds each readiness probe.
const readyTimeout = 2 * time.Second

// Server serves the API.
type Server struct {
	cfg     Config
	reviews Reviews
	cards   Cards
	labels  Publisher
	lists   Lists
	ops     Ops
	log     *slog.Logger
	now     func() time.Time
	tokens  []token
	console http.Handler // the analysts' pages under /ui, if set
	scoring Scoring      // POST /v1/score, if set
}

// Scoring decides payments while the caller waits (internal/score).
type Scoring interface {
	ScoreJSON(ctx context.Context, raws [][]byte) ([]decision.Decision, error)
}

// SetScoring serves POST /v1/score and /v1/score:batch with sc.
func (s *Server) SetScoring(sc Scoring) { s.scoring = sc }

// SetConsole serves h under /ui: the analysts' console, which signs in with the API's tokens.
func (s *Server) SetConsole(h http.Handler) { s.console = h }

// Known says whether a token of that name and role is configured.
func (s *Server) Known(name, role string) bool {
	for _, t := range s.tokens {
		if t.name == name && t.role == role {
			return true
		}
	}
	return false
}

// Authenticate says whose a token is and its role, comparing SHA-256 sums in constant time.
func (s *Server) Authenticate(raw string) (name, role string, ok bool) {
	sum := sha256.Sum256([]byte(raw))
	var found *token
	for i := range s.tokens {
		if subtle.ConstantTimeCompare(sum[:], s.tokens[i].sum[:]) == 1 {
			found = &s.tokens[i]
		}
	}
	if found == nil {
		return "", "", false
	}
	return found.name, found.role, true
}

type token struct {
	name, role string
	sum        [sha256.Size]byte
}

// New returns the API over its stores, with the operator's endpoints of ops. With nil lists the
// lists' routes answer 503 lists_unavailable.
func New(cfg Config, reviews Reviews, cards Cards, labels Publisher, lists Lists, ops Ops, log *slog.Logger) *Server {
	s := &Server{cfg: cfg, reviews: reviews, cards: cards, labels: labels, lists: lists, ops: ops, log: log, now: time.Now}
	for _, t := range cfg.Tokens {
		var tk token
		hex.Decode(tk.sum[:], []byte(t.SHA256))
		tk.name, tk.role = t.Name, t.Role
		s.tokens = append(s.tokens, tk)
	}
	return s
}

// HTTPServer returns an http.Server for the API with the configured timeouts.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{Addr: s.cfg.Listen, Handler: s.Router(), ReadHeaderTimeout: s.cfg.ReadTimeout,
		ReadTimeout: s.cfg.ReadTimeout, WriteTimeout: s.cfg.WriteTimeout, IdleTimeout: 2 * s.cfg.WriteTimeout,
		MaxHeaderBytes: 16 << 10}
}

// Router is the API's routes.
func (s *Server) Router() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer, validUTF8)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route")
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, req *http.Request) {
		var allowed []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
			if r.Match(chi.NewRouteContext(), m, routePath(req)) {
				allowed = append(allowed, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", req.Method+" is not allowed here")
	})
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", s.ready)
	if s.console != nil {
		r.Handle("/ui", s.console)
		r.Handle("/ui/*", s.console)
	}
	if s.ops.Metrics != nil {
		r.Method(http.MethodGet, "/metrics", s.ops.Metrics)
	}
	r.Route("/v1", func(r chi.Router) {
		r.Get("/openapi.json", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(openapi)
		})
		r.Group(func(r chi.Router) {
			r.Use(s.auth(RoleViewer))
			r.Get("/reviews", s.listReviews)
			r.Get("/reviews/{payment_id}", s.getReview)
			r.Get("/cases", s.listCases)
			r.Get("/cases/{case_id}", s.getCase)
			r.Get("/cards/{card_id}", s.getCard)
			r.With(s.needLists).Get("/lists", s.getLists)
			r.With(s.needLists).Get("/lists/{name}/items", s.listItems)
			r.With(s.needLists).Get("/lists/{name}/items/{value}", s.getItem)
			r.With(s.needLists).Get("/lists/{name}/changes", s.listChanges)
		})
		r.Group(func(r chi.Router) {
			r.Use(s.auth(RoleScorer))
			r.Post("/score", s.postScore)
			r.Post("/score:batch", s.postScoreBatch)
		})
		r.Group(func(r chi.Router) {
			r.Use(s.auth(RoleAnalyst))
			r.Post("/reviews/{payment_id}/verdict", s.postVerdict)
			r.Post("/cases/{case_id}/verdict", s.postCaseVerdict)
			r.Post("/cases/{case_id}/assign", s.postAssign)
			r.With(s.needLists).Put("/lists/{name}/items/{value}", s.putItem)
			r.With(s.needLists).Delete("/lists/{name}/items/{value}", s.deleteItem)
		})
	})
	return r
}

// ready runs every check at once, each within readyTimeout, and answers 200 if all pass, 503 if
// not, with each check's result: "ok" or what went wrong.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	results := make([]error, len(s.ops.Checks))
	var wg sync.WaitGroup
	for i, c := range s.ops.Checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			results[i] = c.Probe(ctx)
		})
	}
	wg.Wait()
	body := struct {
		Ready  bool              `json:"ready"`
		Checks map[string]string `json:"checks"`
	}{Ready: true, Checks: map[string]string{}}
	for i, c := range s.ops.Checks {
		body.Checks[c.Name] = "ok"
		if err := results[i]; err != nil {
			body.Ready = false
			body.Checks[c.Name] = err.Error()
		}
	}
	status := http.StatusOK
	if !body.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

// validUTF8 refuses a path or query that is not valid UTF-8 once decoded: it could not be
// answered in JSON.
func validUTF8(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok := utf8.ValidString(r.URL.Path)
		for k, vs := range r.URL.Query() {
			ok = ok && utf8.ValidString(k)
			for _, v := range vs {
				ok = ok && utf8.ValidString(v)
			}
		}
		if !ok {
			writeError(w, http.StatusBadRequest, "invalid_request", "the path and the query must be valid UTF-8")
			return
		}
		next.ServeHTTP(w, r)
	})
}

type ctxKey struct{}

// auth lets a request through with a token of the role or above: 401 without a valid token,
// 403 with one whose role is not enough. Tokens are compared as SHA-256 sums, in constant time.
func (s *Server) auth(role string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			raw, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || raw == "" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="fraud-detector"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "a bearer token is required")
				return
			}
			name, tokenRole, ok := s.Authenticate(raw)
			switch {
			case !ok:
				w.Header().Set("WWW-Authenticate", `Bearer realm="fraud-detector", error="invalid_token"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "the token is not valid")
			case role == RoleAnalyst && tokenRole != RoleAnalyst:
				writeError(w, http.StatusForbidden, "forbidden", "recording a verdict or changing a list needs the analyst role")
			case role == RoleViewer && tokenRole == RoleScorer:
				writeError(w, http.StatusForbidden, "forbidden", "a scorer token scores payments (POST /v1/score) and reads nothing")
			case role == RoleScorer && tokenRole != RoleScorer:
				writeError(w, http.StatusForbidden, "forbidden", "scoring needs a token of the scorer role")
			default:
				next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, name)))
			}
		})
	}
}

// recoverer turns a panic into a 500 and a log line, never a crash.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil && v != http.ErrAbortHandler {
				s.log.Error("api panic", "path", r.URL.Path, "panic", fmt.Sprint(v))
				writeError(w, http.StatusInternalServerError, "internal", "internal error")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeError answers an error. Messages may quote what the request sent (a value, a JSON
// member's name); any card number in them is masked here, once for all of them.
func writeError(w http.ResponseWriter, status int, code, message string) {
	var e errorBody
	msg, _ := payment.RedactPANs([]byte(message))
	e.Error.Code, e.Error.Message = code, string(msg)
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v, json.Deterministic(true))
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"cannot encode the response"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// storeError maps a store error to its status, in one place.
func (s *Server) storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, review.ErrNotFound), errors.Is(err, lists.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, lists.ErrUnknownList):
		writeError(w, http.StatusNotFound, "unknown_list", err.Error())
	case errors.Is(err, lists.ErrInvalidValue):
		writeError(w, http.StatusUnprocessableEntity, "invalid_value", err.Error())
	case errors.Is(err, lists.ErrInvalidNote):
		writeError(w, http.StatusUnprocessableEntity, "invalid_note", err.Error())
	case errors.Is(err, lists.ErrInvalidArgument):
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
	case errors.Is(err, review.ErrAlreadyDecided):
		writeError(w, http.StatusConflict, "already_decided", err.Error())
	case errors.Is(err, review.ErrInvalidCursor), errors.Is(err, review.ErrInvalidArgument):
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
	default:
		s.log.Error("api store", "err", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the store is not available; try again")
	}
}

type reviewList struct {
	Reviews []review.Review `json:"reviews"`
	Next    string          `json:"next_cursor,omitempty"`
}

// query returns the request's query parameters if each is one of known, given once and not
// empty; otherwise it answers 400 and returns false.
func query(w http.ResponseWriter, r *http.Request, known ...string) (url.Values, bool) {
	q := r.URL.Query()
	for k, vs := range q {
		switch {
		case !slices.Contains(known, k):
			writeError(w, http.StatusBadRequest, "invalid_request", "unknown parameter "+strconv.Quote(k))
			return nil, false
		case len(vs) != 1 || vs[0] == "":
			writeError(w, http.StatusBadRequest, "invalid_request", "parameter "+strconv.Quote(k)+" must be given once, not empty")
			return nil, false
		}
	}
	return q, true
}

// listQuery is what a list of reviews or cases asks for.
type listQuery struct {
	status, card, reason, cursor string
	from, to                     time.Time
	riskiest                     bool
	limit                        int
}

// parseList reads a list's query parameters; on a bad one it answers 400 and returns false.
func parseList(w http.ResponseWriter, r *http.Request) (listQuery, bool) {
	q, ok := query(w, r, "status", "card", "reason", "from", "to", "order", "limit", "cursor")
	if !ok {
		return listQuery{}, false
	}
	l := listQuery{status: q.Get("status"), card: q.Get("card"), reason: q.Get("reason"), cursor: q.Get("cursor"), limit: 50}
	var err error
	for name, dst := range map[string]*time.Time{"from": &l.from, "to": &l.to} {
		if v := q.Get(name); v != "" {
			if *dst, err = time.Parse(time.RFC3339, v); err != nil {
				writeError(w, http.StatusBadRequest, "invalid_request", name+" must be an RFC 3339 time")
				return listQuery{}, false
			}
		}
	}
	switch q.Get("order") {
	case "", "newest":
	case "riskiest":
		l.riskiest = true
	default:
		writeError(w, http.StatusBadRequest, "invalid_request", "order must be newest or riskiest")
		return listQuery{}, false
	}
	if v := q.Get("limit"); v != "" {
		if l.limit, err = strconv.Atoi(v); err != nil {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit must be a number from 1 to 500")
			return listQuery{}, false
		}
	}
	return l, true
}

func (s *Server) listReviews(w http.ResponseWriter, r *http.Request) {
	l, ok := parseList(w, r)
	if !ok {
		return
	}
	page, err := s.reviews.List(r.Context(), review.Filter{Status: l.status, Card: l.card, Reason: l.reason, From: l.from, To: l.to,
		Riskiest: l.riskiest, Limit: l.limit, Cursor: l.cursor})
	if err != nil {
		s.storeError(w, err)
		return
	}
	if page.Reviews == nil {
		page.Reviews = []review.Review{}
	}
	writeJSON(w, http.StatusOK, reviewList{Reviews: page.Reviews, Next: page.Next})
}

type reviewWithAudit struct {
	review.Review
	Audit []review.AuditEntry `json:"audit"`
}

func (s *Server) getReview(w http.ResponseWriter, r *http.Request) {
	rv, audit, err := s.reviews.Get(r.Context(), chi.URLParam(r, "payment_id"))
	if err != nil {
		s.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, reviewWithAudit{Review: rv, Audit: audit})
}

type verdictRequest struct {
	Label string `json:"label"`
	Note  string `json:"note"`
}

// readBody reads a request's body, up to the configured size, and answers 415 for a content type
// other than JSON, 413 for a body too large, 400 for one that cannot be read: then it returns
// false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the body is over %d bytes", s.cfg.MaxBodyBytes))
			return nil, false
		}
		writeError(w, http.StatusBadRequest, "invalid_request", "cannot read the body")
		return nil, false
	}
	return body, true
}

// readVerdict reads a verdict's body; on a bad one it answers 4xx and returns false.
func (s *Server) readVerdict(w http.ResponseWriter, r *http.Request) (verdictRequest, bool) {
	body, ok := s.readBody(w, r)
	if !ok {
		return verdictRequest{}, false
	}
	var req verdictRequest
	if err := json.Unmarshal(body, &req, json.RejectUnknownMembers(true)); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_json", "the body must be {\"label\": \"fraud\" | \"legitimate\", \"note\": string}: "+err.Error())
		return verdictRequest{}, false
	}
	if err := checkVerdict(req.Label, req.Note); err != nil {
		writeError(w, http.StatusUnprocessableEntity, err.code, err.msg)
		return verdictRequest{}, false
	}
	return req, true
}

// verdictError is why a verdict's label or note is refused.
type verdictError struct{ code, msg string }

func (e *verdictError) Error() string { return e.msg }

// checkVerdict says why a label or note cannot be recorded, or nil: the label is fraud or
// legitimate, the note at most 2000 characters and holds no card number.
func checkVerdict(label, note string) *verdictError {
	switch {
	case label != review.StatusFraud && label != review.StatusLegitimate:
		return &verdictError{"invalid_label", "label must be fraud or legitimate"}
	case utf8.RuneCountInString(note) > 2000:
		return &verdictError{"invalid_note", "note must be at most 2000 characters"}
	}
	if _, found := payment.RedactPANs([]byte(note)); found {
		return &verdictError{"invalid_note", "note holds what looks like a card number; verdicts never store one (the review names the card by its card_id)"}
	}
	return nil
}

func (s *Server) postVerdict(w http.ResponseWriter, r *http.Request) {
	req, ok := s.readVerdict(w, r)
	if !ok {
		return
	}
	analyst, _ := r.Context().Value(ctxKey{}).(string)
	rv, err := s.decidePayment(r.Context(), chi.URLParam(r, "payment_id"), req.Label, analyst, req.Note)
	if err != nil {
		s.verdictError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rv)
}

// verdictError answers a verdict's error.
func (s *Server) verdictError(w http.ResponseWriter, err error) {
	if errors.Is(err, review.ErrNotPublished) {
		writeError(w, http.StatusServiceUnavailable, "label_not_published", review.ErrNotPublished.Error())
		return
	}
	s.storeError(w, err)
}

// publishLease is how long a request holds the publishing of a label: another request sending
// the same verdict meanwhile leaves that label to it.
const publishLease = 30 * time.Second

// decidePayment records a verdict on a review and publishes its label. The same verdict again,
// whose label could not be published the first time, publishes it now; any other verdict on a
// decided review is ErrAlreadyDecided.
func (s *Server) decidePayment(ctx context.Context, id, label, analyst, note string) (review.Review, error) {
	v := review.Verdict{Label: label, Analyst: analyst, Note: note, DecidedAt: s.now().UTC()}
	rv, err := s.reviews.Decide(ctx, id, v)
	recorded := err == nil // not when the same verdict comes again to publish its label
	if errors.Is(err, review.ErrAlreadyDecided) {
		prev, _, gerr := s.reviews.Get(ctx, id)
		if gerr != nil || prev.Published || !sameVerdict(prev.Verdict, label, analyst, note) {
			return review.Review{}, err
		}
		rv, err = prev, nil
	}
	if err != nil {
		return review.Review{}, err
	}
	if recorded && s.ops.Verdicts != nil {
		s.ops.Verdicts.Count(rv)
	}
	if _, err := s.publish(ctx, []review.Review{rv}); err != nil {
		return review.Review{}, err
	}
	rv.Published = true
	return rv, nil
}

func sameVerdict(v *review.Verdict, label, analyst, note string) bool {
	return v != nil && v.Label == label && v.Analyst == analyst && v.Note == note
}

// publish sends the labels of decided reviews, each once: it claims them, publishes those it
// claimed (those already published, or claimed by a request sending the same verdict, are left)
// and marks them published; on a failure it releases what it did not publish, and returns
// review.ErrNotPublished. It returns the payments it labelled.
func (s *Server) publish(ctx context.Context, rvs []review.Review) ([]string, error) {
	ids := make([]string, len(rvs))
	byID := make(map[string]review.Review, len(rvs))
	for i, rv := range rvs {
		ids[i], byID[rv.PaymentID] = rv.PaymentID, rv
	}
	claimed, err := s.reviews.ClaimPublish(ctx, ids, publishLease)
	if err != nil {
		s.log.Error("labels not claimed", "payments", len(ids), "err", err)
		return nil, review.ErrNotPublished
	}
	labelled := []string{}
	for i, id := range claimed {
		rv := byID[id]
		v := rv.Verdict
		label := Label{PaymentID: rv.PaymentID, CardID: rv.CardID, Label: v.Label, Analyst: v.Analyst, Note: v.Note, DecidedAt: v.DecidedAt}
		if err := s.labels.Publish(ctx, label); err != nil {
			s.log.Error("label not published", "payment_id", rv.PaymentID, "err", err)
			if rerr := s.reviews.ReleasePublish(ctx, claimed[i:]); rerr != nil {
				s.log.Warn("label claims not released; they lapse in 30 s", "err", rerr)
			}
			return nil, review.ErrNotPublished
		}
		if err := s.reviews.MarkPublished(ctx, rv.PaymentID); err != nil {
			s.log.Warn("label published, not marked so", "payment_id", rv.PaymentID, "err", err)
		}
		labelled = append(labelled, id)
	}
	return labelled, nil
}

type cardView struct {
	CardID  string          `json:"card_id"`
	Windows []windowCount   `json:"windows"`
	Recent  []review.Review `json:"recent_reviews"`
}

type windowCount struct {
	Start time.Time `json:"start"`
	Count int64     `json:"count"`
}

func (s *Server) getCard(w http.ResponseWriter, r *http.Request) {
	card := chi.URLParam(r, "card_id")
	counts, err := s.cards.Counts(r.Context(), card)
	if err != nil {
		s.storeError(w, err)
		return
	}
	page, err := s.reviews.List(r.Context(), review.Filter{Card: card, Limit: 20})
	if err != nil {
		s.storeError(w, err)
		return
	}
	v := cardView{CardID: card, Windows: []windowCount{}, Recent: page.Reviews}
	if v.Recent == nil {
		v.Recent = []review.Review{}
	}
	for start, n := range counts {
		v.Windows = append(v.Windows, windowCount{Start: start, Count: n})
	}
	slices.SortFunc(v.Windows, func(a, b windowCount) int { return b.Start.Compare(a.Start) })
	v.Windows = v.Windows[:min(len(v.Windows), 24)] // the newest day's worth
	writeJSON(w, http.StatusOK, v)
}
