package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-json-experiment/json"
	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/lists"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/redistest"
	"github.com/paysentry/fraud-detector/internal/review"
	"github.com/paysentry/fraud-detector/internal/score"
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
	delay  time.Duration // each publish takes this long (outside the lock)
}

func (r *recorder) Publish(_ context.Context, l Label) error {
	r.mu.Lock()
	d := r.delay
	r.mu.Unlock()
	time.Sleep(d) // a slow broker
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
	srv      *httptest.Server
	reviews  *review.Store
	labels   *recorder
	lists    *lists.Store
	logs     *syncBuffer
	verdicts *verdictRecorder
}

// verdictRecorder notes the reviews whose verdicts the API counted.
type verdictRecorder struct {
	mu      sync.Mutex
	counted []string // payment id:label
}

func (v *verdictRecorder) Count(r review.Review) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.counted = append(v.counted, r.PaymentID+":"+r.Verdict.Label)
}

func (v *verdictRecorder) list() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.counted)
}

// syncBuffer is a log destination the server's goroutines and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *syncBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// The lists the rules declare.
var listSpecs = []lists.Spec{
	{Name: "blocked_cards", Kind: lists.KindCard, Description: "cards seen in fraud"},
	{Name: "allowed_cards", Kind: lists.KindCard},
	{Name: "blocked_merchants", Kind: lists.KindMerchant},
	{Name: "blocked_countries", Kind: lists.KindCountry},
	{Name: "blocked_ips", Kind: lists.KindIP},
	{Name: "blocked_devices", Kind: lists.KindDevice},
	{Name: "blocked_bins", Kind: lists.KindBIN},
}

func newRig(t *testing.T) *rig { return newRigFor(t) }

