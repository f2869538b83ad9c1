package detect

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/rules"
	"github.com/paysentry/fraud-detector/internal/window"
)

// lateWindows says every payment whose id starts with "late" came too late to count.
type lateWindows struct{}

func (lateWindows) Observe(_ context.Context, events []window.Event, out []window.Result) (bool, error) {
	for i, e := range events {
		out[i] = window.Result{Window: e.Time.Truncate(time.Hour), Count: 1, Late: strings.HasPrefix(e.PaymentID, "late")}
		if out[i].Late {
			out[i].Count = 0
		}
	}
	return true, nil
}

func (lateWindows) Losses() (int64, time.Time) { return 0, time.Time{} }

// Reasons gives late_event to a late payment, as window.Store does.
func (lateWindows) Reasons(r window.Result) []decision.Reason {
	if r.Late {
		return []decision.Reason{{Code: decision.CodeLate, Detail: "too late to count"}}
	}
	return nil
}

// recordingScorer scores every row 0.9 and keeps how many rows each call had.
type recordingScorer struct{ calls []int }

func (s *recordingScorer) Score(rows []float32, n int, out []float64) (string, error) {
	s.calls = append(s.calls, n)
	if len(rows) != n*len(model.FeatureNames) {
		panic("rows do not match n")
	}
	for i := range n {
		out[i] = 0.9
	}
	return "v-test", nil
}

func (s *recordingScorer) Threshold() float64 { return 0.5 }

// One model call a batch, for the payments with their card's state only; every valid payment
// gets its features (the replay writes them), the others a reason saying they were not scored, in
// the one late_event reason the windows gave them.
func TestModelScoresPaymentsWithTheirState(t *testing.T) {
	sc := &recordingScorer{}
	h := NewHandler(Config{StateRetryBudget: time.Second}, Topics{}, payment.NewDecoder([]byte("test-key-0123456789"), 64<<10),
		rules.NewAmount(rules.Config{AmountThreshold: decimal.NewFromInt(100)}), lateWindows{}, sc, nil, NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
	out, err := h.Decide(context.Background(), [][]byte{
		[]byte(`{"payment_id":"ok","card_id":"c1","amount":"10","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`),
		[]byte(`{"payment_id":"late-1","card_id":"c2","amount":"10","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`),
		[]byte(`not a payment`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sc.calls, []int{1}) {
		t.Errorf("model calls %v, want one of 1 row", sc.calls)
	}
	codes := func(o Outcome) (c []string) {
		for _, r := range o.Reasons {
			c = append(c, r.Code)
		}
		return c
	}
	if o := out[0]; o.Score == nil || *o.Score != 0.9 || !o.Flagged || !slices.Equal(codes(o), []string{decision.CodeModel}) {
		t.Errorf("scored payment: %+v", o)
	}
	if o := out[1]; o.Score != nil || o.Flagged || !slices.Equal(codes(o), []string{decision.CodeLate}) ||
		!strings.Contains(o.Reasons[0].Detail, "not scored by the model") || len(o.Features) != len(model.FeatureNames) {
		t.Errorf("late payment: %+v", o)
	}
	if out[2].Err == nil || out[2].Features != nil {
		t.Errorf("invalid record: %+v", out[2])
	}
}
