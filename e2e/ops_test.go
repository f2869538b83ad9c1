package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// apiAddr is the address the service's HTTP server listens on, from its "api listening" log line.
func (s *service) apiAddr(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var line struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "api listening" {
				return line.Addr
			}
		}
		if !s.running() {
			t.Fatalf("service exited (%v) before its API listened", s.err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the service did not log \"api listening\" within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape reads /metrics and returns every sample of the counters and gauges by its name and
// labels, as name{k="v",...} with the labels sorted.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	out := map[string]float64{}
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			slices.Sort(labels)
			key := name
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// After a known stream, /metrics counts exactly what was sent: consumed, flagged by reason,
// dead-lettered by error. No label carries a card or a payment id.
func TestMetricsCountWhatWasSent(t *testing.T) {
	tp := newTopics(t, 3)
	s := startService(t, tp)
	addr := s.apiAddr(t)
	var lines []string
	now := time.Now().UTC()
	ts := now.Format(time.RFC3339)
	// 12 on one card within the hour: the 11th and 12th are flagged card_velocity_1h; of them,
	// the 12th is over the amount threshold too.
	for i := range 12 {
		amount := "20"
		if i == 11 {
			amount = "250"
		}
		lines = append(lines, payment(fmt.Sprintf("burst-%d", i), "burst-card", amount, now))
	}
	for i := range 40 { // 8 over the threshold
		amount := "30"
		if i%5 == 0 {
			amount = "100.01"
		}
		lines = append(lines, payment(fmt.Sprintf("single-%d", i), fmt.Sprintf("card-%d", i), amount, now))
	}
	for i := range 3 {
		lines = append(lines, fmt.Sprintf("bad-%d\t{not json", i))
	}
	for i := range 2 {
		lines = append(lines, fmt.Sprintf("bad-m-%d\t{\"payment_id\":\"m%d\",\"amount\":\"5\",\"currency\":\"EUR\",\"timestamp\":%q}", i, i, ts))
	}
	kcatProduce(t, tp.payments, lines, false)
	waitCaughtUp(t, s, tp, 60*time.Second)
	// The reviews are opened by a group of their own, which follows the decisions.
	deadline := time.Now().Add(30 * time.Second)
	for scrape(t, addr)["fraud_reviews_opened_total"] < 10 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}

	got := scrape(t, addr)
	for key, want := range map[string]float64{
		`fraud_payments_consumed_total`:                     57,
		`fraud_decisions_total{outcome="flagged"}`:          10,
		`fraud_decisions_total{outcome="clear"}`:            42,
		`fraud_flags_total{reason="amount_over_threshold"}`: 9,
		`fraud_flags_total{reason="card_velocity_1h"}`:      2,
		`fraud_dead_letters_total{error="invalid_json"}`:    3,
		`fraud_dead_letters_total{error="missing_field"}`:   2,
		`fraud_degraded`:                                     0,
		`fraud_decision_latency_seconds_count`:               57,
		`fraud_stage_duration_seconds{stage="decode"}_count`: got[`fraud_batch_size_count`],
		`fraud_reviews_opened_total`:                         10,
		`fraud_build_info{model_version="none",rules_version="` + rulesVersion(t, s) + `",version="` + version(t, got) + `"}`: 1,
	} {
		if got[key] != want {
			t.Errorf("%s = %v, want %v", key, got[key], want)
		}
	}
	if _, ok := got[`fraud_flags_total{reason="model_score"}`]; ok {
		t.Errorf("model_score flags without a model")
	}
	for key := range got {
		if strings.Contains(key, "card-") || strings.Contains(key, "burst-") || strings.Contains(key, "single-") {
			t.Errorf("a label carries a card or payment id: %s", key)
		}
	}
	lagSeen := 0
	for key, v := range got {
		if strings.HasPrefix(key, "fraud_consumer_lag{") {
			lagSeen++
			if v != 0 {
				t.Errorf("%s = %v once caught up, want 0", key, v)
			}
		}
	}
	if lagSeen != 3 {
		t.Errorf("%d consumer lag series, want one for each of the 3 partitions", lagSeen)
	}
	if t.Failed() {
		t.Logf("scraped: %v", got)
	}
	s.stop(t)
}

// rulesVersion is the rules' version as the service logged it.
func rulesVersion(t *testing.T, s *service) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Msg          string
			RulesVersion string `json:"rules_version"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "consuming" {
			return line.RulesVersion
		}
	}
	t.Fatal("no \"consuming\" log line with the rules' version")
	return ""
}

// version is the version label of fraud_build_info, which must not be empty.
func version(t *testing.T, got map[string]float64) string {
	t.Helper()
	for key := range got {
		if m := versionLabel.FindStringSubmatch(key); m != nil {
			if m[1] == "" {
				t.Errorf("fraud_build_info has an empty version: %s", key)
			}
			return m[1]
		}
	}
	t.Error("no fraud_build_info")
	return ""
}

var versionLabel = regexp.MustCompile(`^fraud_build_info\{.*,version="([^"]*)"\}$`)

// readyz returns /readyz's status and body.
func readyz(t *testing.T, addr string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("readyz body: %v", err)
	}
	return resp.StatusCode, body
}

// /readyz is false while Redis is stopped and true again once it is back; /healthz stays true.
func TestReadyzFollowsRedis(t *testing.T) {
	r := startPrivateRedis(t)
	tp := newTopics(t, 1)
	s := startService(t, tp, "FRAUD_REDIS_ADDRS="+r.addr)
	addr := s.apiAddr(t)
	waitReady := func(want bool) map[string]any {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			status, body := readyz(t, addr)
			if (status == 200) == want && body["ready"] == want {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("readyz %d %v; want ready=%v within 30 s", status, body, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitReady(true)

	r.stop(t)
	body := waitReady(false)
	checks := body["checks"].(map[string]any)
	if checks["redis"] == "ok" || checks["kafka"] != "ok" {
		t.Errorf("checks while redis is stopped: %v; want redis failing, kafka ok", checks)
	}
	// A payment while Redis is away: the stream decides it degraded (fail_open).
	kcatProduce(t, tp.payments, []string{payment("p1", "c1", "500", time.Now())}, false)
	waitCaughtUp(t, s, tp, 60*time.Second)
	if got := scrape(t, addr)["fraud_degraded"]; got != 1 {
		t.Errorf("fraud_degraded = %v while redis is stopped, want 1", got)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("healthz while redis is stopped: %v %v; the process is alive", resp, err)
	}

	r.start(t)
	waitReady(true)
	if got := scrape(t, addr)["fraud_degraded"]; got != 0 {
		t.Errorf("fraud_degraded = %v once redis is back, want 0", got)
	}
	s.stop(t)
}
