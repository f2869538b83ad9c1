package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/lists"
	"github.com/paysentry/fraud-detector/internal/review"
)

// now is the tests' clock.
var now = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

const (
	analystToken = "analyst-token-0123456789"
	viewerToken  = "viewer-token-0123456789"
	pan          = "4111111111111111"
)

type fakeStore struct {
	mu      sync.Mutex
	filters []review.CaseFilter
	page    review.CasePage
	listErr error
	cases   map[string]review.Case
	reviews map[string][]review.Review
	getErr  error
}

func (s *fakeStore) ListCases(_ context.Context, f review.CaseFilter) (review.CasePage, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.filters = append(s.filters, f)
	return s.page, s.listErr
}

func (s *fakeStore) GetCase(_ context.Context, id string) (review.Case, []review.Review, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.getErr != nil {
		return review.Case{}, nil, s.getErr
	}
	c, ok := s.cases[id]
	if !ok {
		return review.Case{}, nil, review.ErrNotFound
	}
	return c, s.reviews[id], nil
}

func (s *fakeStore) lastFilter(t *testing.T) review.CaseFilter {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.filters) == 0 {
		t.Fatal("the store was not asked for cases")
	}
	return s.filters[len(s.filters)-1]
}

type call struct{ op, id, label, analyst, note string }

type fakeActions struct {
	mu    sync.Mutex
	calls []call
	err   error
}

func (a *fakeActions) record(c call) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, c)
	return a.err
}

func (a *fakeActions) DecideCase(_ context.Context, id, label, analyst, note string) error {
	return a.record(call{"case", id, label, analyst, note})
}

func (a *fakeActions) DecidePayment(_ context.Context, id, label, analyst, note string) error {
	return a.record(call{"payment", id, label, analyst, note})
}

func (a *fakeActions) AssignCase(_ context.Context, id, analyst string) error {
	return a.record(call{"assign", id, "", analyst, ""})
}

func (a *fakeActions) taken() []call {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls)
}

type fakeCards struct {
	counts map[time.Time]int64
	err    error
}

func (c *fakeCards) Counts(context.Context, string) (map[time.Time]int64, error) {
	return c.counts, c.err
}

type fakeLists struct{}

func (fakeLists) Specs() []lists.Spec {
	return []lists.Spec{{Name: "blocked_cards", Kind: "card", Description: "Cards whose every payment is flagged"}}
}

func (fakeLists) Counts(context.Context) (map[string]int, error) {
	return map[string]int{"blocked_cards": 7}, nil
}

type fixture struct {
	c       *Console
	h       http.Handler
	store   *fakeStore
	actions *fakeActions
	cards   *fakeCards
	logs    *bytes.Buffer
}

func authenticate(token string) (string, string, bool) {
	switch token {
	case analystToken:
		return "alice", roleAnalyst, true
	case viewerToken:
		return "victor", roleViewer, true
	}
	return "", "", false
}

func score(f float64) *float64 { return &f }

