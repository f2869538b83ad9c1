package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/paysentry/fraud-detector/internal/payment"
)

// cookieName is the session cookie's name.
const cookieName = "fd_session"

// maxTokenLen bounds a sign-in token; longer ones are refused without asking Authenticate.
const maxTokenLen = 1024

// maxFormBytes bounds a form's body.
const maxFormBytes = 64 << 10

// session is who is signed in: the cookie's payload.
type session struct {
	Name string `json:"name"`
	Role string `json:"role"`
	Exp  int64  `json:"exp"`  // Unix seconds
	CSRF string `json:"csrf"` // random, base64url: every form of the session carries it
}

var b64 = base64.RawURLEncoding

// encode signs s: base64url(payload) "." base64url(HMAC-SHA256(key, payload)).
func (c *Console) encode(s session) (string, error) {
	payload, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	return b64.EncodeToString(payload) + "." + b64.EncodeToString(c.mac(payload)), nil
}

func (c *Console) mac(payload []byte) []byte {
	m := hmac.New(sha256.New, c.cfg.SessionKey)
	m.Write(payload)
	return m.Sum(nil)
}

// decode returns the session a cookie's value holds, if its signature is right, it has not
// expired and it names someone of a known role.
func (c *Console) decode(value string) (*session, bool) {
	p, m, ok := strings.Cut(value, ".")
	if !ok || len(value) > 4096 {
		return nil, false
	}
	payload, err1 := b64.DecodeString(p)
	sig, err2 := b64.DecodeString(m)
	if err1 != nil || err2 != nil || !hmac.Equal(sig, c.mac(payload)) {
		return nil, false
	}
	var s session
	if err := json.Unmarshal(payload, &s, json.RejectUnknownMembers(true)); err != nil {
		return nil, false
	}
	if s.Name == "" || (s.Role != roleViewer && s.Role != roleAnalyst) || s.CSRF == "" || c.now().Unix() >= s.Exp {
		return nil, false
	}
	if c.cfg.Known != nil && !c.cfg.Known(s.Name, s.Role) {
		return nil, false
	}
	return &s, true
}

// sessionOf returns the request's session, or nil.
func (c *Console) sessionOf(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	s, ok := c.decode(ck.Value)
	if !ok {
		return nil
	}
	return s
}

// signedIn lets a request through with a valid session; otherwise it sends the browser to sign
// in (with a GET's path to come back to).
func (c *Console) signedIn(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.sessionOf(r)
		if s == nil {
			to := "/ui/sign-in"
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				if next := r.URL.RequestURI(); safeNext(next) {
					to += "?next=" + url.QueryEscape(next)
				}
			}
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, to, http.StatusSeeOther)
			return
		}
		h(w, r, s)
	}
}

// analyst lets a POST through from an analyst with the session's CSRF token: 403 otherwise.
func (c *Console) analyst(h func(http.ResponseWriter, *http.Request, *session)) func(http.ResponseWriter, *http.Request, *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		if !c.checkForm(w, r, s) {
			return
		}
		if s.Role != roleAnalyst {
			c.errorPage(w, r, s, http.StatusForbidden, "Forbidden", "Recording a verdict or an assignment needs the analyst role.")
			return
		}
		h(w, r, s)
	}
}

// checkForm parses a POST's form and checks its CSRF token; on failure it answers (400 or 403)
// and returns false.
func (c *Console) checkForm(w http.ResponseWriter, r *http.Request, s *session) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, r, s, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return false
	}
	if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(s.CSRF)) != 1 {
		c.errorPage(w, r, s, http.StatusForbidden, "Forbidden",
			"The form's security token is missing or out of date. Reload the page and try again.")
		return false
	}
	return true
}

// safeNext reports whether next is a path of the console to go to after signing in: a local path
// under /ui/, never one that could lead elsewhere.
func safeNext(next string) bool {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "/ui/sign-") || len(next) > 2048 ||
		strings.Contains(next, "//") || strings.Contains(next, "/..") || strings.ContainsAny(next, "\\\x00\r\n\t") {
		return false
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return false
	}
	// A card number typed into a filter is not carried into the sign-in page.
	unescaped, err := url.QueryUnescape(next)
	_, found := payment.RedactPANs([]byte(unescaped))
	return err == nil && !found
}

type signInData struct {
	Next    string
	Message string
}

func (c *Console) signInForm(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if !safeNext(next) {
		next = ""
	}
	c.render(w, r, http.StatusOK, "sign-in", page{Title: "Sign in", Data: signInData{Next: next}})
}

// sameOrigin reports whether a request without a session can be trusted to come from the
// console's own pages: an Origin header, when sent, names this host, and the browser does not say
// the request is cross-site.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// signIn checks the token and sets the session cookie.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		c.errorPage(w, r, nil, http.StatusForbidden, "Forbidden", "Signing in from another site is not allowed.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		c.errorPage(w, r, nil, http.StatusBadRequest, "Bad request", "The form could not be read.")
		return
	}
	next := r.PostForm.Get("next")
	if !safeNext(next) {
		next = ""
	}
	token := r.PostForm.Get("token")
	var name, role string
	ok := token != "" && len(token) <= maxTokenLen
	if ok {
		name, role, ok = c.auth(token)
	}
	if !ok || name == "" || (role != roleViewer && role != roleAnalyst) {
		c.log.Info("console sign-in refused")
		c.render(w, r, http.StatusUnauthorized, "sign-in", page{Title: "Sign in",
			Data: signInData{Next: next, Message: "That token is not valid."}})
		return
	}
	var raw [32]byte
	rand.Read(raw[:])
	exp := c.now().Add(c.cfg.SessionTTL)
	value, err := c.encode(session{Name: name, Role: role, Exp: exp.Unix(), CSRF: b64.EncodeToString(raw[:])})
	if err != nil {
		c.log.Error("console session", "err", err)
		c.errorPage(w, r, nil, http.StatusInternalServerError, "Internal error", "The session could not be made.")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: value, Path: "/ui", MaxAge: int(c.cfg.SessionTTL / time.Second),
		Expires: exp, HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	c.log.Info("console sign-in", "name", name, "role", role)
	if next == "" {
		next = "/ui/cases"
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut clears the cookie. A signed session cannot be revoked before it expires: signing out
// forgets it in this browser.
func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	if !c.checkForm(w, r, s) {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/ui", MaxAge: -1,
		HttpOnly: true, Secure: c.cfg.Secure, SameSite: http.SameSiteStrictMode})
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, "/ui/sign-in", http.StatusSeeOther)
}
