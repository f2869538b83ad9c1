package modeltest_test

import (
	"math"
	"os"
	"testing"

	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/model/modeltest"
)

// The service loads what Write writes, with its features and version, and it scores
// sigmoid(bias + Σ weight·x).
func TestServiceLoadsAndScoresIt(t *testing.T) {
	lib := os.Getenv("FD_ORT_LIBRARY")
	if lib == "" {
		lib = "../../../.cache/onnxruntime/libonnxruntime.so.1.24.1"
	}
	if err := model.Init(lib); err != nil {
		t.Fatal(err)
	}
	features := []string{"a", "b", "c"}
	path := modeltest.Write(t, "m.onnx", modeltest.Logistic{Features: features, Version: "toy-1", Bias: -1, Weights: map[string]float32{"b": 0.5}})
	m, err := model.Load(path, features)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Version != "toy-1" || m.Meta[model.MetaFeatures] != "a,b,c" {
		t.Errorf("version %q, metadata %v", m.Version, m.Meta)
	}
	rows := []float32{9, 0, 9, 9, 2, 9, 9, 10, 9}
	out := make([]float64, 3)
	if err := m.Score(rows, 3, out); err != nil {
		t.Fatal(err)
	}
	for i, x := range []float64{0, 2, 10} {
		if want := 1 / (1 + math.Exp(-(-1 + 0.5*x))); math.Abs(out[i]-want) > 1e-6 {
			t.Errorf("row %d: %v, want %v", i, out[i], want)
		}
	}
	if _, err := model.Load(path, []string{"a", "c", "b"}); err == nil {
		t.Error("loaded with the features in another order")
	}
	one := modeltest.Write(t, "one.onnx", modeltest.Logistic{Features: features, Version: "one", Bias: 100})
	m1, err := model.Load(one, features)
	if err != nil {
		t.Fatal(err)
	}
	defer m1.Close()
	if err := m1.Score(rows[:3], 1, out); err != nil || out[0] != 1 {
		t.Errorf("bias 100 scores %v (%v), want 1", out[0], err)
	}
}