func newFixture(t *testing.T, cfg Config, ls Lists) *fixture {
	t.Helper()
	if cfg.SessionKey == nil {
		cfg.SessionKey = bytes.Repeat([]byte("k"), 32)
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	f := &fixture{store: &fakeStore{cases: map[string]review.Case{}, reviews: map[string][]review.Review{}},
		actions: &fakeActions{}, cards: &fakeCards{}, logs: &bytes.Buffer{}}
	live := func(context.Context) LiveStats {
		return LiveStats{PaymentsPerSecond: 1234.5, FlaggedPerSecond: 6.25, Lag: 42}
	}
	c, err := New(cfg, authenticate, f.store, f.actions, f.cards, ls, live, slog.New(slog.NewJSONHandler(f.logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	c.now = func() time.Time { return now }
	f.c, f.h = c, c.Handler()
	return f
}

// do serves one request; form, when not nil, is its urlencoded body.
func (f *fixture) do(t *testing.T, method, target string, ck *http.Cookie, form url.Values) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req := httptest.NewRequest(method, target, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if ck != nil {
		req.AddCookie(ck)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, req)
	checkHeaders(t, w)
	return w
}

// checkHeaders asserts what every response of the console carries, and that no page holds
// anything inline that the CSP forbids.
func checkHeaders(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	want := map[string]string{
		"Content-Security-Policy": csp,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "same-origin",
		"X-Frame-Options":         "DENY",
	}
	for k, v := range want {
		if got := w.Header().Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") && (w.Code < 300 || w.Code >= 400) {
		if got := w.Header().Get("Cache-Control"); got != "no-store" {
			t.Errorf("a page's Cache-Control = %q, want no-store", got)
		}
		body := w.Body.String()
		if body == "" { // HEAD
			return
		}
		if regexp.MustCompile(`<script(\s[^>]*)?>[^<]`).MatchString(body) || !regexp.MustCompile(`<script src="/ui/static/console.js\?v=[0-9a-f]+" defer></script>`).MatchString(body) {
			t.Error("a page must load its script from /ui/static/console.js, with nothing inline")
		}
		if strings.Contains(body, "<style") || strings.Contains(body, " style=") || regexp.MustCompile(`\son[a-z]+=`).MatchString(body) {
			t.Error("a page holds an inline style or an event handler attribute")
		}
	}
}

// signIn signs in through the form and returns the session cookie and its CSRF token.
func (f *fixture) signIn(t *testing.T, token string) (*http.Cookie, string) {
	t.Helper()
	w := f.do(t, http.MethodPost, "/ui/sign-in", nil, url.Values{"token": {token}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("sign-in: status %d, want 303", w.Code)
	}
	for _, ck := range w.Result().Cookies() {
		if ck.Name == cookieName {
			s, ok := f.c.decode(ck.Value)
			if !ok {
				t.Fatal("the console does not accept its own cookie")
			}
			return ck, s.CSRF
		}
	}
	t.Fatal("sign-in set no session cookie")
	return nil, ""
}

func wantStatus(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	if w.Code != status {
		t.Fatalf("status %d, want %d; body:\n%s", w.Code, status, w.Body)
	}
}

func wantErrorPage(t *testing.T, w *httptest.ResponseRecorder, status int) {
	t.Helper()
	wantStatus(t, w, status)
	if !strings.Contains(w.Body.String(), `<h1 id="error-title">`) {
		t.Fatalf("no error page: %s", w.Body)
	}
}

func TestSignIn(t *testing.T) {
	for _, secure := range []bool{false, true} {
		f := newFixture(t, Config{Secure: secure}, nil)
		w := f.do(t, http.MethodPost, "/ui/sign-in", nil, url.Values{"token": {analystToken}})
		wantStatus(t, w, http.StatusSeeOther)
		if loc := w.Header().Get("Location"); loc != "/ui/cases" {
			t.Errorf("Location = %q, want /ui/cases", loc)
		}
		cks := w.Result().Cookies()
		if len(cks) != 1 || cks[0].Name != "fd_session" {
			t.Fatalf("cookies %v, want fd_session", cks)
		}
		ck := cks[0]
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui" || ck.Secure != secure || ck.MaxAge != 12*3600 {
			t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui, Secure=%v, MaxAge=43200", ck, secure)
		}
		s, ok := f.c.decode(ck.Value)
		if !ok || s.Name != "alice" || s.Role != roleAnalyst || s.Exp != now.Add(12*time.Hour).Unix() || len(s.CSRF) != 43 {
			t.Errorf("session %+v, %v", s, ok)
		}
		if strings.Contains(f.logs.String(), analystToken) || strings.Contains(f.logs.String(), ck.Value) {
			t.Error("the log holds the token or the cookie")
		}
	}

	f := newFixture(t, Config{}, nil)
	t.Run("sign-in form", func(t *testing.T) {
		w := f.do(t, http.MethodGet, "/ui/sign-in?next=%2Fui%2Fcases%2Fp1", nil, nil)
		wantStatus(t, w, http.StatusOK)
		body := w.Body.String()
		for _, hook := range []string{`<form id="sign-in" method="post" action="/ui/sign-in">`,
			`<input type="password" name="token" id="token"`, `<button type="submit" id="sign-in-button">`,
			`name="next" value="/ui/cases/p1"`} {
			if !strings.Contains(body, hook) {
				t.Errorf("the sign-in page lacks %s", hook)
			}
		}
	})
	t.Run("next", func(t *testing.T) {
		for next, want := range map[string]string{
			"/ui/cases/p1":             "/ui/cases/p1",
			"/ui/cases?status=fraud":   "/ui/cases?status=fraud",
			"//evil.example/ui/":       "/ui/cases",
			"https://evil.example/ui/": "/ui/cases",
			"/ui/..//evil.example":     "/ui/cases",
			"/ui/\\evil.example":       "/ui/cases",
			"/elsewhere":               "/ui/cases",
		} {
			w := f.do(t, http.MethodPost, "/ui/sign-in", nil, url.Values{"token": {viewerToken}, "next": {next}})
			wantStatus(t, w, http.StatusSeeOther)
			if loc := w.Header().Get("Location"); loc != want {
				t.Errorf("next %q: Location %q, want %q", next, loc, want)
			}
		}
	})
	t.Run("bad token", func(t *testing.T) {
		for _, token := range []string{"", "wrong", strings.Repeat("x", 5000)} {
			w := f.do(t, http.MethodPost, "/ui/sign-in", nil, url.Values{"token": {token}})
			wantStatus(t, w, http.StatusUnauthorized)
			if len(w.Result().Cookies()) != 0 {
				t.Error("a refused sign-in set a cookie")
			}
			if !strings.Contains(w.Body.String(), `id="sign-in-error"`) || !strings.Contains(w.Body.String(), `<form id="sign-in"`) {
				t.Errorf("a refused sign-in must show the form and a message: %s", w.Body)
			}
		}
	})
	t.Run("cross-origin", func(t *testing.T) {
		for _, h := range []map[string]string{
			{"Origin": "https://evil.example"},
			{"Origin": "null"},
			{"Sec-Fetch-Site": "cross-site"},
		} {
			req := httptest.NewRequest(http.MethodPost, "/ui/sign-in", strings.NewReader("token="+analystToken))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, v := range h {
				req.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			f.h.ServeHTTP(w, req)
			checkHeaders(t, w)
			wantErrorPage(t, w, http.StatusForbidden)
			if len(w.Result().Cookies()) != 0 {
				t.Errorf("%v: a cross-origin sign-in set a cookie", h)
			}
		}
		req := httptest.NewRequest(http.MethodPost, "http://console.example/ui/sign-in", strings.NewReader("token="+analystToken))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", "http://console.example")
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		w := httptest.NewRecorder()
		f.h.ServeHTTP(w, req)
		wantStatus(t, w, http.StatusSeeOther)
	})
}

func TestSignOut(t *testing.T) {
	f := newFixture(t, Config{}, nil)
	ck, csrf := f.signIn(t, viewerToken)
	w := f.do(t, http.MethodPost, "/ui/sign-out", ck, url.Values{})
	wantErrorPage(t, w, http.StatusForbidden)
	w = f.do(t, http.MethodPost, "/ui/sign-out", ck, url.Values{"csrf": {csrf}})
	wantStatus(t, w, http.StatusSeeOther)
	if loc := w.Header().Get("Location"); loc != "/ui/sign-in" {
		t.Errorf("Location %q, want /ui/sign-in", loc)
	}
	cks := w.Result().Cookies()
	if len(cks) != 1 || cks[0].Name != cookieName || cks[0].MaxAge >= 0 || cks[0].Value != "" {
		t.Errorf("cookies %v: want fd_session cleared", cks)
	}
}

func TestSessionRequired(t *testing.T) {
	f := newFixture(t, Config{}, nil)
	f.store.cases["p1"] = review.Case{ID: "p1", CardID: "card-1", Status: review.StatusOpen}
	good, csrf := f.signIn(t, analystToken)
	payload, sig, _ := strings.Cut(good.Value, ".")
	raw, _ := b64.DecodeString(payload)
	forged := strings.Replace(string(raw), `"alice"`, `"mallory"`, 1)

	other := newFixture(t, Config{SessionKey: bytes.Repeat([]byte("o"), 32)}, nil)
	otherCk, _ := other.signIn(t, analystToken)

	cookies := map[string]*http.Cookie{
		"none":         nil,
		"tampered":     {Name: cookieName, Value: b64.EncodeToString([]byte(forged)) + "." + sig},
		"bad sig":      {Name: cookieName, Value: payload + "." + b64.EncodeToString([]byte("nope"))},
		"garbage":      {Name: cookieName, Value: "garbage"},
		"other key":    {Name: cookieName, Value: otherCk.Value},
		"unsigned":     {Name: cookieName, Value: payload},
		"empty":        {Name: cookieName, Value: ""},
		"wrong cookie": {Name: "session", Value: good.Value},
	}
	cookies["expired"] = good // valid but for its age: checked 12h and a second after signing in
	gone := newFixture(t, Config{Known: func(name, role string) bool { return false }}, nil)
	goneCk, _ := f.signIn(t, analystToken)
	cookies["token removed"] = goneCk
	for name, ck := range cookies {
		t.Run(name, func(t *testing.T) {
			if name == "expired" {
				f.c.now = func() time.Time { return now.Add(12*time.Hour + time.Second) }
			} else {
				f.c.now = func() time.Time { return now }
			}
			f := f
			if name == "token removed" {
				f = gone // the same key; a configuration that no longer has alice's token
			}
			for _, target := range []string{"/ui/cases?status=fraud", "/ui/cases/p1", "/ui/lists"} {
				w := f.do(t, http.MethodGet, target, ck, nil)
				wantStatus(t, w, http.StatusSeeOther)
				if want := "/ui/sign-in?next=" + url.QueryEscape(target); w.Header().Get("Location") != want {
					t.Errorf("GET %s: Location %q, want %q", target, w.Header().Get("Location"), want)
				}
			}
			for _, target := range []string{"/ui/cases/p1/verdict", "/ui/cases/p1/assign", "/ui/payments/p1/verdict", "/ui/sign-out"} {
				w := f.do(t, http.MethodPost, target, ck, url.Values{"csrf": {csrf}, "label": {"fraud"}, "case": {"p1"}})
				wantStatus(t, w, http.StatusSeeOther)
				if loc := w.Header().Get("Location"); loc != "/ui/sign-in" {
					t.Errorf("POST %s: Location %q, want /ui/sign-in", target, loc)
				}
			}
			w := f.do(t, http.MethodGet, "/ui/live.json", ck, nil)
			wantStatus(t, w, http.StatusUnauthorized)
			if !strings.Contains(w.Body.String(), `"code":"unauthorized"`) || w.Header().Get("Content-Type") != "application/json" {
				t.Errorf("live.json without a session: %s", w.Body)
			}
		})
	}
	if calls := f.actions.taken(); len(calls) != 0 {
		t.Errorf("actions taken without a session: %v", calls)
	}
	f.c.now = func() time.Time { return now }
	wantStatus(t, f.do(t, http.MethodGet, "/ui/cases", good, nil), http.StatusOK)
}

func queueFixture(t *testing.T) *fixture {
	f := newFixture(t, Config{}, nil)
	f.store.page = review.CasePage{Cases: []review.Case{
		{ID: "p1", CardID: "card-1", Status: review.StatusOpen, OpenedAt: now.Add(-time.Hour), Score: score(0.9731),
			Reasons: []string{"model_score", "card_velocity_1h"}, Payments: 3, Assignee: "alice"},
		{ID: "p2", CardID: "card-2", Status: review.StatusFraud, OpenedAt: now.Add(-2 * time.Hour), Reasons: []string{"blocked_merchant", "odd_code"}, Payments: 1},
	}, Next: "cursor-2"}
	return f
}

func TestQueue(t *testing.T) {
	f := queueFixture(t)
	ck, csrf := f.signIn(t, analystToken)
	w := f.do(t, http.MethodGet, "/ui/cases", ck, nil)
	wantStatus(t, w, http.StatusOK)
	got := f.store.lastFilter(t)
	if want := (review.CaseFilter{Status: review.StatusOpen, Riskiest: true, Limit: 50}); got != want {
		t.Errorf("filter %+v, want %+v", got, want)
	}
	body := w.Body.String()
	for _, hook := range []string{
		`<table id="queue"`, `<tr class="case" data-case="p1"`, `<tr class="case" data-case="p2"`,
		`<a class="case-link" href="/ui/cases/p1">card-1</a>`, `<a class="case-link" href="/ui/cases/p2">`,
		`>0.97<`, `>—<`, "High fraud model score, Many payments on the card within an hour", "Merchant on a block list, odd_code",
		"2026-11-30 11:00:00", `<div id="live"`, `data-live="payments_per_second">1234.5<`, `data-live="lag">42<`,
		`<span id="user-name">alice</span>`, `<span id="user-role" class="role">analyst</span>`,
		`<form id="sign-out" method="post" action="/ui/sign-out">`, `name="csrf" value="` + csrf + `"`,
		`<a id="next-page" rel="next" href="/ui/cases?cursor=cursor-2&amp;status=open">Next page</a>`,
		`<form class="quick quick-fraud" method="post" action="/ui/cases/p1/verdict">`,
		`<form class="quick quick-legitimate" method="post" action="/ui/cases/p1/verdict">`,
	} {
		if !strings.Contains(body, hook) {
			t.Errorf("the queue lacks %s", hook)
		}
	}
	if strings.Contains(body, `action="/ui/cases/p2/verdict"`) {
		t.Error("a decided case has verdict buttons in the queue")
	}

	t.Run("filters", func(t *testing.T) {
		q := url.Values{"status": {"fraud"}, "reason": {"model_score"}, "card": {"card-9"}, "from": {"2026-11-01T10:30"},
			"to": {"2026-11-30T00:00:00Z"}, "order": {"newest"}, "cursor": {"c1"}, "utm": {"ignored"}}
		w := f.do(t, http.MethodGet, "/ui/cases?"+q.Encode(), ck, nil)
		wantStatus(t, w, http.StatusOK)
		want := review.CaseFilter{Status: "fraud", Reason: "model_score", Card: "card-9", From: time.Date(2026, 11, 1, 10, 30, 0, 0, time.UTC),
			To: time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), Riskiest: false, Limit: 50, Cursor: "c1"}
		if got := f.store.lastFilter(t); !filterEqual(got, want) {
			t.Errorf("filter %+v, want %+v", got, want)
		}
		body := w.Body.String()
		for _, s := range []string{`value="2026-11-01T10:30"`, `value="card-9"`, `<option value="fraud" selected>`, `<option value="newest" selected>`} {
			if !strings.Contains(body, s) {
				t.Errorf("the form does not show %s", s)
			}
		}
		next := regexp.MustCompile(`id="next-page" rel="next" href="([^"]+)"`).FindStringSubmatch(body)
		if next == nil {
			t.Fatal("no next page link")
		}
		u, _ := url.Parse(strings.ReplaceAll(next[1], "&amp;", "&"))
		if nq := u.Query(); nq.Get("cursor") != "cursor-2" || nq.Get("status") != "fraud" || nq.Get("card") != "card-9" || nq.Get("order") != "newest" ||
			nq.Get("from") != "2026-11-01T10:30:00Z" {
			t.Errorf("next page %s keeps the filter and the cursor", u)
		}

		w = f.do(t, http.MethodGet, "/ui/cases?status=&order=riskiest", ck, nil)
		wantStatus(t, w, http.StatusOK)
		if got := f.store.lastFilter(t); got.Status != "" || !got.Riskiest {
			t.Errorf("status= selects every status, riskiest first: %+v", got)
		}
	})

	t.Run("no next page", func(t *testing.T) {
		f.store.mu.Lock()
		f.store.page.Next = ""
		f.store.mu.Unlock()
		w := f.do(t, http.MethodGet, "/ui/cases", ck, nil)
		if strings.Contains(w.Body.String(), "next-page") {
			t.Error("a next-page link on the last page")
		}
	})
}

func filterEqual(a, b review.CaseFilter) bool {
	return a.Status == b.Status && a.Reason == b.Reason && a.Card == b.Card && a.From.Equal(b.From) && a.To.Equal(b.To) &&
		a.Riskiest == b.Riskiest && a.Limit == b.Limit && a.Cursor == b.Cursor
}

func TestQueueBadFilter(t *testing.T) {
	f := queueFixture(t)
	ck, _ := f.signIn(t, viewerToken)
	for _, q := range []string{
		"status=closed", "order=oldest", "from=yesterday", "to=2026-13-01T00:00", "from=2026-11-02T00:00&to=2026-11-01T00:00",
		"card=" + pan, "card=" + strings.Repeat("c", 200), "status=open&status=fraud", "reason=%00", "card=%ff",
	} {
		f.store.filters = nil
		w := f.do(t, http.MethodGet, "/ui/cases?"+q, ck, nil)
		wantStatus(t, w, http.StatusBadRequest)
		if !strings.Contains(w.Body.String(), `id="filter-error"`) || !strings.Contains(w.Body.String(), `<form id="filter"`) {
			t.Errorf("%s: the queue page with a message, want: %s", q, w.Body)
		}
		if len(f.store.filters) != 0 {
			t.Errorf("%s: the store was asked", q)
		}
		if strings.Contains(w.Body.String(), pan) {
			t.Errorf("%s: the page shows the card number", q)
		}
	}
	for _, err := range []error{review.ErrInvalidCursor, fmtErr(review.ErrInvalidArgument)} {
		f.store.listErr = err
		w := f.do(t, http.MethodGet, "/ui/cases?cursor=zzz", ck, nil)
		wantStatus(t, w, http.StatusBadRequest)
	}
	f.store.listErr = errors.New("redis: connection refused")
	wantErrorPage(t, f.do(t, http.MethodGet, "/ui/cases", ck, nil), http.StatusServiceUnavailable)
	if !strings.Contains(f.logs.String(), `"level":"ERROR"`) {
		t.Error("a store error is not logged at error level")
	}
}

func fmtErr(err error) error { return errors.Join(errors.New("limit out of range"), err) }

func caseFixture(t *testing.T) *fixture {
	f := newFixture(t, Config{}, nil)
	f.store.cases["p1"] = review.Case{ID: "p1", CardID: "card-1", Status: review.StatusOpen, OpenedAt: now.Add(-3 * time.Hour),
		UpdatedAt: now.Add(-time.Hour), Score: score(0.912), Reasons: []string{"amount_over_threshold", "model_score"}, Payments: 2}
	f.store.reviews["p1"] = []review.Review{
		{PaymentID: "p2", CardID: "card-1", Status: review.StatusOpen, Score: score(0.912), CreatedAt: now.Add(-time.Hour),
			Reasons: []string{"model_score"}, Decision: decision.Decision{Reasons: []decision.Reason{
				{Code: "model_score", Detail: "fraud probability 0.912 is over 0.5 (model v3)", Rule: "model_score"}},
				Payment: jsontext.Value(`{"payment_id":"p2","card_id":"card-1","amount":"250.00","currency":"EUR","timestamp":"2026-11-30T11:00:00Z",` +
					`"merchant_id":"m-7","country":"FR","channel":"web","card_number":"411111******1111"}`)}},
		{PaymentID: "p1", CardID: "card-1", Status: review.StatusLegitimate, CreatedAt: now.Add(-3 * time.Hour),
			Reasons: []string{"amount_over_threshold"}, Verdict: &review.Verdict{Label: "legitimate", Analyst: "bob", Note: "known customer"},
			Decision: decision.Decision{Reasons: []decision.Reason{{Code: "amount_over_threshold", Detail: "amount 150 USD is over the threshold of 100 USD"}},
				Payment: jsontext.Value(`{"payment_id":"p1","amount":150,"currency":"USD","timestamp":"2026-11-30T09:00:00Z","merchant_id":"m-1","country":"US","channel":"pos"}`)}},
	}
	f.store.cases["done"] = review.Case{ID: "done", CardID: "card-3", Status: review.StatusFraud,
		Verdict: &review.Verdict{Label: "fraud", Analyst: "bob", Note: "chargeback", DecidedAt: now}}
	return f
}

func TestCasePage(t *testing.T) {
	f := caseFixture(t)
	f.cards.counts = map[time.Time]int64{now.Add(-time.Hour).Truncate(time.Hour): 3, now.Add(-2 * time.Hour).Truncate(time.Hour): 2}
	ck, csrf := f.signIn(t, analystToken)
	w := f.do(t, http.MethodGet, "/ui/cases/p1", ck, nil)
	wantStatus(t, w, http.StatusOK)
	body := w.Body.String()
	for _, hook := range []string{
		`<h1 id="case-title">Case p1</h1>`, `<span id="case-status" class="status status-open">open</span>`, `<span id="case-score">0.91</span>`,
		`<form id="case-verdict" method="post" action="/ui/cases/p1/verdict">`, `<textarea name="note"`,
		`<button type="submit" name="label" value="fraud" id="verdict-fraud"`, `<button type="submit" name="label" value="legitimate" id="verdict-legitimate"`,
		`<form id="assign" method="post" action="/ui/cases/p1/assign">`, `<svg id="history-chart"`, `<table id="payments"`,
		`<tr class="payment" data-payment="p2">`, `<tr class="payment" data-payment="p1">`, `250.00 EUR`, `150 USD`, "m-7", "FR", "web",
		"2026-11-30 11:00:00", "fraud probability 0.912 is over 0.5 (model v3)", "Amount over the threshold", "by bob: known customer",
		`<form class="payment-verdict" method="post" action="/ui/payments/p2/verdict">`, `name="case" value="p1"`,
		`value="` + csrf + `"`, `<table id="windows"`, "2026-11-30 11:00:00</td><td class=\"num\">3<",
	} {
		if !strings.Contains(body, hook) {
			t.Errorf("the case page lacks %s", hook)
		}
	}
	if strings.Contains(body, `action="/ui/payments/p1/verdict"`) {
		t.Error("a decided payment has a verdict form")
	}
	if strings.Contains(body, "411111******1111") || strings.Contains(body, "card_number") {
		t.Error("the page shows the card number field")
	}

	w = f.do(t, http.MethodGet, "/ui/cases/done", ck, nil)
	wantStatus(t, w, http.StatusOK)
	if strings.Contains(w.Body.String(), `id="case-verdict"`) || !strings.Contains(w.Body.String(), "fraud by bob") {
		t.Error("a decided case shows its verdict, not a form")
	}

	wantErrorPage(t, f.do(t, http.MethodGet, "/ui/cases/nope", ck, nil), http.StatusNotFound)
	wantErrorPage(t, f.do(t, http.MethodGet, "/ui/cases/"+strings.Repeat("x", 600), ck, nil), http.StatusNotFound)

	f.cards.err = errors.New("redis down")
	w = f.do(t, http.MethodGet, "/ui/cases/p1", ck, nil)
	wantStatus(t, w, http.StatusOK)
	if !strings.Contains(w.Body.String(), `id="history-error"`) {
		t.Error("the card's history failing is not said")
	}

	f.store.getErr = errors.New("redis: i/o timeout")
	wantErrorPage(t, f.do(t, http.MethodGet, "/ui/cases/p1", ck, nil), http.StatusServiceUnavailable)
}

func TestViewerSeesNoForms(t *testing.T) {
	f := caseFixture(t)
	f.store.page = review.CasePage{Cases: []review.Case{f.store.cases["p1"]}}
	ck, _ := f.signIn(t, viewerToken)
	for _, target := range []string{"/ui/cases", "/ui/cases/p1", "/ui/lists"} {
		w := f.do(t, http.MethodGet, target, ck, nil)
		wantStatus(t, w, http.StatusOK)
		body := w.Body.String()
		for _, s := range []string{"verdict-fraud", "verdict-legitimate", "/verdict", "/assign", "quick-fraud", `name="label"`, "Assign to me"} {
			if strings.Contains(body, s) {
				t.Errorf("%s: a viewer sees %q", target, s)
			}
		}
		if !strings.Contains(body, `<span id="user-role" class="role">viewer</span>`) {
			t.Errorf("%s: the header does not show the viewer's role", target)
		}
	}
}

func TestActions(t *testing.T) {
	f := caseFixture(t)
	analyst, csrf := f.signIn(t, analystToken)
	viewer, viewerCSRF := f.signIn(t, viewerToken)
	wrong := "x" + csrf[1:] // the token with its first character changed
	if csrf[0] == 'x' {
		wrong = "y" + csrf[1:]
	}

	t.Run("refused", func(t *testing.T) {
		for name, tc := range map[string]struct {
			ck   *http.Cookie
			form url.Values
		}{
			"viewer":       {viewer, url.Values{"csrf": {viewerCSRF}, "label": {"fraud"}}},
			"no csrf":      {analyst, url.Values{"label": {"fraud"}}},
			"wrong csrf":   {analyst, url.Values{"csrf": {wrong}, "label": {"fraud"}}},
			"viewer csrf":  {analyst, url.Values{"csrf": {viewerCSRF}, "label": {"fraud"}}},
			"two csrf":     {analyst, url.Values{"csrf": {"", csrf}, "label": {"fraud"}}},
			"csrf in url?": {analyst, url.Values{"label": {"fraud"}}},
		} {
			for _, target := range []string{"/ui/cases/p1/verdict", "/ui/cases/p1/assign", "/ui/payments/p2/verdict"} {
				to := target
				if name == "csrf in url?" {
					to += "?csrf=" + url.QueryEscape(csrf)
				}
				w := f.do(t, http.MethodPost, to, tc.ck, tc.form)
				wantErrorPage(t, w, http.StatusForbidden)
			}
		}
		if calls := f.actions.taken(); len(calls) != 0 {
			t.Fatalf("actions taken: %v", calls)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		for name, form := range map[string]url.Values{
			"no label":   {"csrf": {csrf}},
			"bad label":  {"csrf": {csrf}, "label": {"maybe"}},
			"long note":  {"csrf": {csrf}, "label": {"fraud"}, "note": {strings.Repeat("é", 2001)}},
			"pan note":   {"csrf": {csrf}, "label": {"fraud"}, "note": {"card 4111 1111 1111 1111"}},
			"utf-8 note": {"csrf": {csrf}, "label": {"fraud"}, "note": {"\xff"}},
		} {
			w := f.do(t, http.MethodPost, "/ui/cases/p1/verdict", analyst, form)
			wantErrorPage(t, w, http.StatusBadRequest)
			if strings.Contains(w.Body.String(), "4111") {
				t.Errorf("%s: the page echoes the card number", name)
			}
		}
		if calls := f.actions.taken(); len(calls) != 0 {
			t.Fatalf("actions taken: %v", calls)
		}
	})

	t.Run("recorded", func(t *testing.T) {
		note := strings.Repeat("n", 1999) + "é"
		w := f.do(t, http.MethodPost, "/ui/cases/p1/verdict", analyst, url.Values{"csrf": {csrf}, "label": {"fraud"}, "note": {note}})
		wantStatus(t, w, http.StatusSeeOther)
		if loc := w.Header().Get("Location"); loc != "/ui/cases/p1" {
			t.Errorf("Location %q, want /ui/cases/p1", loc)
		}
		w = f.do(t, http.MethodPost, "/ui/cases/p%2F1/verdict", analyst, url.Values{"csrf": {csrf}, "label": {"legitimate"},
			"back": {"queue"}, "query": {"status=open&card=card-1&order=newest&cursor=c9&x=%3Cb%3E"}})
		wantStatus(t, w, http.StatusSeeOther)
		if loc := w.Header().Get("Location"); loc != "/ui/cases?card=card-1&order=newest&status=open" {
			t.Errorf("back to the queue: Location %q", loc)
		}
		w = f.do(t, http.MethodPost, "/ui/payments/p2/verdict", analyst, url.Values{"csrf": {csrf}, "label": {"legitimate"}, "note": {"refund"}, "case": {"p1"}})
		wantStatus(t, w, http.StatusSeeOther)
		if loc := w.Header().Get("Location"); loc != "/ui/cases/p1" {
			t.Errorf("payment verdict: Location %q, want /ui/cases/p1", loc)
		}
		w = f.do(t, http.MethodPost, "/ui/cases/p1/assign", analyst, url.Values{"csrf": {csrf}})
		wantStatus(t, w, http.StatusSeeOther)
		want := []call{
			{"case", "p1", "fraud", "alice", note},
			{"case", "p/1", "legitimate", "alice", ""},
			{"payment", "p2", "legitimate", "alice", "refund"},
			{"assign", "p1", "", "alice", ""},
		}
		if got := f.actions.taken(); !slices.Equal(got, want) {
			t.Errorf("calls\n%v\nwant\n%v", got, want)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for err, status := range map[error]int{
			review.ErrNotFound:                        http.StatusNotFound,
			review.ErrAlreadyDecided:                  http.StatusConflict,
			errors.New("kafka: broker not available"): http.StatusServiceUnavailable,
		} {
			f.actions.mu.Lock()
			f.actions.err = err
			f.actions.mu.Unlock()
			for _, target := range []string{"/ui/cases/p1/verdict", "/ui/payments/p2/verdict", "/ui/cases/p1/assign"} {
				w := f.do(t, http.MethodPost, target, analyst, url.Values{"csrf": {csrf}, "label": {"fraud"}, "case": {"p1"}})
				wantErrorPage(t, w, status)
			}
		}
	})

	t.Run("methods", func(t *testing.T) {
		w := f.do(t, http.MethodGet, "/ui/cases/p1/verdict", analyst, nil)
		wantErrorPage(t, w, http.StatusMethodNotAllowed)
		if w.Header().Get("Allow") != "POST" {
			t.Errorf("Allow %q", w.Header().Get("Allow"))
		}
	})
}

func TestEscaping(t *testing.T) {
	const xss = `<script>alert(1)</script>`
	f := newFixture(t, Config{}, nil)
	c := review.Case{ID: "p1", CardID: xss, Status: review.StatusOpen, Reasons: []string{xss}, Assignee: xss,
		Verdict: &review.Verdict{Label: "fraud", Analyst: xss, Note: xss + " " + pan}}
	f.store.cases["p1"] = c
	f.store.page = review.CasePage{Cases: []review.Case{c}}
	payment, _ := json.Marshal(map[string]any{"payment_id": xss, "merchant_id": xss + pan, "currency": xss, "amount": pan, "country": "FR", "channel": xss})
	f.store.reviews["p1"] = []review.Review{{PaymentID: xss, CardID: xss, Status: review.StatusFraud,
		Verdict:  &review.Verdict{Label: "fraud", Analyst: xss, Note: "see " + pan + " " + xss},
		Decision: decision.Decision{Reasons: []decision.Reason{{Code: xss, Detail: "card " + pan + " " + xss}}, Payment: payment}}}
	ck, _ := f.signIn(t, analystToken)
	for _, target := range []string{"/ui/cases", "/ui/cases/p1", "/ui/cases?card=" + url.QueryEscape(xss)} {
		w := f.do(t, http.MethodGet, target, ck, nil)
		wantStatus(t, w, http.StatusOK)
		body := w.Body.String()
		if strings.Contains(body, "<script>alert") {
			t.Errorf("%s: raw script in the page", target)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s: the text is not shown escaped", target)
		}
		if strings.Contains(body, pan) || strings.Contains(body, "4111 1111") {
			t.Errorf("%s: the page shows a card number", target)
		}
	}
}

func TestHistoryChart(t *testing.T) {
	f := caseFixture(t)
	day := func(d, h int) time.Time { return time.Date(2026, 11, d, h, 0, 0, 0, time.UTC) }
	f.cards.counts = map[time.Time]int64{
		day(30, 1): 2, day(30, 11): 3, // today: 5
		day(28, 0): 4,                                // 4
		day(15, 5): 1, day(15, 6): 1, day(15, 23): 8, // 10
		day(1, 12):                6,   // the first day shown
		day(1, 0).Add(-time.Hour): 100, // older than the chart
		time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC): 9, // older still
	}
	ck, _ := f.signIn(t, viewerToken)
	w := f.do(t, http.MethodGet, "/ui/cases/p1", ck, nil)
	wantStatus(t, w, http.StatusOK)
	body := w.Body.String()
	svg := regexp.MustCompile(`(?s)<svg id="history-chart".*?</svg>`).FindString(body)
	if svg == "" {
		t.Fatal("no chart")
	}
	bars := regexp.MustCompile(`<rect class="bar[^"]*" x="(\d+)" y="(\d+)" width="(\d+)" height="(\d+)" data-day="([0-9-]+)" data-count="(\d+)"><title>`).FindAllStringSubmatch(svg, -1)
	if len(bars) != 30 {
		t.Fatalf("%d bars, want one a day for 30 days", len(bars))
	}
	if bars[0][5] != "2026-11-01" || bars[29][5] != "2026-11-30" {
		t.Errorf("days %s to %s, want 2026-11-01 to 2026-11-30", bars[0][5], bars[29][5])
	}
	want := map[string]string{"2026-11-30": "5", "2026-11-28": "4", "2026-11-15": "10", "2026-11-01": "6"}
	for _, b := range bars {
		n, ok := want[b[5]]
		if !ok {
			n = "0"
		}
		if b[6] != n {
			t.Errorf("day %s: count %s, want %s", b[5], b[6], n)
		}
	}
	if bars[14][4] != "80" || bars[14][2] != "0" || bars[29][4] != "40" || bars[1][4] != "0" {
		t.Errorf("bar heights: the highest day fills the plot, others in proportion: %v %v %v", bars[14][1:5], bars[29][1:5], bars[1][1:5])
	}
	if !strings.Contains(body, "25 in all, at most 10 in a day") {
		t.Error("the caption does not sum the days shown")
	}
	if strings.Count(body, `<tr><td class="time">`) != 9 {
		t.Errorf("windows table: want all 9 windows (fewer than 24): %d", strings.Count(body, `<tr><td class="time">`))
	}

	many := map[time.Time]int64{}
	for h := range 50 {
		many[now.Add(-time.Duration(h)*time.Hour).Truncate(time.Hour)] = int64(h + 1)
	}
	rows := newestWindows(many, 24)
	if len(rows) != 24 || rows[0].Count != 1 || rows[23].Count != 24 {
		t.Errorf("newest 24 windows, newest first: %v", rows)
	}
	if ch := dailyChart(nil, now); len(ch.Bars) != 30 || ch.Total != 0 || ch.Bars[0].H != 0 {
		t.Errorf("an empty history: %+v", ch)
	}
}

func TestPagesAndHeaders(t *testing.T) {
	f := newFixture(t, Config{}, fakeLists{})
	ck, _ := f.signIn(t, viewerToken)

	w := f.do(t, http.MethodGet, "/ui", ck, nil)
	wantStatus(t, w, http.StatusSeeOther)
	if w.Header().Get("Location") != "/ui/cases" {
		t.Errorf("/ui goes to %q", w.Header().Get("Location"))
	}

	w = f.do(t, http.MethodHead, "/ui/cases", ck, nil)
	wantStatus(t, w, http.StatusOK)
	if w.Body.Len() != 0 {
		t.Error("HEAD answers a body")
	}
	wantErrorPage(t, f.do(t, http.MethodPut, "/ui/sign-in", nil, nil), http.StatusMethodNotAllowed)

	w = f.do(t, http.MethodGet, "/ui/lists", ck, nil)
	wantStatus(t, w, http.StatusOK)
	if !strings.Contains(w.Body.String(), `<tr class="list" data-list="blocked_cards"><td>blocked_cards</td><td>card</td><td class="num">7</td>`) {
		t.Errorf("lists page: %s", w.Body)
	}
	none := newFixture(t, Config{}, nil)
	nck, _ := none.signIn(t, viewerToken)
	w = none.do(t, http.MethodGet, "/ui/lists", nck, nil)
	wantStatus(t, w, http.StatusOK)
	if !strings.Contains(w.Body.String(), "The rules declare no lists.") {
		t.Error("no note that the rules declare no lists")
	}

	w = f.do(t, http.MethodGet, "/ui/live.json", ck, nil)
	wantStatus(t, w, http.StatusOK)
	var live map[string]float64
	if err := json.Unmarshal(w.Body.Bytes(), &live); err != nil || live["payments_per_second"] != 1234.5 || live["flagged_per_second"] != 6.25 || live["lag"] != 42 {
		t.Errorf("live.json %s: %v", w.Body, err)
	}
	if w.Header().Get("Cache-Control") != "no-store" {
		t.Error("live.json may be cached")
	}

	for _, target := range []string{"/ui/nope", "/ui/cases/p1/nope", "/ui/static/nope.css", "/ui/cases/"} {
		wantErrorPage(t, f.do(t, http.MethodGet, target, ck, nil), http.StatusNotFound)
	}
	wantErrorPage(t, f.do(t, http.MethodGet, "/ui/nope", nil, nil), http.StatusNotFound)

	for name, ct := range map[string]string{"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"} {
		w := f.do(t, http.MethodGet, "/ui/static/"+name+"?v="+f.c.static[name].version, nil, nil)
		wantStatus(t, w, http.StatusOK)
		if w.Header().Get("Content-Type") != ct || !strings.Contains(w.Header().Get("Cache-Control"), "immutable") || w.Header().Get("ETag") == "" {
			t.Errorf("%s: headers %v", name, w.Header())
		}
		req := httptest.NewRequest(http.MethodGet, "/ui/static/"+name, nil)
		req.Header.Set("If-None-Match", w.Header().Get("ETag"))
		w2 := httptest.NewRecorder()
		f.h.ServeHTTP(w2, req)
		checkHeaders(t, w2)
		if w2.Code != http.StatusNotModified {
			t.Errorf("%s: a matching ETag gets %d, want 304", name, w2.Code)
		}
	}
	js := string(f.c.static["console.js"].body)
	for _, s := range []string{"/ui/live.json", "2000", "form.quick-fraud", "form.quick-legitimate", "filter-card", "aria-selected", "\"selected\""} {
		if !strings.Contains(js, s) {
			t.Errorf("console.js lacks %s", s)
		}
	}
}

// TestMounted serves the console as the service mounts it, in a chi router beside other routes,
// with the full path passed through.
func TestMounted(t *testing.T) {
	f := caseFixture(t)
	f.store.cases["p/1"] = f.store.cases["p1"]
	ck, csrf := f.signIn(t, analystToken)
	mounts := map[string]func(r chi.Router, h http.Handler){
		"handle": func(r chi.Router, h http.Handler) { r.Handle("/ui", h); r.Handle("/ui/*", h) },
		"mount":  func(r chi.Router, h http.Handler) { r.Mount("/ui", h) },
	}
	for name, mount := range mounts {
		r := chi.NewRouter()
		r.Get("/v1/reviews/{payment_id}", func(w http.ResponseWriter, r *http.Request) {})
		mount(r, f.c.Handler())
		f.h = r
		t.Run(name, func(t *testing.T) {
			for target, status := range map[string]int{"/ui": http.StatusSeeOther, "/ui/cases": http.StatusOK, "/ui/cases/p1": http.StatusOK,
				"/ui/cases/p%2F1": http.StatusOK, "/ui/static/console.css": http.StatusOK, "/ui/nope": http.StatusNotFound} {
				w := f.do(t, http.MethodGet, target, ck, nil)
				if w.Code != status {
					t.Errorf("GET %s: %d, want %d", target, w.Code, status)
				}
			}
			w := f.do(t, http.MethodPost, "/ui/cases/p%2F1/verdict", ck, url.Values{"csrf": {csrf}, "label": {"fraud"}})
			wantStatus(t, w, http.StatusSeeOther)
			if loc := w.Header().Get("Location"); loc != "/ui/cases/p%2F1" {
				t.Errorf("Location %q", loc)
			}
		})
	}
	if calls := f.actions.taken(); len(calls) != 2 || calls[0].id != "p/1" {
		t.Errorf("calls %v", calls)
	}
}

func TestNew(t *testing.T) {
	key := bytes.Repeat([]byte("k"), 32)
	for name, cfg := range map[string]Config{
		"short key": {SessionKey: key[:31], SessionTTL: time.Hour},
		"no ttl":    {SessionKey: key},
	} {
		if _, err := New(cfg, authenticate, &fakeStore{}, &fakeActions{}, &fakeCards{}, nil, nil, nil); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	if _, err := New(Config{SessionKey: key, SessionTTL: time.Hour}, nil, &fakeStore{}, &fakeActions{}, &fakeCards{}, nil, nil, nil); err == nil {
		t.Error("New accepted no Authenticate")
	}
	if _, err := New(Config{SessionKey: key, SessionTTL: time.Hour}, authenticate, &fakeStore{}, &fakeActions{}, &fakeCards{}, nil, nil, nil); err != nil {
		t.Errorf("New without lists, live and log: %v", err)
	}
}

func TestReasonInWords(t *testing.T) {
	for code, want := range map[string]string{
		"amount_over_threshold": "Amount over the threshold",
		"card_velocity_1h":      "Many payments on the card within an hour",
		"model_score":           "High fraud model score",
		"blocked_card":          "Card on a block list",
		"blocklisted_ip":        "IP address on a block list",
		"blocked_bin":           "BIN on a block list",
		"blocked_shoe_size":     "shoe size on a block list",
		"something_new":         "something_new",
	} {
		if got := reasonInWords(code); got != want {
			t.Errorf("%s: %q, want %q", code, got, want)
		}
	}
}

// A verdict recorded whose labels the broker did not take: the page says so and offers the same
// verdict again, which the actions take as a retry.
func TestLabelsNotSentOffersToResend(t *testing.T) {
	f := newFixture(t, Config{}, nil)
	f.store.cases["p1"] = review.Case{ID: "p1", CardID: "card-1", Status: review.StatusOpen}
	ck, csrf := f.signIn(t, analystToken)
	f.actions.mu.Lock()
	f.actions.err = errors.Join(errors.New("publish"), review.ErrNotPublished)
	f.actions.mu.Unlock()
	w := f.do(t, http.MethodPost, "/ui/cases/p1/verdict", ck, url.Values{"csrf": {csrf}, "label": {"fraud"}, "note": {"seen <b>twice</b>"}})
	wantStatus(t, w, http.StatusServiceUnavailable)
	body := w.Body.String()
	for _, want := range []string{`id="resend"`, `action="/ui/cases/p1/verdict"`, `name="label" value="fraud"`, `value="seen &lt;b&gt;twice&lt;/b&gt;"`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	f.actions.mu.Lock()
	f.actions.err = nil
	f.actions.mu.Unlock()
	w = f.do(t, http.MethodPost, "/ui/cases/p1/verdict", ck, url.Values{"csrf": {csrf}, "label": {"fraud"}, "note": {"seen <b>twice</b>"}, "back": {"/ui/cases/p1"}})
	wantStatus(t, w, http.StatusSeeOther)
	if calls := f.actions.taken(); len(calls) != 2 || calls[1] != calls[0] {
		t.Errorf("calls %+v, want the same verdict twice", calls)
	}
}

// A card number typed into a filter is not carried to the sign-in page.
func TestSignInDropsANextWithACardNumber(t *testing.T) {
	f := newFixture(t, Config{}, nil)
	for _, next := range []string{"/ui/cases?card=4111111111111111", "/ui/cases?card=4111%201111%201111%201111"} {
		w := f.do(t, http.MethodGet, "/ui/sign-in?next="+url.QueryEscape(next), nil, nil)
		wantStatus(t, w, http.StatusOK)
		if b := w.Body.String(); strings.Contains(b, "4111") {
			t.Errorf("next %q: the sign-in page holds the card number", next)
		}
	}
	w := f.do(t, http.MethodGet, "/ui/sign-in?next="+url.QueryEscape("/ui/cases?card=tok_1"), nil, nil)
	if !strings.Contains(w.Body.String(), "tok_1") {
		t.Error("an ordinary next is dropped")
	}
}