// newRigFor is newRig for a test or a fuzz target.
func newRigFor(t testing.TB) *rig {
	t.Helper()
	rdb, prefix := redistest.New(t, "apitest")
	reviews := review.NewStore(rdb, review.Config{KeyPrefix: prefix, Retention: 24 * time.Hour}, time.Now)
	cards := window.NewStore(rdb, window.Config{Length: time.Hour, AllowedLateness: time.Hour, KeyPrefix: prefix, Buckets: 16, MaxPaymentsPerCard: 4096}, time.Now)
	rec := &recorder{}
	cfg := Config{Tokens: Tokens{{Name: "vera", Role: RoleViewer, SHA256: hash(viewerToken)}, {Name: "ana", Role: RoleAnalyst, SHA256: hash(analystToken)}},
		MaxBodyBytes: 4096, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, SessionTTL: time.Hour}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ls := lists.NewStore(rdb, prefix, time.Now)
	ls.SetSpecs(listSpecs)
	logs := &syncBuffer{}
	verdicts := &verdictRecorder{}
	s := New(cfg, reviews, cards, rec, ls, Ops{Verdicts: verdicts}, slog.New(slog.NewTextHandler(logs, nil)))
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
	return &rig{srv: srv, reviews: reviews, labels: rec, lists: ls, logs: logs, verdicts: verdicts}
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
	if resp.StatusCode == http.StatusNoContent {
		if len(b) > 0 {
			t.Errorf("%s %s: 204 with a body %q", method, path, b)
		}
		return resp.StatusCode, nil
	}
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
	s := New(Config{}, nil, nil, nil, nil, Ops{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
		{"GET", "/v1/lists", "", 401, 401, 200},
		{"GET", "/v1/lists/blocked_cards/items", "", 401, 401, 200},
		{"GET", "/v1/lists/blocked_cards/items/c1", "", 401, 401, 404},
		{"GET", "/v1/lists/blocked_cards/changes", "", 401, 401, 200},
		{"PUT", "/v1/lists/blocked_cards/items/c1", "", 401, 401, 403},
		{"DELETE", "/v1/lists/blocked_cards/items/c1", "", 401, 401, 403},
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

	// A note with a card number is refused, unquoted, and nothing is recorded.
	if code, body := r.do(t, "POST", "/v1/reviews/p1/verdict", analystToken, `{"label":"fraud","note":"called about 4111 1111 1111 1111"}`); code != 422 ||
		strings.Contains(fmt.Sprint(body), "4111") {
		t.Errorf("a note with a card number: %d %v", code, body)
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
	// Each verdict is counted for the models' comparison once, when it is recorded: not again
	// when it is sent again to publish its label, nor for a refused one.
	if got := r.verdicts.list(); !slices.Equal(got, []string{"p1:fraud", "p2:legitimate"}) {
		t.Errorf("verdicts counted %v, want p1:fraud and p2:legitimate once each", got)
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
	s := New(Config{Tokens: Tokens{{Name: "v", Role: RoleViewer, SHA256: hash(viewerToken)}}, MaxBodyBytes: 4096, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, SessionTTL: time.Hour},
		reviews, nil, nil, nil, Ops{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
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

// The lists' routes over a real lists.Store on the real Redis.
func TestListsEndpoints(t *testing.T) {
	r := newRig(t)
	code, v := r.do(t, "GET", "/v1/lists", viewerToken, "")
	all, _ := v["lists"].([]any)
	if code != 200 || len(all) != len(listSpecs) {
		t.Fatalf("lists: %d %v", code, v)
	}
	if first := all[0].(map[string]any); first["name"] != "allowed_cards" || first["kind"] != "card" || first["items"] != 0.0 {
		t.Errorf("first list %v", first)
	}

	// Added once: 201, then 200 with the item as it was.
	code, v = r.do(t, "PUT", "/v1/lists/blocked_countries/items/de", analystToken, `{"note":"sanctions"}`)
	if code != 201 || v["value"] != "DE" || v["added_by"] != "ana" || v["note"] != "sanctions" || v["list"] != "blocked_countries" {
		t.Fatalf("put: %d %v", code, v)
	}
	added := v["added_at"]
	code, v = r.do(t, "PUT", "/v1/lists/blocked_countries/items/DE", analystToken, `{"note":"again"}`)
	if code != 200 || v["note"] != "sanctions" || v["added_at"] != added {
		t.Errorf("put again: %d %v", code, v)
	}
	if !strings.Contains(r.logs.String(), `msg="list changed" list=blocked_countries op=add analyst=ana value=DE`) ||
		strings.Count(r.logs.String(), "list changed") != 1 {
		t.Errorf("log:\n%s", r.logs.String())
	}
	if code, v = r.do(t, "GET", "/v1/lists/blocked_countries/items/de", viewerToken, ""); code != 200 || v["value"] != "DE" {
		t.Errorf("get: %d %v", code, v)
	}
	_, v = r.do(t, "GET", "/v1/lists", viewerToken, "")
	for _, l := range v["lists"].([]any) {
		if l := l.(map[string]any); l["name"] == "blocked_countries" && l["items"] != 1.0 {
			t.Errorf("count %v", l)
		}
	}

	// Values the kind refuses, unknown lists, items that are not there.
	for _, tc := range []struct {
		method, path, body string
		status             int
		code, says         string
	}{
		{"PUT", "/v1/lists/blocked_countries/items/XX1", "", 422, "invalid_value", "kind country"},
		{"PUT", "/v1/lists/blocked_ips/items/999.1.1.1", "", 422, "invalid_value", "kind ip"},
		{"PUT", "/v1/lists/blocked_ips/items/10.0.0.0%2F8", "", 422, "invalid_value", "not supported"},
		{"PUT", "/v1/lists/blocked_cards/items/4111111111111111", "", 422, "invalid_value", "looks like a card number"},
		{"GET", "/v1/lists/blocked_cards/items/4111111111111111", "", 422, "invalid_value", "looks like a card number"},
		{"DELETE", "/v1/lists/blocked_cards/items/4111-1111-1111-1111", "", 422, "invalid_value", "looks like a card number"},
		{"PUT", "/v1/lists/blocked_merchants/items/4111111111111111", "", 422, "invalid_value", "kind merchant: the value holds what looks like a card number"},
		{"PUT", "/v1/lists/blocked_merchants/items/4111%201111%201111%201111", "", 422, "invalid_value", "lists never store one"},
		{"PUT", "/v1/lists/blocked_devices/items/dev-4111-1111-1111-1111", "", 422, "invalid_value", "kind device"},
		{"PUT", "/v1/lists/blocked_ips/items/4111111111111111", "", 422, "invalid_value", "kind ip"},
		{"PUT", "/v1/lists/blocked_bins/items/4111111111111111", "", 422, "invalid_value", "kind bin"},
		{"PUT", "/v1/lists/blocked_bins/items/41", "", 422, "invalid_value", "a BIN: 6 digits (the first 6 of the card number)"},
		{"PUT", "/v1/lists/blocked_bins/items/4111111", "", 422, "invalid_value", "not 6 digits"},
		{"PUT", "/v1/lists/blocked_bins/items/41111111", "", 422, "invalid_value", "not 6 digits"},
		{"PUT", "/v1/lists/blocked_ips/items/" + strings.Repeat("x", 24) + "41111111111111110000", "", 422, "invalid_value", "kind ip"},
		{"PUT", "/v1/lists/blocked_devices/items/d1", `{"note":"card 4111 1111 1111 1111"}`, 422, "invalid_note", "looks like a card number"},
		{"PUT", "/v1/lists/blocked_devices/items/d1", `{"note":"x","4111111111111111":1}`, 400, "invalid_json", "411111******1111"},
		{"PUT", "/v1/lists/4111111111111111/items/d1", "", 404, "unknown_list", "411111******1111"},
		{"PUT", "/v1/lists/blocked_emails/items/a@b", "", 404, "unknown_list", "blocked_cards"},
		{"GET", "/v1/lists/blocked_emails/items", "", 404, "unknown_list", "blocked_cards"},
		{"GET", "/v1/lists/blocked_emails/changes", "", 404, "unknown_list", "blocked_cards"},
		{"DELETE", "/v1/lists/blocked_emails/items/x", "", 404, "unknown_list", "blocked_cards"},
		{"GET", "/v1/lists/blocked_countries/items/FR", "", 404, "not_found", "FR"},
		{"DELETE", "/v1/lists/blocked_countries/items/FR", "", 404, "not_found", "FR"},
		{"PUT", "/v1/lists/blocked_devices/items/d1", `{"note":"x","colour":"red"}`, 400, "invalid_json", "colour"},
		{"PUT", "/v1/lists/blocked_devices/items/d1", `[]`, 400, "invalid_json", "note"},
		{"PUT", "/v1/lists/blocked_devices/items/d1", `null`, 400, "invalid_json", "not an object"},
		{"PUT", "/v1/lists/blocked_devices/items/d1", `"n"`, 400, "invalid_json", "note"},
		{"PUT", "/v1/lists/blocked_devices/items/d1", `{"note":` + strconv.Quote(strings.Repeat("n", 1001)) + `}`, 422, "invalid_note", "1000"},
		{"PUT", "/v1/lists/blocked_devices/items/d1", `{"note":` + strconv.Quote(strings.Repeat("n", 5000)) + `}`, 413, "too_large", "4096"},
		{"GET", "/v1/lists/blocked_devices/items?limit=0", "", 400, "invalid_request", "limit"},
		{"GET", "/v1/lists/blocked_devices/items?limit=1001", "", 400, "invalid_request", "limit"},
		{"GET", "/v1/lists/blocked_devices/items?limit=many", "", 400, "invalid_request", "limit"},
		{"GET", "/v1/lists/blocked_devices/items?cursor=%25%25", "", 400, "invalid_request", "cursor"},
		{"GET", "/v1/lists/blocked_devices/items?colour=red", "", 400, "invalid_request", "colour"},
		{"GET", "/v1/lists/blocked_devices/changes?limit=0", "", 400, "invalid_request", "limit"},
		{"GET", "/v1/lists/blocked_devices/items/%FF", "", 400, "invalid_request", "UTF-8"},
		{"POST", "/v1/lists/blocked_devices/items/d1", "", 405, "method_not_allowed", "POST"},
	} {
		token := viewerToken
		if tc.method != "GET" {
			token = analystToken
		}
		code, v := r.do(t, tc.method, tc.path, token, tc.body)
		e, _ := v["error"].(map[string]any)
		if code != tc.status || e["code"] != tc.code || !strings.Contains(fmt.Sprint(e["message"]), tc.says) {
			t.Errorf("%s %s %.30q: %d %v, want %d %s saying %q", tc.method, tc.path, tc.body, code, v, tc.status, tc.code, tc.says)
		}
		if _, found := payment.RedactPANs([]byte(fmt.Sprint(e["message"]))); found || strings.Contains(fmt.Sprint(e["message"]), "4111111111111111") {
			t.Errorf("%s %s: the message quotes a card number: %v", tc.method, tc.path, e)
		}
	}
	if _, err := r.lists.Get(context.Background(), "blocked_devices", "d1"); !errors.Is(err, lists.ErrNotFound) {
		t.Errorf("d1 stored with a refused note: %v", err)
	}
	// A non-JSON content type.
	req, _ := http.NewRequest("PUT", r.srv.URL+"/v1/lists/blocked_devices/items/d1", strings.NewReader("note"))
	req.Header.Set("Authorization", "Bearer "+analystToken)
	req.Header.Set("Content-Type", "text/plain")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 415 {
		t.Errorf("text/plain: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	req, _ = http.NewRequest("POST", r.srv.URL+"/v1/lists/blocked_devices/items/d1", nil)
	req.Header.Set("Authorization", "Bearer "+analystToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.Header.Get("Allow") != "GET, PUT, DELETE" {
		t.Errorf("405's Allow: %v %v", resp.Header, err)
	} else {
		resp.Body.Close()
	}

	// Values with a slash, escaped as %2F, and IPv6 addresses; a PUT without a body.
	for _, tc := range []struct{ list, path, value string }{
		{"blocked_cards", "tok%2Fab+c=", "tok/ab+c="},
		// card_ids that payments may carry: not Luhn-valid digits, a space, a non-ASCII letter.
		{"blocked_cards", "1234567890123456", "1234567890123456"},
		{"blocked_cards", "acct%2042", "acct 42"},
		{"blocked_cards", "carte-%C3%A9", "carte-é"},
		{"blocked_devices", "a%2Fb%2F..%2Fc", "a/b/../c"},
		{"blocked_devices", "%2F", "/"},
		{"blocked_merchants", "caf%C3%A9%20z%C3%BCrich", "café zürich"},
		{"blocked_ips", "2001%3ADB8%3A%3A1", "2001:db8::1"},
		{"blocked_ips", "::ffff:192.0.2.1", "192.0.2.1"},
	} {
		path := "/v1/lists/" + tc.list + "/items/" + tc.path
		if code, v := r.do(t, "PUT", path, analystToken, ""); code != 201 || v["value"] != tc.value {
			t.Errorf("put %s: %d %v, want %q", path, code, v, tc.value)
		}
		if code, v := r.do(t, "GET", path, viewerToken, ""); code != 200 || v["value"] != tc.value {
			t.Errorf("get %s: %d %v", path, code, v)
		}
		if got, err := r.lists.Get(context.Background(), tc.list, tc.value); err != nil || got.Value != tc.value {
			t.Errorf("%s in the store: %+v %v", tc.value, got, err)
		}
	}
	code, v = r.do(t, "GET", "/v1/lists/blocked_devices/items", viewerToken, "")
	if items := v["items"].([]any); code != 200 || len(items) != 2 || items[0].(map[string]any)["value"] != "/" || v["next_cursor"] != nil {
		t.Errorf("items: %d %v", code, v)
	}
	if code, _ := r.do(t, "DELETE", "/v1/lists/blocked_devices/items/a%2Fb%2F..%2Fc", analystToken, ""); code != 204 {
		t.Errorf("delete: %d", code)
	}
	if code, _ := r.do(t, "DELETE", "/v1/lists/blocked_devices/items/a%2Fb%2F..%2Fc", analystToken, ""); code != 404 {
		t.Errorf("delete again: %d", code)
	}
	if !strings.Contains(r.logs.String(), `msg="list changed" list=blocked_devices op=remove analyst=ana value=a/b/../c`) {
		t.Errorf("log:\n%s", r.logs.String())
	}
	// A removal is logged with the value as the list held it, as the audit trail has it.
	if code, _ := r.do(t, "DELETE", "/v1/lists/blocked_ips/items/::ffff:192.0.2.1", analystToken, ""); code != 204 {
		t.Errorf("delete ::ffff:192.0.2.1: %d", code)
	}
	if logs := r.logs.String(); !strings.Contains(logs, `msg="list changed" list=blocked_ips op=remove analyst=ana value=192.0.2.1`+"\n") ||
		strings.Contains(logs, "::ffff") {
		t.Errorf("log:\n%s", logs)
	}
	if _, v := r.do(t, "GET", "/v1/lists/blocked_ips/changes?limit=1", viewerToken, ""); v["changes"].([]any)[0].(map[string]any)["value"] != "192.0.2.1" {
		t.Errorf("the audit trail's removal: %v", v)
	}
	if _, found := payment.RedactPANs([]byte(r.logs.String())); found {
		t.Errorf("a card number in the log:\n%s", r.logs.String())
	}

	// The audit trail, newest first.
	code, v = r.do(t, "GET", "/v1/lists/blocked_devices/changes", viewerToken, "")
	changes, _ := v["changes"].([]any)
	var got []string
	for _, c := range changes {
		c := c.(map[string]any)
		got = append(got, fmt.Sprint(c["op"], " ", c["value"], " ", c["by"]))
	}
	if want := []string{"remove a/b/../c ana", "add / ana", "add a/b/../c ana"}; code != 200 || !slices.Equal(got, want) {
		t.Errorf("changes: %d %v, want %v", code, got, want)
	}
	if _, v := r.do(t, "GET", "/v1/lists/blocked_devices/changes?limit=1", viewerToken, ""); len(v["changes"].([]any)) != 1 {
		t.Errorf("changes?limit=1: %v", v)
	}

	// Pages.
	for i := range 5 {
		r.do(t, "PUT", fmt.Sprintf("/v1/lists/blocked_bins/items/41111%d", i), analystToken, "")
	}
	var values []string
	path := "/v1/lists/blocked_bins/items?limit=2"
	for range 5 {
		_, v := r.do(t, "GET", path, viewerToken, "")
		for _, it := range v["items"].([]any) {
			values = append(values, it.(map[string]any)["value"].(string))
		}
		next, _ := v["next_cursor"].(string)
		if next == "" {
			break
		}
		path = "/v1/lists/blocked_bins/items?limit=2&cursor=" + next
	}
	if !slices.Equal(values, []string{"411110", "411111", "411112", "411113", "411114"}) {
		t.Errorf("pages %v", values)
	}

	// The stream's snapshot has the changes after one refresh.
	if _, err := r.lists.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if snap := r.lists.Snapshot(); !snap.Contains("blocked_countries", "DE") || !snap.Contains("blocked_cards", "tok/ab+c=") ||
		!snap.Contains("blocked_ips", "2001:db8::1") || snap.Contains("blocked_devices", "a/b/../c") {
		t.Errorf("snapshot %+v", snap)
	}
}

// Without a lists' store the lists' routes answer 503 lists_unavailable, after authentication.
func TestListsUnavailable(t *testing.T) {
	cfg := Config{Tokens: Tokens{{Name: "vera", Role: RoleViewer, SHA256: hash(viewerToken)}, {Name: "ana", Role: RoleAnalyst, SHA256: hash(analystToken)}},
		MaxBodyBytes: 4096, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, SessionTTL: time.Hour}
	srv := httptest.NewServer(New(cfg, nil, nil, nil, nil, Ops{}, slog.New(slog.NewTextHandler(io.Discard, nil))).Router())
	t.Cleanup(srv.Close)
	r := &rig{srv: srv}
	for _, tc := range []struct{ method, path, token string }{
		{"GET", "/v1/lists", viewerToken},
		{"GET", "/v1/lists/blocked_cards/items", viewerToken},
		{"GET", "/v1/lists/blocked_cards/items/c1", viewerToken},
		{"GET", "/v1/lists/blocked_cards/changes", viewerToken},
		{"PUT", "/v1/lists/blocked_cards/items/c1", analystToken},
		{"DELETE", "/v1/lists/blocked_cards/items/c1", analystToken},
	} {
		code, v := r.do(t, tc.method, tc.path, tc.token, "")
		if e, _ := v["error"].(map[string]any); code != 503 || e["code"] != "lists_unavailable" {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, code, v)
		}
		if code, _ := r.do(t, tc.method, tc.path, "", ""); code != 401 {
			t.Errorf("%s %s without a token: %d", tc.method, tc.path, code)
		}
	}
	if code, _ := r.do(t, "PUT", "/v1/lists/blocked_cards/items/c1", viewerToken, ""); code != 403 {
		t.Errorf("a viewer's PUT: %d", code)
	}
}

// Redis not answering: 503 unavailable, saying nothing of the internals.
func TestListsRedisDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { rdb.Close() })
	ls := lists.NewStore(rdb, "down", time.Now)
	ls.SetSpecs(listSpecs)
	cfg := Config{Tokens: Tokens{{Name: "ana", Role: RoleAnalyst, SHA256: hash(analystToken)}},
		MaxBodyBytes: 4096, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, SessionTTL: time.Hour}
	srv := httptest.NewServer(New(cfg, nil, nil, nil, ls, Ops{}, slog.New(slog.NewTextHandler(io.Discard, nil))).Router())
	t.Cleanup(srv.Close)
	r := &rig{srv: srv}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/lists"},
		{"GET", "/v1/lists/blocked_cards/items"},
		{"GET", "/v1/lists/blocked_cards/items/c1"},
		{"GET", "/v1/lists/blocked_cards/changes"},
		{"PUT", "/v1/lists/blocked_cards/items/c1"},
		{"DELETE", "/v1/lists/blocked_cards/items/c1"},
	} {
		code, v := r.do(t, tc.method, tc.path, analystToken, "")
		e, _ := v["error"].(map[string]any)
		if code != 503 || e["code"] != "unavailable" || strings.Contains(fmt.Sprint(e["message"]), addr) {
			t.Errorf("%s %s: %d %v", tc.method, tc.path, code, v)
		}
	}
	// What the kind refuses is still refused first.
	if code, _ := r.do(t, "PUT", "/v1/lists/blocked_countries/items/XX1", analystToken, ""); code != 422 {
		t.Errorf("an invalid value with Redis down: %d", code)
	}
}

// FuzzListItemPath sends arbitrary values, escaped in the path, and bodies through PUT and GET:
// never a 5xx; 201 or 200 for a value the list's kind takes, 422 for one it does not, 404 for an
// unknown list (or a path that is no route), 400 or 413 for a body or a path that is malformed;
// a value added reads back, normalised as the kind normalises it; and no card number (as
// payment.RedactPANs finds one) is ever stored, answered or logged.
func FuzzListItemPath(f *testing.F) {
	for _, seed := range []struct {
		list  uint8
		value string
		body  string
	}{
		{0, "tok_1", ""}, {0, "4111111111111111", ""}, {0, "a/b", `{"note":"n"}`}, {2, "café", ""}, {3, "de", ""},
		{3, "XX1", ""}, {4, "2001:DB8::1", ""}, {4, "999.1.1.1", ""}, {4, "::ffff:1.2.3.4", ""}, {5, "..", ""},
		{5, ".", ""}, {5, "", ""}, {5, "%2F", ""}, {5, "a\b?c#d", ""}, {6, "411111", ""}, {7, "x", ""},
		{5, "d", `{"note":1}`}, {5, "d", `{"x":1}`}, {5, "ÿ", ""}, {1, " ", ""}, {2, " ", ""},
		{2, "4111 1111 1111 1111", ""}, {5, "d", `{"note":"4111-1111-1111-1111"}`}, {5, "d", `{"4111111111111111":1}`},
		{0, "acct 42", ""}, {6, "41111111", ""},
	} {
		f.Add(seed.list, seed.value, seed.body)
	}
	r := newRigFor(f)
	f.Fuzz(func(t *testing.T, list uint8, value, body string) {
		name := "blocked_emails" // not declared
		kind := ""
		if i := int(list) % (len(listSpecs) + 1); i < len(listSpecs) {
			name, kind = listSpecs[i].Name, listSpecs[i].Kind
		}
		path := "/v1/lists/" + name + "/items/" + url.PathEscape(value)
		code, v := r.do(t, "PUT", path, analystToken, body)
		e, _ := v["error"].(map[string]any)
		norm, nerr := lists.Normalize(kind, value)
		if _, found := payment.RedactPANs([]byte(fmt.Sprint(v))); found {
			t.Fatalf("PUT %s %.40q: a card number in the answer %v", path, body, v)
		}
		if _, found := payment.RedactPANs([]byte(r.logs.String())); found {
			t.Fatalf("PUT %s %.40q: a card number in the log", path, body)
		}
		switch code {
		case 201, 200:
			if kind == "" || nerr != nil || v["value"] != norm {
				t.Fatalf("PUT %s: %d %v; normalised %q, %v", path, code, v, norm, nerr)
			}
			if code, got := r.do(t, "GET", path, viewerToken, ""); code != 200 || got["value"] != norm {
				t.Fatalf("GET %s after PUT: %d %v", path, code, got)
			}
		case 422:
			if e["code"] == "invalid_value" && nerr == nil {
				t.Fatalf("PUT %s: 422 %v, but %q normalises to %q", path, v, value, norm)
			}
		case 404:
			if e["code"] == "unknown_list" && kind != "" {
				t.Fatalf("PUT %s: %v", path, v)
			}
		case 400, 413:
		default:
			t.Fatalf("PUT %s %.40q: %d %v", path, body, code, v)
		}
		code, v = r.do(t, "GET", path, viewerToken, "")
		if code >= 500 || !slices.Contains([]int{200, 400, 404, 422}, code) {
			t.Fatalf("GET %s: %d %v", path, code, v)
		}
		if _, found := payment.RedactPANs([]byte(fmt.Sprint(v))); found {
			t.Fatalf("GET %s: a card number in the answer %v", path, v)
		}
	})
}

// Cases: listed riskiest first, read with their reviews, decided once with a label a payment
// (published again, once, after the broker refused it), assigned; viewers cannot decide.
func TestCases(t *testing.T) {
	r := newRig(t)
	status, body := r.do(t, "GET", "/v1/cases?order=riskiest", viewerToken, "")
	cases, _ := body["cases"].([]any)
	if status != 200 || len(cases) != 2 || cases[0].(map[string]any)["case_id"] != "p1" || cases[0].(map[string]any)["payments"] != 2.0 {
		t.Fatalf("cases: %d %v", status, body)
	}
	status, body = r.do(t, "GET", "/v1/cases/p1", viewerToken, "")
	if reviews, _ := body["reviews"].([]any); status != 200 || len(reviews) != 2 || body["card_id"] != "c1" {
		t.Fatalf("case p1: %d %v", status, body)
	}
	if status, _ := r.do(t, "GET", "/v1/cases/nope", viewerToken, ""); status != 404 {
		t.Errorf("unknown case: %d", status)
	}
	if status, _ := r.do(t, "POST", "/v1/cases/p1/verdict", viewerToken, `{"label":"fraud"}`); status != 403 {
		t.Errorf("a viewer's verdict: %d", status)
	}
	status, body = r.do(t, "POST", "/v1/cases/p1/verdict", analystToken, `{"label":"fraud","note":"card testing"}`)
	if labelled, _ := body["labelled"].([]any); status != 200 || len(labelled) != 2 || body["status"] != "fraud" {
		t.Fatalf("verdict: %d %v", status, body)
	}
	for _, id := range []string{"p1", "p2"} {
		if rv, _, _ := r.reviews.Get(context.Background(), id); rv.Status != "fraud" || !rv.Published {
			t.Errorf("review %s: %s, published %v", id, rv.Status, rv.Published)
		}
	}
	status, body = r.do(t, "POST", "/v1/cases/p1/verdict", analystToken, `{"label":"fraud","note":"card testing"}`)
	if labelled, _ := body["labelled"].([]any); status != 200 || len(labelled) != 0 {
		t.Errorf("the same verdict again: %d %v", status, body)
	}
	if status, _ := r.do(t, "POST", "/v1/cases/p1/verdict", analystToken, `{"label":"legitimate"}`); status != 409 {
		t.Errorf("another verdict: %d", status)
	}
	r.labels.mu.Lock()
	r.labels.fail = true
	r.labels.mu.Unlock()
	if status, body := r.do(t, "POST", "/v1/cases/p3/verdict", analystToken, `{"label":"legitimate"}`); status != 503 {
		t.Errorf("broker down: %d %v", status, body)
	}
	r.labels.mu.Lock()
	r.labels.fail = false
	r.labels.mu.Unlock()
	if status, body := r.do(t, "POST", "/v1/cases/p3/verdict", analystToken, `{"label":"legitimate"}`); status != 200 || len(body["labelled"].([]any)) != 1 {
		t.Errorf("the same verdict after the broker came back: %d %v", status, body)
	}
	r.labels.mu.Lock()
	var got []string
	for _, l := range r.labels.labels {
		got = append(got, l.PaymentID+":"+l.Label)
	}
	r.labels.mu.Unlock()
	slices.Sort(got)
	if want := []string{"p1:fraud", "p2:fraud", "p3:legitimate"}; !slices.Equal(got, want) {
		t.Errorf("labels %v, want %v (once a payment)", got, want)
	}
	if status, body := r.do(t, "POST", "/v1/cases/p3/assign", analystToken, ""); status != 200 || body["assignee"] != "ana" {
		t.Errorf("assign to oneself: %d %v", status, body)
	}
	if status, body := r.do(t, "POST", "/v1/cases/p3/assign", analystToken, `{"assignee":"bo"}`); status != 200 || body["assignee"] != "bo" {
		t.Errorf("assign: %d %v", status, body)
	}
	for _, c := range []struct {
		path, token, body string
		want              int
	}{
		{"/v1/cases/nope/assign", analystToken, "", 404},
		{"/v1/cases/p3/assign", analystToken, `{"who":1}`, 400},
		{"/v1/cases/p3/assign", viewerToken, "", 403},
		{"/v1/cases/p3/assign", analystToken, `{"assignee":"4111111111111111"}`, 422},
		{"/v1/cases/p3/verdict", analystToken, `{"label":"fraud","note":"4111 1111 1111 1111"}`, 422},
	} {
		if status, _ := r.do(t, "POST", c.path, c.token, c.body); status != c.want {
			t.Errorf("POST %s %s: %d, want %d", c.path, c.body, status, c.want)
		}
	}
	if status, _ := r.do(t, "GET", "/v1/cases?order=sideways", viewerToken, ""); status != 400 {
		t.Errorf("bad order: %d", status)
	}
}

// The same case verdict sent twice at once (a double click) publishes each label once.
func TestCaseVerdictTwiceAtOnce(t *testing.T) {
	r := newRig(t)
	r.labels.mu.Lock()
	r.labels.delay = 50 * time.Millisecond
	r.labels.mu.Unlock()
	var wg sync.WaitGroup
	codes := make([]int, 2)
	for i := range codes {
		wg.Go(func() {
			codes[i], _ = r.do(t, "POST", "/v1/cases/p1/verdict", analystToken, `{"label":"fraud"}`)
		})
	}
	wg.Wait()
	r.labels.mu.Lock()
	defer r.labels.mu.Unlock()
	var got []string
	for _, l := range r.labels.labels {
		got = append(got, l.PaymentID)
	}
	slices.Sort(got)
	if codes[0] != 200 || codes[1] != 200 || !slices.Equal(got, []string{"p1", "p2"}) {
		t.Errorf("answers %v, labels %v; want 200 twice and p1, p2 once each", codes, got)
	}
}

// fakeScoring answers every payment with a decision naming it; the real one is e2e/score_test.go's.
type fakeScoring struct{ err error }

func (f fakeScoring) ScoreJSON(_ context.Context, raws [][]byte) ([]decision.Decision, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := make([]decision.Decision, len(raws))
	for i := range raws {
		out[i] = decision.Decision{PaymentID: fmt.Sprint("p", i), Payment: []byte(`{}`)}
	}
	return out, nil
}

// Scoring takes a token of the scorer role, which reads nothing else; its errors get their
// statuses.
func TestScoreRoutes(t *testing.T) {
	rdb, prefix := redistest.New(t, "apiscore")
	reviews := review.NewStore(rdb, review.Config{KeyPrefix: prefix, Retention: time.Hour}, time.Now)
	const scorerToken = "scorer-token-0123456789"
	cfg := Config{Tokens: Tokens{{Name: "ana", Role: RoleAnalyst, SHA256: hash(analystToken)}, {Name: "sam", Role: RoleScorer, SHA256: hash(scorerToken)}},
		MaxBodyBytes: 4096, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second, SessionTTL: time.Hour}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := New(cfg, reviews, nil, &recorder{}, nil, Ops{}, slog.New(slog.DiscardHandler))
	r := &rig{srv: httptest.NewServer(s.Router())}
	defer r.srv.Close()
	if code, _ := r.do(t, "POST", "/v1/score", scorerToken, `{}`); code != 503 {
		t.Errorf("without scoring: %d", code)
	}
	s.SetScoring(fakeScoring{})
	if code, v := r.do(t, "POST", "/v1/score", scorerToken, `{"payment_id":"x"}`); code != 200 || v["payment_id"] != "p0" {
		t.Errorf("score: %d %v", code, v)
	}
	if code, v := r.do(t, "POST", "/v1/score:batch", scorerToken, `[{},{}]`); code != 200 || len(v["decisions"].([]any)) != 2 {
		t.Errorf("batch: %d %v", code, v)
	}
	big := "[" + strings.TrimSuffix(strings.Repeat("{},", 501), ",") + "]"
	for _, c := range []struct {
		path, token, body string
		want              int
	}{
		{"/v1/score", analystToken, `{}`, 403},
		{"/v1/reviews", scorerToken, "", 403},
		{"/v1/score:batch", scorerToken, `{"not":"an array"}`, 400},
		{"/v1/score:batch", scorerToken, `[]`, 400},
		{"/v1/score:batch", scorerToken, big, 422},
		{"/v1/score", "", `{}`, 401},
	} {
		method := "POST"
		if c.body == "" {
			method = "GET"
		}
		if code, _ := r.do(t, method, c.path, c.token, c.body); code != c.want {
			t.Errorf("%s %s as %q: %d, want %d", method, c.path, c.token, code, c.want)
		}
	}
	s.SetScoring(fakeScoring{err: score.ErrOverloaded})
	req, _ := http.NewRequest("POST", r.srv.URL+"/v1/score", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+scorerToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("overloaded: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	s.SetScoring(fakeScoring{err: &score.InvalidError{Index: 0, Err: &payment.Error{Code: payment.CodeInvalidJSON, Msg: "x"}}})
	if code, _ := r.do(t, "POST", "/v1/score", scorerToken, `nope`); code != 400 {
		t.Errorf("not JSON: %d", code)
	}
	s.SetScoring(fakeScoring{err: &score.InvalidError{Index: 1, Err: &payment.Error{Code: payment.CodeMissingField, Field: "amount", Msg: "x"}}})
	if code, _ := r.do(t, "POST", "/v1/score:batch", scorerToken, `[{},{}]`); code != 422 {
		t.Errorf("an invalid payment: %d", code)
	}
}
