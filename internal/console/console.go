// Package console is the analysts' console: server-rendered HTML pages under /ui to work the
// queue of cases, read a case with its payments and its card's history, record verdicts and
// assignments, and see the lists the rules test. It signs in with the API's tokens and keeps a
// signed session cookie (HMAC-SHA256), so that every instance accepts every session; every form
// carries the session's CSRF token. Pages need no JavaScript; a small script refreshes the live
// strip and gives the queue keyboard shortcuts. The Content-Security-Policy forbids anything
// inline and anything from elsewhere.
package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/paysentry/fraud-detector/internal/lists"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/review"
	"github.com/paysentry/fraud-detector/internal/window"
)

// Store reads cases and reviews (implemented by *review.Store).
type Store interface {
	ListCases(ctx context.Context, f review.CaseFilter) (review.CasePage, error)
	// GetCase returns the case and its payments' reviews, newest first; review.ErrNotFound if
	// there is no such case.
	GetCase(ctx context.Context, id string) (review.Case, []review.Review, error)
}

// Actions records verdicts and assignments and publishes labels (implemented by the API server).
// Errors: review.ErrNotFound, review.ErrAlreadyDecided, or anything else (store or broker
// unavailable).
type Actions interface {
	DecideCase(ctx context.Context, caseID, label, analyst, note string) error
	DecidePayment(ctx context.Context, paymentID, label, analyst, note string) error
	AssignCase(ctx context.Context, caseID, analyst string) error
}

// Cards gives a card's hourly window counts (start of hour → count) over its kept history
// (implemented by *window.Store).
type Cards interface {
	Counts(ctx context.Context, card string) (map[time.Time]int64, error)
}

// LiveStats is the stream's figures for the live strip.
type LiveStats struct {
	PaymentsPerSecond, FlaggedPerSecond float64
	Lag                                 int64
}

// Live reads the stream's figures.
type Live func(ctx context.Context) LiveStats

// Lists is the rules' lists, read-only in the console (implemented by *lists.Store).
type Lists interface {
	Specs() []lists.Spec
	Counts(ctx context.Context) (map[string]int, error)
}

// The implementations the service passes.
var (
	_ Store = (*review.Store)(nil)
	_ Cards = (*window.Store)(nil)
	_ Lists = (*lists.Store)(nil)
)

// Authenticate checks a sign-in token and says who it is (the token's name) and its role
// ("viewer" or "analyst").
type Authenticate func(token string) (name, role string, ok bool)

// Roles, as the API names them.
const (
	roleViewer  = "viewer"
	roleAnalyst = "analyst"
)

