package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-json-experiment/json"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/redistest"
	"github.com/paysentry/fraud-detector/internal/review"
	"github.com/paysentry/fraud-detector/internal/window"
)

// The tests run the real router over stores on a real redis-server (scripts/stack.sh up, or set
// FD_TEST_REDIS); the labels go to a recording publisher (e2e tests publish to Kafka).

const (
	viewerToken  = "viewer-token-0123456789"
	analystToken = "analyst-token-0123456789"
)

type recorder struct {
	mu     sync.Mutex
	labels []Label
	fail   bool
}

func (r *recorder) Publish(_ context.Context, l Label) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return fmt.Errorf("broker down")
	}
	r.labels = append(r.labels, l)
	return nil
}

func hash(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }

type rig struct {
	srv     *httptest.Server
	reviews *review.Store
	labels  *recorder
}

func newRig(t *testing.T) *rig {
	t.Helper()
	rdb, prefix := redistest.New(t, "apitest")
	reviews := review.NewStore(rdb, review.Config{KeyPrefix: prefix, Retention: 24 * time.Hour}, time.Now)
	cards := window.NewStore(rdb, window.Config{Length: time.Hour, Threshold: 10, AllowedLateness: time.Hour, KeyPrefix: prefix, Buckets: 16, MaxPaymentsPerCard: 4096}, time.Now)
	rec := &recorder{}
	cfg := Config{Tokens: Tokens{{Name: "vera", Role: RoleViewer, SHA256: hash(viewerToken)}, {Name: "ana", Role: RoleAnalyst, SHA256: hash(analystToken)}},
		MaxBodyBytes: 4096, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := New(cfg, reviews, cards, rec, Ops{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(s.Router())
	t.Cleanup(srv.Close)
	// Two flagged payments of card c1, one of c2, with state in the windows. A review is as old as
	// its decision: p1 is the oldest, p3 the newest.
	now := time.Now().UTC()
	for i, d := range []decision.Decision{
		{PaymentID: "p1", CardID: "c1", Score: ptr(0.91), Reasons: []decision.Reason{{Code: decision.CodeModel, Detail: "x"}}},
		{PaymentID: "p2", CardID: "c1", Reasons: []decision.Reason{{Code: decision.CodeAmount, Detail: "y"}}},
		{PaymentID: "p3", CardID: "c2", Score: ptr(0.6), Reasons: []decision.Reason{{Code: decision.CodeModel, Detail: "z"}}},
	} {
		d.Flagged, d.DecidedAt, d.Payment = true, now.Add(time.Duration(i-3)*time.Second), []byte(`{"payment_id":"`+d.PaymentID+`","card_number":"400000******0002"}`)
		if _, err := reviews.Open(context.Background(), d); err != nil {
			t.Fatal(err)
		}
		out := make([]window.Result, 1)
		cards.Observe(context.Background(), []window.Event{{PaymentID: d.PaymentID, Card: d.CardID, Time: now.Add(-time.Duration(i) * time.Second)}}, out)
	}
	return &rig{srv: srv, reviews: reviews, labels: rec}
}

func ptr[T any](v T) *T { return &v }

func (r *rig) do(t *testing.T, method, path, token, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, r.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s %s: %d, not JSON: %q", method, path, resp.StatusCode, b)
	}
	if resp.StatusCode >= 400 {
		e, _ := v["error"].(map[string]any)
		if e == nil || e["code"] == nil || e["message"] == nil {
			t.Errorf("%s %s: %d without {error: {code, message}}: %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, v
}

// Every route is in the OpenAPI document, and every route the document describes exists.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(openapi, &doc); err != nil {
		t.Fatal(err)
	}
	var described, served []string
	for path, ops := range doc.Paths {
		for method := range ops {
			described = append(described, strings.ToUpper(method)+" "+path)
		}
	}
	s := New(Config{}, nil, nil, nil, Ops{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	chi.Walk(s.Router().(chi.Routes), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/v1/") { // the operator's endpoints are not the API
			served = append(served, method+" "+strings.TrimSuffix(route, "/"))
		}
		return nil
	})
	slices.Sort(described)
	slices.Sort(served)
	if !slices.Equal(described, served) {
		t.Errorf("routes and document differ:\n served    %v\n described %v", served, described)
	}
}

func TestAuthMatrix(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		method, path, body string
		none, bad, viewer  int
	}{
		{"GET", "/v1/reviews", "", 401, 401, 200},
		{"GET", "/v1/reviews/p1", "", 401, 401, 200},
		{"GET", "/v1/cards/c1", "", 401, 401, 200},
		{"POST", "/v1/reviews/p3/verdict", `{"label":"fraud"}`, 401, 401, 403},
	} {
		for token, want := range map[string]int{"": tc.none, "not-a-token": tc.bad, viewerToken: tc.viewer} {
			if got, _ := r.do(t, tc.method, tc.path, token, tc.body); got != want {
				t.Errorf("%s %s with %q: %d, want %d", tc.method, tc.path, token, got, want)
			}
		}
	}
	if got, _ := r.do(t, "POST", "/v1/reviews/p3/verdict", analystToken, `{"label":"fraud"}`); got != 200 {
		t.Errorf("analyst verdict: %d", got)
	}
	if got, _ := r.do(t, "GET", "/v1/openapi.json", "", ""); got != 200 {
		t.Errorf("openapi.json: %d", got)
	}
}

func TestReviewsEndpoints(t *testing.T) {
	r := newRig(t)
	ids := func(v map[string]any) (out []string) {
		for _, x := range v["reviews"].([]any) {
			out = append(out, x.(map[string]any)["payment_id"].(string))
		}
		return out
	}
	for query, want := range map[string][]string{
		"":                            {"p3", "p2", "p1"},
		"?order=riskiest":             {"p1", "p3", "p2"},
		"?card=c1":                    {"p2", "p1"},
		"?reason=model_score":         {"p3", "p1"},
		"?status=open&card=c2":        {"p3"},
		"?status=fraud":               nil,
		"?from=2000-01-01T00:00:00Z":  {"p3", "p2", "p1"},
		"?to=2000-01-01T00:00:00Z":    nil,
		"?order=riskiest&status=open": {"p1", "p3", "p2"},
	} {
		code, v := r.do(t, "GET", "/v1/reviews"+query, viewerToken, "")
		if code != 200 || !slices.Equal(ids(v), want) {
			t.Errorf("list%s: %d %v, want %v", query, code, ids(v), want)
		}
	}
	// Pages of one.
	var all []string
	path := "/v1/reviews?limit=1"
	for range 5 {
		_, v := r.do(t, "GET", path, viewerToken, "")
		all = append(all, ids(v)...)
		next, _ := v["next_cursor"].(string)
		if next == "" {
			break
		}
		path = "/v1/reviews?limit=1&cursor=" + next
	}
	if !slices.Equal(all, []string{"p3", "p2", "p1"}) {
		t.Errorf("pages %v", all)
	}

	code, v := r.do(t, "GET", "/v1/reviews/p1", viewerToken, "")
	dec, _ := v["decision"].(map[string]any)
	if code != 200 || v["status"] != "open" || dec == nil || len(v["audit"].([]any)) != 1 ||
		!strings.Contains(fmt.Sprint(dec["payment"]), "400000******0002") {
		t.Errorf("get: %d %v", code, v)
	}
	if code, _ := r.do(t, "GET", "/v1/reviews/nope", viewerToken, ""); code != 404 {
		t.Errorf("unknown review: %d", code)
	}

	// A verdict once: another, or the same one again once its label is out, is a conflict.
	code, v = r.do(t, "POST", "/v1/reviews/p1/verdict", analystToken, `{"label":"fraud","note":"card holder confirmed"}`)
	if code != 200 || v["status"] != "fraud" {
		t.Fatalf("verdict: %d %v", code, v)
	}
	if code, _ := r.do(t, "POST", "/v1/reviews/p1/verdict", analystToken, `{"label":"legitimate"}`); code != 409 {
		t.Errorf("second verdict: %d", code)
	}
	if code, _ := r.do(t, "POST", "/v1/reviews/p1/verdict", analystToken, `{"label":"fraud","note":"card holder confirmed"}`); code != 409 {
		t.Errorf("the same verdict again: %d", code)
	}
	_, v = r.do(t, "GET", "/v1/reviews/p1", viewerToken, "")
	audit := v["audit"].([]any)
	if last := audit[len(audit)-1].(map[string]any); len(audit) != 2 || last["analyst"] != "ana" || last["label"] != "fraud" || last["note"] != "card holder confirmed" {
		t.Errorf("audit %v", audit)
	}
	if len(r.labels.labels) != 1 || r.labels.labels[0].CardID != "c1" || r.labels.labels[0].Analyst != "ana" {
		t.Errorf("labels published %+v", r.labels.labels)
	}
	// A broker that refuses: 503, the verdict is kept, the same verdict again publishes it, once.
	r.labels.fail = true
	if code, _ := r.do(t, "POST", "/v1/reviews/p2/verdict", analystToken, `{"label":"legitimate"}`); code != 503 {
		t.Errorf("verdict with the broker down: %d", code)
	}
	r.labels.fail = false
	if code, _ := r.do(t, "POST", "/v1/reviews/p2/verdict", analystToken, `{"label":"fraud"}`); code != 409 {
		t.Errorf("another verdict after the failed publish: %d", code)
	}
	if code, _ := r.do(t, "POST", "/v1/reviews/p2/verdict", analystToken, `{"label":"legitimate"}`); code != 200 || len(r.labels.labels) != 2 {
		t.Errorf("retry: %d, %d labels", code, len(r.labels.labels))
	}
	if code, _ := r.do(t, "POST", "/v1/reviews/p2/verdict", analystToken, `{"label":"legitimate"}`); code != 409 || len(r.labels.labels) != 2 {
		t.Errorf("a retry once published: %d, %d labels", code, len(r.labels.labels))
	}

	code, v = r.do(t, "GET", "/v1/cards/c1", viewerToken, "")
	if code != 200 || len(v["recent_reviews"].([]any)) != 2 || len(v["windows"].([]any)) == 0 {
		t.Errorf("card: %d %v", code, v)
	}
}

// Malformed requests get a 4xx with a JSON error, never a 5xx.
func TestMalformedRequests(t *testing.T) {
	r := newRig(t)
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/v1/reviews?limit=abc", "", 400},
		{"GET", "/v1/reviews?limit=0", "", 400},
		{"GET", "/v1/reviews?limit=100000", "", 400},
		{"GET", "/v1/reviews?order=random", "", 400},
		{"GET", "/v1/reviews?status=closed", "", 400},
		{"GET", "/v1/reviews?from=yesterday", "", 400},
		{"GET", "/v1/reviews?cursor=%25%25%25", "", 400},
		{"GET", "/v1/reviews?cursor=bm8tc2VwYXJhdG9y", "", 400},
		{"GET", "/v1/reviews?colour=red", "", 400},
		{"GET", "/v1/reviews?to=", "", 400},
		{"GET", "/v1/reviews?card=a&card=b", "", 400},
		{"POST", "/v1/reviews/p1/verdict", `{"label":"fraud",`, 400},
		{"POST", "/v1/reviews/p1/verdict", `{"label":"fraud","extra":1}`, 400},
		{"POST", "/v1/reviews/p1/verdict", `{"label":"maybe"}`, 422},
		{"POST", "/v1/reviews/p1/verdict", `{"label":"fraud","note":"` + strings.Repeat("n", 2001) + `"}`, 422},
		{"POST", "/v1/reviews/p1/verdict", `{"label":"fraud","note":"` + strings.Repeat("n", 5000) + `"}`, 413},
		{"POST", "/v1/reviews/p1/verdict", `[]`, 400},
		{"POST", "/v1/reviews/p1/verdict", "", 400},
		{"POST", "/v1/reviews/nope/verdict", `{"label":"fraud"}`, 404},
		{"DELETE", "/v1/reviews/p1", "", 405},
		{"TRACE", "/v1/reviews/p1/verdict", "", 405},
		{"GET", "/v1/cards/%FF", "", 400},
		{"GET", "/v1/reviews?card=%FF", "", 400},
		{"GET", "/v2/anything", "", 404},
	} {
		token := viewerToken
		if tc.method == "POST" {
			token = analystToken
		}
		if got, _ := r.do(t, tc.method, tc.path, token, tc.body); got != tc.want {
			t.Errorf("%s %s %.40q: %d, want %d", tc.method, tc.path, tc.body, got, tc.want)
		}
	}
}

// BenchmarkList measures the list endpoint over FD_BENCH_REVIEWS open reviews (default 100,000)
// of 5,000 cards: requests/s and the percentiles, with 8 clients asking for first pages of 50:
// newest first, riskiest first, open ones, by reason, and (one in five) by card.
//
//	go test -run '^$' -bench List -benchtime 2000x ./internal/api
func BenchmarkList(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("FD_BENCH_REVIEWS")); err == nil && v > 0 {
		n = v
	}
	rdb, prefix := redistest.New(b, "apibench")
	ctx := context.Background()
	reviews := review.NewStore(rdb, review.Config{KeyPrefix: prefix, Retention: 24 * time.Hour}, time.Now)
	rng := rand.New(rand.NewPCG(1, 2))
	codes := []string{decision.CodeAmount, decision.CodeVelocity, decision.CodeModel}
	batch := make([]decision.Decision, 0, 500)
	for i := range n {
		batch = append(batch, decision.Decision{PaymentID: fmt.Sprintf("pay-%07d", i), CardID: fmt.Sprintf("card-%05d", rng.IntN(5000)),
			Flagged: true, Score: ptr(rng.Float64()), Reasons: []decision.Reason{{Code: codes[rng.IntN(3)], Detail: "bench"}},
			DecidedAt: time.Now().UTC(), Payment: []byte(`{"payment_id":"x","amount":"150.00","currency":"EUR"}`)})
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := reviews.OpenAll(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	s := New(Config{Tokens: Tokens{{Name: "v", Role: RoleViewer, SHA256: hash(viewerToken)}}, MaxBodyBytes: 4096, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second},
		reviews, nil, nil, Ops{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(s.Router())
	defer srv.Close()
	queries := []string{"?limit=50", "?limit=50&order=riskiest", "?limit=50&status=open", "?limit=50&reason=card_velocity_1h"}
	var mu sync.Mutex
	var lat []time.Duration
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			client := &http.Client{}
			for i := range next {
				path := "/v1/reviews" + queries[i%len(queries)]
				if i%5 == 4 {
					path = fmt.Sprintf("/v1/reviews?limit=50&card=card-%05d", i%5000)
				}
				began := time.Now()
				req, _ := http.NewRequest("GET", srv.URL+path, nil)
				req.Header.Set("Authorization", "Bearer "+viewerToken)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("%s: %d", path, resp.StatusCode)
				}
				mu.Lock()
				lat = append(lat, time.Since(began))
				mu.Unlock()
			}
		})
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
}

func TestTokensAreNotLoggedAndMustDiffer(t *testing.T) {
	ts := Tokens{{Name: "a", Role: RoleViewer, SHA256: hash("x")}}
	if b, _ := json.Marshal(ts); strings.Contains(string(b), hash("x")) || !strings.Contains(string(b), `"a"`) {
		t.Errorf("tokens shown as %s", b)
	}
	if fmt.Sprint(ts) == "" || strings.Contains(fmt.Sprint(ts), hash("x")) {
		t.Errorf("tokens printed as %v", ts)
	}
	cfg := Config{Tokens: Tokens{ts[0], {Name: "b", Role: RoleAnalyst, SHA256: hash("x")}}, MaxBodyBytes: 4096, ReadTimeout: time.Second, WriteTimeout: time.Second}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "the same token") {
		t.Errorf("two names for one token: %v", err)
	}
}
