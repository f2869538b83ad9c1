package pipeline

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paysentry/fraud-detector/internal/decision"
)

// versionedScorer scores every row with score under its version, or fails with err; it keeps the
// rows of each call.
type versionedScorer struct {
	score   float64
	version string
	err     error
	rows    [][]float32
}

func (s *versionedScorer) Score(rows []float32, n int, out []float64) (string, error) {
	s.rows = append(s.rows, slices.Clone(rows))
	if s.err != nil {
		return "", s.err
	}
	for i := range n {
		out[i] = s.score
	}
	return s.version, nil
}

// lockedBuffer is a log destination for one test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// shadowBatch is a batch with a clear payment, a payment over the amount threshold, and one too
// late for its card's state (not scored by either model).
func shadowBatch(t *testing.T) []string {
	t.Helper()
	return []string{pay("clear", "c1", "10"), pay("big", "c2", "100.01"), pay("late-1", "c3", "10")}
}

// The challenger scores the rows the model scored, in one call a batch, into ShadowScore; a
// shadow score of 1.0 beside a serving score of 0 flags nothing: the rules see only the model's.
func TestShadowScoresButNeverDecides(t *testing.T) {
	serving := &versionedScorer{score: 0, version: "serving-1"}
	shadow := &versionedScorer{score: 1, version: "challenger-2"}
	p := New(Config{StateRetryBudget: time.Second, Shadow: shadow}, lateWindows{}, serving, defaultRules(t), nil, NewMetrics(prometheus.NewRegistry()), discard)
	alone := New(Config{StateRetryBudget: time.Second}, lateWindows{}, &versionedScorer{score: 0, version: "serving-1"}, defaultRules(t), nil, NewMetrics(prometheus.NewRegistry()), discard)
	out := decide(t, p, payments(t, shadowBatch(t)...))
	want := decide(t, alone, payments(t, shadowBatch(t)...))

	if len(shadow.rows) != 1 || !reflect.DeepEqual(shadow.rows, serving.rows) {
		t.Errorf("the challenger scored %d batches, rows equal to the model's: %v", len(shadow.rows), reflect.DeepEqual(shadow.rows, serving.rows))
	}
	for i, o := range out[:2] {
		if o.ShadowScore == nil || *o.ShadowScore != 1 || o.ShadowModelVersion != "challenger-2" {
			t.Errorf("%s: shadow score %v, version %q; want 1 by challenger-2", o.Input.Payment.ID, o.ShadowScore, o.ShadowModelVersion)
		}
		if *o.Score != 0 || o.ModelVersion != "serving-1" || o.Input.Score != 0 || o.Input.ModelVersion != "serving-1" {
			t.Errorf("%s: the model's score %v (%s), the rules saw %v (%s)", o.Input.Payment.ID, *o.Score, o.ModelVersion, o.Input.Score, o.Input.ModelVersion)
		}
		if !reflect.DeepEqual(o.Verdict, want[i].Verdict) || !reflect.DeepEqual(o.Hits, want[i].Hits) {
			t.Errorf("%s: decided %+v with the challenger, %+v without", o.Input.Payment.ID, o.Verdict, want[i].Verdict)
		}
	}
	if out[0].Flagged || out[0].Action != "" || len(out[0].Reasons) != 0 {
		t.Errorf("clear payment flagged on the shadow score: %+v", out[0].Verdict)
	}
	if v := out[1].Verdict; !v.Flagged || v.Rule != "amount_over_threshold" || slices.Contains(codes(v.Reasons), decision.CodeModel) {
		t.Errorf("payment over the threshold: %+v", v)
	}
	if o := out[2]; o.ShadowScore != nil || o.ShadowModelVersion != "" || o.Score != nil {
		t.Errorf("late payment scored: %v, %v", o.Score, o.ShadowScore)
	}
}

// A challenger that fails leaves the decisions as they would be without it, without shadow
// scores and without degraded_state; the failures are counted per batch and logged once a minute.
func TestShadowFailureLeavesTheDecisionIntact(t *testing.T) {
	logs := &lockedBuffer{}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	shadow := &versionedScorer{err: errors.New("onnx: out of memory")}
	p := New(Config{StateRetryBudget: time.Second, Shadow: shadow}, lateWindows{}, &versionedScorer{score: 0.9, version: "serving-1"},
		defaultRules(t), nil, m, slog.New(slog.NewJSONHandler(logs, nil)))
	alone := New(Config{StateRetryBudget: time.Second}, lateWindows{}, &versionedScorer{score: 0.9, version: "serving-1"},
		defaultRules(t), nil, NewMetrics(prometheus.NewRegistry()), discard)
	for range 3 {
		out := decide(t, p, payments(t, shadowBatch(t)...))
		want := decide(t, alone, payments(t, shadowBatch(t)...))
		for i := range out {
			if !reflect.DeepEqual(out[i], want[i]) {
				t.Errorf("%s: decided %+v with a failing challenger, %+v without", out[i].Input.Payment.ID, out[i], want[i])
			}
		}
	}
	if got := testutil.ToFloat64(m.shadowFailures); got != 3 {
		t.Errorf("fraud_shadow_model_failures_total = %v, want 3 (a batch each)", got)
	}
	if n := strings.Count(logs.String(), "shadow model failed"); n != 1 {
		t.Errorf("%d log lines about the challenger in three batches, want 1:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "out of memory") {
		t.Errorf("the log does not say why:\n%s", logs.String())
	}
}

// A model that fails is no reason to stop the challenger: the batch is decided without the
// model, as always, and the challenger's scores are still reported.
func TestShadowScoresWhenTheModelFails(t *testing.T) {
	shadow := &versionedScorer{score: 0.3, version: "challenger-2"}
	p := New(Config{StateRetryBudget: time.Second, Shadow: shadow}, lateWindows{}, &versionedScorer{err: errors.New("broken")},
		defaultRules(t), nil, NewMetrics(prometheus.NewRegistry()), discard)
	o := decide(t, p, payments(t, pay("clear", "c1", "10")))[0]
	if o.Score != nil || !slices.Equal(codes(o.Reasons), []string{decision.CodeDegraded}) || o.Flagged {
		t.Errorf("decision with the model failing: %+v", o)
	}
	if o.ShadowScore == nil || *o.ShadowScore != 0.3 {
		t.Errorf("shadow score %v, want 0.3", o.ShadowScore)
	}
}
