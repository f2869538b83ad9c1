package pipeline

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/rules"
	"github.com/paysentry/fraud-detector/internal/window"
)

const benchBatchSize = 500

// benchBatch is a batch of 500 payments with their card state: amounts 5.00 to 124.99, a tenth
// of the cards at their 11th payment of the hour.
func benchBatch() ([]*payment.Payment, []window.Result) {
	ps := make([]*payment.Payment, benchBatchSize)
	states := make([]window.Result, benchBatchSize)
	at := time.Date(2026, 11, 30, 14, 0, 0, 0, time.UTC)
	for i := range ps {
		ps[i] = &payment.Payment{ID: fmt.Sprintf("p-%06d", i), CardID: fmt.Sprintf("card-%04d", i%300),
			Amount: decimal.New(int64(500+i*37%12000), -2), Currency: "EUR", Country: "FR", MerchantID: "m-77",
			MerchantCategory: "5411", Channel: "ecom", DeviceID: "d-9", IP: "192.0.2.10", Time: at.Add(time.Duration(i) * time.Second)}
		states[i] = window.Result{Window: at, Count: int64(1 + i*7%11), Aggregates: window.Aggregates{Count1h: 2, Count24h: 5,
			Count7d: 12, Count30d: 30, Sum1h: 80, Sum24h: 250, Sum7d: 900, Sum30d: 2500, SincePrevious: 600}}
	}
	return ps, states
}

// benchDecide measures the rules stage and the policy: a batch of 500 payments, with their card
// state and score given, as the stream's batches reach the rules. About 27 % of them match a
// default rule (amounts 5.00 to 124.99, a tenth of the cards at their 11th payment of the hour),
// as about 28 % of paygen's payments are flagged; a match costs its reason's detail. It reports
// the cost a payment.
func benchDecide(b *testing.B, set *rules.Set) {
	const n = benchBatchSize
	p := New(Config{}, nil, nil, set, nil, NewMetrics(prometheus.NewRegistry()), discard)
	out := make([]Decision, n)
	ps, states := benchBatch()
	b.ReportAllocs()
	for b.Loop() {
		// The card state and the score as the stages before would have left them.
		for i := range out {
			out[i] = Decision{Input: rules.Input{Payment: ps[i], State: &states[i], Score: 0.1, Scored: true}}
		}
		p.rulesStage(set, out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/payment")
}

// BenchmarkDecideDefault: the default rules of configs/rules.yaml (target: at most 1 µs a payment).
func BenchmarkDecideDefault(b *testing.B) { benchDecide(b, defaultRules(b)) }

// BenchmarkDecide50: 50 rules of a realistic mix (target: at most 5 µs a payment).
func BenchmarkDecide50(b *testing.B) {
	set, err := rules.Load("testdata/rules50.yaml")
	if err != nil {
		b.Fatal(err)
	}
	benchDecide(b, set)
}

// BenchmarkScoreShadow measures the model stage (features, then one ONNX Runtime call a batch) of
// a batch of 500 with the shipped model, alone and with a challenger beside it (the same file:
// a challenger of the same size), in one run: the difference is what a shadow model costs.
func BenchmarkScoreShadow(b *testing.B) {
	lib := os.Getenv("FD_ORT_LIBRARY")
	if lib == "" {
		lib = "../../.cache/onnxruntime/libonnxruntime.so.1.24.1"
	}
	if err := model.Init(lib); err != nil {
		b.Fatal(err)
	}
	newScorer := func() *model.Scorer {
		s, err := model.NewScorer(model.Config{Path: "../../configs/model.onnx", Library: lib}, discard)
		if err != nil {
			b.Fatalf("%v (configs/model.onnx must take the features of the code: make train)", err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	serving, challenger := newScorer(), newScorer()
	ps, states := benchBatch()
	for _, bc := range []struct {
		name   string
		shadow Scorer
	}{{"serving", nil}, {"serving+shadow", challenger}} {
		b.Run(bc.name, func(b *testing.B) {
			p := New(Config{Shadow: bc.shadow}, lateWindows{}, serving, defaultRules(b), nil, NewMetrics(prometheus.NewRegistry()), discard)
			out := make([]Decision, benchBatchSize)
			b.ReportAllocs()
			for b.Loop() {
				for i := range out {
					out[i] = Decision{Input: rules.Input{Payment: ps[i], State: &states[i]}}
				}
				p.score(out)
			}
			if out[0].Score == nil || (bc.shadow != nil) != (out[0].ShadowScore != nil) {
				b.Fatalf("scores %v, shadow %v", out[0].Score, out[0].ShadowScore)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatchSize), "ns/payment")
		})
	}
}
