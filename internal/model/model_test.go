package model

import (
	"bytes"
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/window"
)

// The tests load configs/model.onnx through ONNX Runtime: scripts/onnxruntime.sh fetches the
// library into .cache/onnxruntime (scripts/test.sh does), or set FD_ORT_LIBRARY.
const shippedModel = "../../configs/model.onnx"

func initORT(t testing.TB) {
	t.Helper()
	lib := os.Getenv("FD_ORT_LIBRARY")
	if lib == "" {
		lib = "../../.cache/onnxruntime/libonnxruntime.so.1.24.1"
	}
	if err := Init(lib); err != nil {
		t.Fatal(err)
	}
}

// The rows that training/train.py scored with Python's ONNX Runtime score the same in Go.
func TestParityWithPython(t *testing.T) {
	initORT(t)
	m, err := Load(shippedModel, FeatureNames)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	f, err := os.Open("testdata/parity.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	records, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(records[0][1:], ","); got != strings.Join(FeatureNames, ",") {
		t.Fatalf("parity rows have features %s (run make train again)", got)
	}
	rows := records[1:]
	if len(rows) != 1000 {
		t.Fatalf("%d parity rows, want 1000", len(rows))
	}
	want := make([]float64, len(rows))
	features := make([]float32, 0, len(rows)*len(FeatureNames))
	for i, r := range rows {
		want[i], _ = strconv.ParseFloat(r[0], 64)
		for _, v := range r[1:] {
			x, err := strconv.ParseFloat(v, 32)
			if err != nil {
				t.Fatal(err)
			}
			features = append(features, float32(x))
		}
	}
	// In batches of 1, 7 and the rest: the batch must not change a row's score.
	got := make([]float64, len(rows))
	width := len(FeatureNames)
	for from, size := 0, 1; from < len(rows); from, size = from+size, min(size*7, len(rows)) {
		to := min(from+size, len(rows))
		if err := m.Score(features[from*width:to*width], to-from, got[from:to]); err != nil {
			t.Fatal(err)
		}
	}
	worst, frauds := 0.0, 0
	for i := range rows {
		worst = max(worst, math.Abs(got[i]-want[i]))
		if got[i] > 0.5 {
			frauds++
		}
	}
	if worst > 1e-5 {
		t.Errorf("Go and Python scores differ by up to %g", worst)
	}
	if frauds == 0 || frauds == len(rows) {
		t.Errorf("%d of %d rows over 0.5: the rows do not tell anything apart", frauds, len(rows))
	}
	t.Logf("1000 rows, largest difference %g, %d over 0.5", worst, frauds)
}

func TestMismatchedModelIsRefused(t *testing.T) {
	initORT(t)
	code := append([]string{}, FeatureNames...)
	code[3], code[4] = code[4], code[3]
	if _, err := Load(shippedModel, code); err == nil || !strings.Contains(err.Error(), "another order: position 3 is channel in the model, mcc in the service") {
		t.Errorf("swapped features: %v", err)
	}
	code = append(append([]string{}, FeatureNames[1:]...), "merchant_refunds_7d")
	if _, err := Load(shippedModel, code); err == nil || !strings.Contains(err.Error(), "the model lacks [merchant_refunds_7d] and has [amount_eur] that the service does not compute") {
		t.Errorf("other features: %v", err)
	}
	if _, err := Load("testdata/parity.csv", FeatureNames); err == nil || !strings.Contains(err.Error(), "not a model ONNX Runtime can load") {
		t.Errorf("not a model: %v", err)
	}
}

