package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// newBrowser starts a headless Debian chromium (scripts/stack.sh up installs it) with a profile of
// its own, 1280×800, and returns a context for chromedp's actions in a first tab.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: scripts/stack.sh up installs it (Debian's chromium package)")
	}
	opts := append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800), chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// steps runs chromedp actions within a deadline, failing the test with what was being done.
func steps(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one chromedp action within a deadline and returns its value.
func get[T any](t *testing.T, ctx context.Context, what string, action chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitText waits until the element's text is want, through the page loads between (an action
// that runs while the page navigates fails, and is tried again).
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	js := fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent.trim()`, sel)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		got, err := chromedp.Run(c, chromedp.Evaluate[string](js))
		cancel()
		if err == nil && got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q (%v), want %q", sel, got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postForm posts a form from the page (its cookies, its origin) and returns the status.
func postForm(t *testing.T, ctx context.Context, path, body string) int {
	t.Helper()
	js := fmt.Sprintf(`fetch(%q, {method: "POST", redirect: "manual", headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: %q}).then(r => r.status)`, path, body)
	return get(t, ctx, "post "+path, chromedp.Evaluate[int](js, chromedp.EvalAwaitPromise))
}

// The console in a real browser against the real stack: an analyst signs in, opens the riskiest
// case, marks it fraud, and every payment of the case gets its label on fraud-labels; a viewer
// finds no verdict button and gets 403 for a verdict posted anyway; a post without the CSRF token
// is refused. The screenshots of the queue and the case page are taken here
// (FD_CONSOLE_SCREENSHOTS=docs writes them where the README shows them).
func TestConsoleInABrowser(t *testing.T) {
	tp := newTopics(t, 3)
	addr := freePort(t)
	tokens := map[string]string{"ana": "e2e-console-analyst-0123456789", "vic": "e2e-console-viewer-0123456789"}
	var env []string
	for name, tok := range tokens {
		recordSecret(tok, "a console token")
		sum := sha256.Sum256([]byte(tok))
		role := map[string]string{"ana": "analyst", "vic": "viewer"}[name]
		env = append(env, name+":"+role+":"+hex.EncodeToString(sum[:]))
	}
	s := startService(t, tp, "FRAUD_API_LISTEN="+addr, "FRAUD_API_TOKENS="+strings.Join(env, ","))
	base := "http://" + addr
	now := time.Now().UTC()
	var lines []string
	for i := range 4 { // a card's four flagged payments: one case
		lines = append(lines, payment(fmt.Sprintf("con-a%d", i), "card-console-a", fmt.Sprintf("%d.00", 150+100*i), now.Add(time.Duration(i-10)*time.Second)))
	}
	for i, card := range []string{"card-console-b", "card-console-c"} {
		lines = append(lines, payment(fmt.Sprintf("con-%d", i), card, "120.00", now.Add(-5*time.Second)))
	}
	kcatProduceInOrder(t, tp.payments, lines)
	client := newClient(t)
	waitForOutput(t, client, tp.highRisk, int64(len(lines)))
	// The riskiest open case, as the API lists it, once every review is in a case.
	type apiCase struct {
		ID       string `json:"case_id"`
		Payments int    `json:"payments"`
	}
	var page struct{ Cases []apiCase }
	deadline := time.Now().Add(20 * time.Second)
	for {
		apiGet(t, base+"/v1/cases?status=open&order=riskiest", tokens["vic"], &page)
		n := 0
		for _, c := range page.Cases {
			n += c.Payments
		}
		if n == len(lines) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cases %+v: not %d payments in all", page.Cases, len(lines))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(page.Cases) != 3 {
		t.Fatalf("cases %+v, want 3 (card-console-a's four payments in one)", page.Cases)
	}
	riskiest := page.Cases[0]
	shots := os.Getenv("FD_CONSOLE_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	var png []byte

	analyst := newBrowser(t)
	steps(t, analyst, "sign in as an analyst",
		chromedp.Navigate(base+"/ui/cases"), // no session: to the sign-in page
		chromedp.WaitVisible("#sign-in"),
		chromedp.SendKeys("#token", tokens["ana"]),
		chromedp.Click("#sign-in-button"),
		chromedp.WaitVisible("#queue"))
	rows := get(t, analyst, "the queue's rows", chromedp.Nodes("#queue tr.case"))
	first := get(t, analyst, "the first row", chromedp.AttributeValue("#queue tr.case", "data-case")).Value
	png = get(t, analyst, "screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(shots, "console-queue.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || first != riskiest.ID {
		t.Fatalf("the queue shows %d cases, the first %q; the API's riskiest is %q", len(rows), first, riskiest.ID)
	}
	steps(t, analyst, "open the riskiest case",
		chromedp.Click(`#queue tr.case a.case-link`),
		chromedp.WaitVisible("#case-title"),
		chromedp.WaitVisible("#history-chart"))
	status := get(t, analyst, "the case's status", chromedp.Text("#case-status"))
	png = get(t, analyst, "screenshot", chromedp.FullScreenshot(100))
	if err := os.WriteFile(filepath.Join(shots, "console-case.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if status != "open" {
		t.Errorf("case status %q", status)
	}
	steps(t, analyst, "mark it fraud",
		chromedp.SendKeys(`#case-verdict textarea[name="note"]`, "card testing <script>alert(1)</script>"),
		chromedp.Click("#verdict-fraud"))
	waitText(t, analyst, "#case-status", "fraud") // the page the verdict's redirect loads
	html := get(t, analyst, "read the page", chromedp.OuterHTML("html"))
	if strings.Contains(html, "<script>alert(1)") {
		t.Error("the note is rendered unescaped")
	}
	// Its labels, one a payment of the case.
	waitForOutput(t, client, tp.labels, int64(riskiest.Payments))
	var labelled []string
	for _, m := range readAll(t, client, tp.labels) {
		var l struct {
			PaymentID, Label, Analyst string `json:""`
		}
		var raw map[string]string
		json.Unmarshal(m.Value, &raw)
		l.PaymentID, l.Label, l.Analyst = raw["payment_id"], raw["label"], raw["analyst"]
		if l.Label != "fraud" || l.Analyst != "ana" {
			t.Errorf("label %s", m.Value)
		}
		labelled = append(labelled, l.PaymentID)
	}
	if len(labelled) != riskiest.Payments {
		t.Errorf("labels for %v, want the case's %d payments", labelled, riskiest.Payments)
	}
	// A post without the CSRF token is refused, and changes nothing.
	other := page.Cases[1].ID
	if code := postForm(t, analyst, "/ui/cases/"+other+"/verdict", "label=fraud"); code != 403 {
		t.Errorf("a verdict without the CSRF token: %d, want 403", code)
	}

	viewer := newBrowser(t)
	steps(t, viewer, "sign in as a viewer and open a case",
		chromedp.Navigate(base+"/ui/sign-in"),
		chromedp.WaitVisible("#sign-in"),
		chromedp.SendKeys("#token", tokens["vic"]),
		chromedp.Click("#sign-in-button"),
		chromedp.WaitVisible("#queue"),
		chromedp.Navigate(base+"/ui/cases/"+other),
		chromedp.WaitVisible("#case-title"))
	buttons := get(t, viewer, "verdict buttons", chromedp.Nodes("#verdict-fraud, #verdict-legitimate, form[action$='/verdict']", chromedp.AtLeast(0)))
	csrf := get(t, viewer, "the session's CSRF token", chromedp.Value(`#sign-out input[name="csrf"]`))
	if len(buttons) != 0 {
		t.Errorf("a viewer sees %d verdict buttons or forms", len(buttons))
	}
	if code := postForm(t, viewer, "/ui/cases/"+other+"/verdict", "label=fraud&csrf="+csrf); code != 403 {
		t.Errorf("a viewer's forged verdict: %d, want 403", code)
	}
	var c struct{ Status string }
	apiGet(t, base+"/v1/cases/"+other, tokens["vic"], &c)
	if c.Status != "open" {
		t.Errorf("case %s is %q after refused posts", other, c.Status)
	}
	s.stop(t)
}
