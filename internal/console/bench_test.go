package console

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/redistest"
	"github.com/paysentry/fraud-detector/internal/review"
)

// BenchmarkQueuePage measures the queue page as an analyst opens it: GET /ui/cases with the
// default filter (open cases, riskiest first, 50 a page), served by the console's handler behind
// an httptest.Server over a review.Store in the real Redis holding FD_BENCH_CASES open cases
// (default 100,000), each of a card of its own; one request at a time, from one client with a
// session cookie got by signing in. Nine requests in ten ask for the first page; every tenth
// follows the next-page link of the previous deep page, so the walk goes one page deeper each
// time (from the second page on, back to it after the last). Opening the cases is not timed.
//
// Metrics: p50-ms, p99-ms and max-ms, each request's latency until its body is read; requests/s.
// Run it on a Redis of its own:
//
//	mkdir -p /tmp/r6392 && redis-server --port 6392 --save '' --appendonly no --dir /tmp/r6392 --daemonize yes
//	FD_TEST_REDIS=127.0.0.1:6392 go test -run '^$' -bench QueuePage -benchtime 2000x ./internal/console
//	redis-cli -p 6392 shutdown nosave
func BenchmarkQueuePage(b *testing.B) {
	n := 100_000
	if v := os.Getenv("FD_BENCH_CASES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			b.Fatalf("FD_BENCH_CASES=%q: want a positive number of cases", v)
		}
	}
	rdb, prefix := redistest.New(b, "consolebench")
	store := review.NewStore(rdb, review.Config{KeyPrefix: prefix, Retention: 30 * 24 * time.Hour}, time.Now)
	began := time.Now()
	openCases(b, store, n)
	b.Logf("%d open cases in %s", n, time.Since(began).Round(time.Millisecond))

	const token = "bench-analyst-token-0123456789"
	auth := func(t string) (string, string, bool) { return "alice", roleAnalyst, t == token }
	live := func(context.Context) LiveStats { return LiveStats{PaymentsPerSecond: 1000, FlaggedPerSecond: 5} }
	c, err := New(Config{SessionKey: bytes.Repeat([]byte("k"), 32), SessionTTL: 12 * time.Hour}, auth, store,
		&fakeActions{}, &fakeCards{}, fakeLists{}, live, nil)
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	client := srv.Client()
	ck := benchSignIn(b, srv, token)

	nextLink := regexp.MustCompile(`<a id="next-page" rel="next" href="([^"]+)">`)
	first := srv.URL + "/ui/cases"
	wantFirst := min(n, pageSize)
	var deep string // the next deep page to ask for
	lat := make([]time.Duration, 0, 4096)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		target, isDeep := first, i%10 == 9 && deep != ""
		if isDeep {
			target = deep
		}
		t0 := time.Now()
		status, body := benchGet(b, client, target, ck)
		lat = append(lat, time.Since(t0))
		if status != http.StatusOK {
			b.Fatalf("GET %s: status %d, want 200; body:\n%s", target, status, body)
		}
		rows := bytes.Count(body, []byte(`class="case"`))
		switch {
		case !isDeep && rows != wantFirst:
			b.Fatalf("the first page has %d cases, want %d", rows, wantFirst)
		case isDeep && rows > pageSize:
			b.Fatalf("%s has %d cases, want at most %d", target, rows, pageSize)
		}
		if isDeep || deep == "" {
			next := nextURL(b, nextLink, srv.URL, body)
			switch {
			case next != "" && isDeep && rows != pageSize:
				b.Fatalf("%s has %d cases and a next page, want %d", target, rows, pageSize)
			case next == "" && deep == "" && n > pageSize:
				b.Fatal("the first page has no next-page link")
			case next == "" && isDeep: // the last page: back to the second
				deep = ""
			default:
				deep = next
			}
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "requests/s")
}

// openCases opens n flagged decisions, each of a card of its own (so each opens a case), decided
// over the 24 hours before now, with scores from 0 to 0.999, in OpenAll calls of 100.
func openCases(b *testing.B, store *review.Store, n int) {
	b.Helper()
	ctx := b.Context()
	now := time.Now().UTC()
	step := 24 * time.Hour / time.Duration(n)
	codes := []string{decision.CodeModel, decision.CodeVelocity, decision.CodeAmount}
	batch := make([]decision.Decision, 0, 100)
	for i := range n {
		id := fmt.Sprintf("pay-%07d", i)
		score := float64(i%1000) / 1000
		batch = append(batch, decision.Decision{PaymentID: id, CardID: fmt.Sprintf("card-%07d", i), Flagged: true,
			Score: &score, Reasons: []decision.Reason{{Code: codes[i%len(codes)], Detail: "bench"}},
			DecidedAt: now.Add(-time.Duration(i) * step),
			Payment: fmt.Appendf(nil, `{"payment_id":%q,"amount":"%d.%02d","currency":"EUR","merchant_id":"m-%04d","country":"FR"}`,
				id, 10+i%990, i%100, i%5000)})
		if len(batch) == cap(batch) || i == n-1 {
			opened, err := store.OpenAll(ctx, batch)
			if err != nil {
				b.Fatal(err)
			}
			if opened != len(batch) {
				b.Fatalf("opened %d of %d reviews", opened, len(batch))
			}
			batch = batch[:0]
		}
	}
}

// benchSignIn posts the sign-in form as the console's own page would and returns the session
// cookie.
func benchSignIn(b *testing.B, srv *httptest.Server, token string) *http.Cookie {
	b.Helper()
	req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, srv.URL+"/ui/sign-in",
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", srv.URL)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	client := *srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		b.Fatalf("sign-in: status %d, want 303", resp.StatusCode)
	}
	for _, ck := range resp.Cookies() {
		if ck.Name == cookieName {
			return ck
		}
	}
	b.Fatal("sign-in set no session cookie")
	return nil
}

// benchGet asks for a page with the session cookie and returns its status and body.
func benchGet(b *testing.B, client *http.Client, target string, ck *http.Cookie) (int, []byte) {
	req, err := http.NewRequestWithContext(b.Context(), http.MethodGet, target, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.AddCookie(ck)
	resp, err := client.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.Fatal(err)
	}
	return resp.StatusCode, body
}

// nextURL returns the absolute URL of a queue page's next-page link (link's first group), or ""
// if it has none.
func nextURL(b *testing.B, link *regexp.Regexp, base string, body []byte) string {
	m := link.FindSubmatch(body)
	if m == nil {
		return ""
	}
	href := html.UnescapeString(string(m[1]))
	if !strings.HasPrefix(href, "/ui/cases?") {
		b.Fatalf("next-page link %q", href)
	}
	return base + href
}