// Config sets the console.
type Config struct {
	// SessionKey signs session cookies (HMAC-SHA256), at least 32 bytes. The caller derives it
	// from a configured secret so that every instance accepts every session.
	SessionKey []byte
	SessionTTL time.Duration // how long a session lasts, such as 12h
	Secure     bool          // cookies get Secure (the console is served over TLS)
	// Known, if set, says whether a session's name still has a token of its role: a session
	// whose token was removed, or given another role, is signed out at its next request.
	Known func(name, role string) bool
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case len(c.SessionKey) < 32:
		return fmt.Errorf("console: the session key must be at least 32 bytes, got %d", len(c.SessionKey))
	case c.SessionTTL <= 0:
		return fmt.Errorf("console: the session TTL must be positive, got %s", c.SessionTTL)
	}
	return nil
}

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static/*
var staticFiles embed.FS

// Console serves the pages.
type Console struct {
	cfg     Config
	auth    Authenticate
	store   Store
	actions Actions
	cards   Cards
	lists   Lists
	live    Live
	log     *slog.Logger
	now     func() time.Time
	pages   map[string]*template.Template
	static  map[string]asset
}

// asset is an embedded static file.
type asset struct {
	body        []byte
	contentType string
	etag        string
	version     string // a short hash of the body, for URLs that change when it does
}

// pageNames are the pages, each a file of templates/ rendered through layout.html.
var pageNames = []string{"sign-in", "queue", "case", "lists", "error"}

// New returns the console. lists may be nil (the rules declare none); live may be nil (the strip
// shows zeros).
func New(cfg Config, auth Authenticate, store Store, actions Actions, cards Cards, lists Lists, live Live, log *slog.Logger) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if auth == nil || store == nil || actions == nil || cards == nil {
		return nil, errors.New("console: auth, store, actions and cards are required")
	}
	if live == nil {
		live = func(context.Context) LiveStats { return LiveStats{} }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Console{cfg: cfg, auth: auth, store: store, actions: actions, cards: cards, lists: lists, live: live,
		log: log, now: time.Now, pages: map[string]*template.Template{}, static: map[string]asset{}}
	if err := c.loadStatic(); err != nil {
		return nil, err
	}
	if err := c.parseTemplates(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Console) loadStatic() error {
	types := map[string]string{".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
	entries, err := fs.ReadDir(staticFiles, "static")
	if err != nil {
		return fmt.Errorf("console static files: %w", err)
	}
	for _, e := range entries {
		body, err := staticFiles.ReadFile("static/" + e.Name())
		if err != nil {
			return fmt.Errorf("console static file %s: %w", e.Name(), err)
		}
		ct := types[e.Name()[strings.LastIndexByte(e.Name(), '.'):]]
		if ct == "" {
			ct = "application/octet-stream"
		}
		sum := sha256.Sum256(body)
		v := hex.EncodeToString(sum[:6])
		c.static[e.Name()] = asset{body: body, contentType: ct, etag: `"` + v + `"`, version: v}
	}
	return nil
}

func (c *Console) parseTemplates() error {
	funcs := template.FuncMap{
		"static": func(name string) string {
			return "/ui/static/" + name + "?v=" + c.static[name].version
		},
		"caseURL":    caseURL,
		"paymentURL": func(id string) string { return "/ui/payments/" + pathEscape(id) },
		"time":       formatTime,
		"score":      formatScore,
		"reasons":    reasonsInWords,
		"reason":     reasonInWords,
		"float1":     func(f float64) string { return fmt.Sprintf("%.1f", f) },
	}
	base, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFiles, "templates/layout.html")
	if err != nil {
		return fmt.Errorf("console templates: %w", err)
	}
	for _, name := range pageNames {
		t, err := template.Must(base.Clone()).ParseFS(templateFiles, "templates/"+name+".html")
		if err != nil {
			return fmt.Errorf("console template %s: %w", name, err)
		}
		c.pages[name] = t
	}
	return nil
}

// Handler serves the paths that begin with /ui; the caller mounts it at /ui and /ui/*, passing
// the full path through.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/ui", methods{http.MethodGet: func(w http.ResponseWriter, r *http.Request) { seeOther(w, r, "/ui/cases") }}.handler(c))
	mux.Handle("/ui/sign-in", methods{http.MethodGet: c.signInForm, http.MethodPost: c.signIn}.handler(c))
	mux.Handle("/ui/sign-out", methods{http.MethodPost: c.signedIn(c.signOut)}.handler(c))
	mux.Handle("/ui/cases", methods{http.MethodGet: c.signedIn(c.queue)}.handler(c))
	mux.Handle("/ui/cases/{id}", methods{http.MethodGet: c.signedIn(c.casePage)}.handler(c))
	mux.Handle("/ui/cases/{id}/verdict", methods{http.MethodPost: c.signedIn(c.analyst(c.caseVerdict))}.handler(c))
	mux.Handle("/ui/cases/{id}/assign", methods{http.MethodPost: c.signedIn(c.analyst(c.assign))}.handler(c))
	mux.Handle("/ui/payments/{pid}/verdict", methods{http.MethodPost: c.signedIn(c.analyst(c.paymentVerdict))}.handler(c))
	mux.Handle("/ui/lists", methods{http.MethodGet: c.signedIn(c.listsPage)}.handler(c))
	mux.Handle("/ui/live.json", methods{http.MethodGet: c.liveJSON}.handler(c))
	mux.Handle("/ui/static/{name}", methods{http.MethodGet: c.serveStatic}.handler(c))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		c.errorPage(w, r, c.sessionOf(r), http.StatusNotFound, "Not found", "There is no such page.")
	})
	return c.recoverer(securityHeaders(mux))
}

// methods routes a path's methods; GET also answers HEAD. Any other method gets a 405 page.
type methods map[string]http.HandlerFunc

func (m methods) handler(c *Console) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := r.Method
		if method == http.MethodHead {
			method = http.MethodGet
		}
		if h, ok := m[method]; ok {
			h(w, r)
			return
		}
		var allowed []string
		for _, k := range []string{http.MethodGet, http.MethodPost} {
			if m[k] != nil {
				allowed = append(allowed, k)
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		c.errorPage(w, r, c.sessionOf(r), http.StatusMethodNotAllowed, "Method not allowed", r.Method+" is not allowed here.")
	})
}

// csp allows nothing inline and nothing from elsewhere.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// securityHeaders sets what every response of the console carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}

// recoverer turns a panic into a 500 page and a log line, never a crash.
func (c *Console) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				c.log.Error("console panic", "path", redact(r.URL.Path), "panic", redact(fmt.Sprint(v)))
				c.errorPage(w, r, nil, http.StatusInternalServerError, "Internal error", "Something went wrong on our side.")
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// page is what the layout renders.
type page struct {
	Title   string
	User    *session // nil when not signed in
	Analyst bool
	Live    LiveStats
	Nav     string // the current section: queue, lists
	Data    any
}

// render executes a page into a buffer and writes it with status, so that an error never writes
// half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	if p.User != nil {
		p.Analyst = p.User.Role == roleAnalyst
		p.Live = c.live(r.Context())
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.log.Error("console render", "page", name, "err", redact(err.Error()))
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte("internal error\n"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}

type errorData struct {
	Status  int
	Message string
	Back    string      // a link back, if any
	Resend  *resendForm // a verdict recorded whose labels are not out: the form that sends it again
}

// resendForm posts a recorded verdict again, which publishes its labels.
type resendForm struct {
	Action, Label, Note, Back, CSRF string
}

// errorPage answers an HTML error page with its status; s may be nil.
func (c *Console) errorPage(w http.ResponseWriter, r *http.Request, s *session, status int, title, message string) {
	c.errorPageBack(w, r, s, status, title, message, "")
}

func (c *Console) errorPageBack(w http.ResponseWriter, r *http.Request, s *session, status int, title, message, back string) {
	c.render(w, r, status, "error", page{Title: title, User: s, Data: errorData{Status: status, Message: message, Back: back}})
}

// storeError answers the page for an error of the store or of an action, in one place.
func (c *Console) storeError(w http.ResponseWriter, r *http.Request, s *session, err error, back string) {
	switch {
	case errors.Is(err, review.ErrNotFound):
		c.errorPageBack(w, r, s, http.StatusNotFound, "Not found", "There is no such case or payment.", back)
	case errors.Is(err, review.ErrAlreadyDecided):
		c.errorPageBack(w, r, s, http.StatusConflict, "Already decided",
			"A verdict was recorded already; the page you came from was out of date.", back)
	case errors.Is(err, review.ErrNotPublished) && s != nil && r.Method == http.MethodPost:
		c.log.Error("console labels not published", "path", redact(r.URL.Path))
		c.render(w, r, http.StatusServiceUnavailable, "error", page{Title: "Labels not sent", User: s, Data: errorData{
			Status: http.StatusServiceUnavailable, Back: back,
			Message: "The verdict is recorded, but its labels could not be sent to fraud-labels (the broker did not take them). Send them again:",
			Resend:  &resendForm{Action: r.URL.Path, Label: r.PostForm.Get("label"), Note: r.PostForm.Get("note"), Back: back, CSRF: s.CSRF}}})
	case errors.Is(err, review.ErrInvalidArgument), errors.Is(err, review.ErrInvalidCursor):
		c.errorPageBack(w, r, s, http.StatusBadRequest, "Bad request", redact(err.Error()), back)
	default:
		c.log.Error("console store", "path", redact(r.URL.Path), "err", redact(err.Error()))
		c.errorPageBack(w, r, s, http.StatusServiceUnavailable, "Unavailable",
			"The store is not available at the moment; try again.", back)
	}
}

// serveStatic answers an embedded file. A URL with the file's current version is cached for a
// year; any other for five minutes.
func (c *Console) serveStatic(w http.ResponseWriter, r *http.Request) {
	a, ok := c.static[r.PathValue("name")]
	if !ok {
		c.errorPage(w, r, nil, http.StatusNotFound, "Not found", "There is no such file.")
		return
	}
	w.Header().Set("Content-Type", a.contentType)
	w.Header().Set("ETag", a.etag)
	if r.URL.Query().Get("v") == a.version {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "public, max-age=300")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}

// liveJSON answers the live strip's figures; without a session, 401 in the API's error form.
func (c *Console) liveJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if c.sessionOf(r) == nil {
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"unauthorized","message":"sign in first"}}` + "\n"))
		return
	}
	l := c.live(r.Context())
	fmt.Fprintf(w, `{"payments_per_second":%s,"flagged_per_second":%s,"lag":%d}`+"\n",
		jsonFloat(l.PaymentsPerSecond), jsonFloat(l.FlaggedPerSecond), l.Lag)
}

type listRow struct {
	Name, Kind, Description string
	Count                   int
}

// listsPage shows the lists the rules declare, with their sizes.
func (c *Console) listsPage(w http.ResponseWriter, r *http.Request, s *session) {
	var rows []listRow
	if c.lists != nil {
		counts, err := c.lists.Counts(r.Context())
		if err != nil {
			c.storeError(w, r, s, err, "")
			return
		}
		for _, sp := range c.lists.Specs() {
			rows = append(rows, listRow{Name: redact(sp.Name), Kind: sp.Kind, Description: redact(sp.Description), Count: counts[sp.Name]})
		}
	}
	c.render(w, r, http.StatusOK, "lists", page{Title: "Lists", User: s, Nav: "lists", Data: struct {
		Declared bool
		Lists    []listRow
	}{c.lists != nil && len(rows) > 0, rows}})
}

// redact masks anything in s that looks like a card number: every text from the store passes
// through it before it is shown or logged, as defence in depth.
func redact(s string) string {
	out, found := payment.RedactPANs([]byte(s))
	if !found {
		return s
	}
	return string(out)
}