// A changed model file is swapped in by the watcher; a broken one leaves the current model.
func TestReloadSwapsAChangedModel(t *testing.T) {
	initORT(t)
	data, err := os.ReadFile(shippedModel)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs lockedBuffer
	s, err := NewScorer(Config{Path: path, Library: "unused: initialised", ReloadCheck: 10 * time.Millisecond},
		slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := s.Version()

	// The same model under another version: the version string is rewritten in place, same length.
	other := bytes.ReplaceAll(data, []byte(first), []byte("test-"+first[5:]))
	if bytes.Equal(other, data) {
		t.Fatalf("model_version %q not found in the file", first)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	hup := make(chan os.Signal, 1)
	go func() { done <- s.Watch(ctx, hup) }()
	if err := os.WriteFile(path+".tmp", other, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Rename(path+".tmp", path)
	waitFor(t, func() bool { return s.Version() == "test-"+first[5:] })

	// A broken file: the model stays, and the log says why.
	os.WriteFile(path, []byte("not a model"), 0o644)
	hup <- syscall.SIGHUP
	waitFor(t, func() bool { return strings.Contains(logs.String(), "model not reloaded") })
	if s.Version() != "test-"+first[5:] {
		t.Errorf("version %s after a broken file", s.Version())
	}
	out := make([]float64, 1)
	if _, err := s.Score(make([]float32, len(FeatureNames)), 1, out); err != nil {
		t.Errorf("score after a broken file: %v", err)
	}
	cancel()
	<-done
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkScore reports inference time per payment at batch sizes 1 and 256.
func BenchmarkScore(b *testing.B) {
	initORT(b)
	m, err := Load(shippedModel, FeatureNames)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	rows := parityRows(b)
	for _, n := range []int{1, 256} {
		b.Run("batch="+strconv.Itoa(n), func(b *testing.B) {
			out := make([]float64, n)
			width := len(FeatureNames)
			for b.Loop() {
				if err := m.Score(rows[:n*width], n, out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n)/1000, "µs/payment")
		})
	}
}

func parityRows(b *testing.B) []float32 {
	f, err := os.Open("testdata/parity.csv")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.Read()
	var rows []float32
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return rows
		}
		for _, v := range rec[1:] {
			x, _ := strconv.ParseFloat(v, 32)
			rows = append(rows, float32(x))
		}
	}
}

// lockedBuffer is a log sink the test reads while the watcher writes.
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

func TestFeaturesFillEveryColumn(t *testing.T) {
	for _, st := range []*window.Result{nil, {Count: 3, Aggregates: window.Aggregates{Count30d: 2, Sum30d: 10, MerchantFraud30d: 4}}} {
		row := make([]float32, len(FeatureNames))
		for i := range row {
			row[i] = float32(math.NaN())
		}
		p, err := payment.NewDecoder([]byte("feature-test-key-0123"), 1<<16).Decode([]byte(
			`{"payment_id":"p","card_id":"c","amount":"20.00","currency":"USD","timestamp":"2026-03-01T10:00:00Z","channel":"ecom","merchant_category":"5411"}`))
		if err != nil {
			t.Fatal(err)
		}
		Features(&p, st, row)
		for i, v := range row {
			if math.IsNaN(float64(v)) {
				t.Errorf("state %v: %s not set", st, FeatureNames[i])
			}
		}
		if st != nil && (row[slices.Index(FeatureNames, "merchant_fraud_30d")] != 4 || row[slices.Index(FeatureNames, "window_count")] != 3) {
			t.Errorf("row %v", row)
		}
	}
}

// The merchant's risk is its delayed fraud share (0 without payments, -1 on a Redis Cluster, which
// keeps no merchant counts); the amount against the card's averages is -1 without earlier payments.
func TestMerchantRiskAndCardAverages(t *testing.T) {
	p, err := payment.NewDecoder([]byte("feature-test-key-0123"), 1<<16).Decode([]byte(
		`{"payment_id":"p","card_id":"c","amount":"30.00","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`))
	if err != nil {
		t.Fatal(err)
	}
	col := func(row []float32, name string) float32 { return row[slices.Index(FeatureNames, name)] }
	st := &window.Result{Count: 1, Aggregates: window.Aggregates{Count24h: 2, Sum24h: 20, Count30d: 4, Sum30d: 120,
		MerchantDelayed: window.MerchantDelayed{Count: [3]int64{0, 8, 40}, Fraud: [3]int64{0, 2, 4}}}}
	row := make([]float32, len(FeatureNames))
	Features(&p, st, row)
	for name, want := range map[string]float32{"merchant_risk_1d": 0, "merchant_risk_7d": 0.25, "merchant_risk_30d": 0.1,
		"amount_to_card_avg_24h": 3, "amount_to_card_avg_7d": -1, "amount_to_card_avg_30d": 1} {
		if got := col(row, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
