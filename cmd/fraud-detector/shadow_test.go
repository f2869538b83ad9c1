package main

import (
	"context"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/model/modeltest"
	"github.com/paysentry/fraud-detector/internal/pipeline"
	"github.com/paysentry/fraud-detector/internal/redistest"
)

// ortLibrary is ONNX Runtime for the tests that load a model: FD_ORT_LIBRARY (scripts/test.sh
// sets it), else where scripts/onnxruntime.sh puts it.
func ortLibrary() string {
	if lib := os.Getenv("FD_ORT_LIBRARY"); lib != "" {
		return lib
	}
	return "../../.cache/onnxruntime/libonnxruntime.so.1.24.1"
}

// toyModel writes a model of the service's features (whatever they are now, so that the tests do
// not wait for configs/model.onnx to be trained again when they change): with weight, a logistic
// regression on the amount in EUR that says fraud over 100; without, a constant sigmoid(bias).
func toyModel(t *testing.T, name, version string, bias, weight float32) string {
	m := modeltest.Logistic{Features: model.FeatureNames, Version: version, Bias: bias}
	if weight != 0 {
		if !slices.Contains(model.FeatureNames, "amount_eur") {
			t.Fatalf("no amount_eur among the features %v", model.FeatureNames)
		}
		m.Weights = map[string]float32{"amount_eur": weight}
	}
	return modeltest.Write(t, name, m)
}

// A challenger that cannot be loaded, or whose features are not the service's, stops the start
// with an error naming model.shadow_path, as a bad model.path does.
func TestBadShadowModelStopsTheStart(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.onnx")
	os.WriteFile(garbage, []byte("not a model"), 0o644)
	other := slices.Clone(model.FeatureNames)
	other[0] = "not_a_feature"
	renamed := modeltest.Write(t, "renamed.onnx", modeltest.Logistic{Features: other, Version: "renamed"})
	serving := toyModel(t, "serving.onnx", "toy-serving", 0, 0)
	rdb, _ := redistest.New(t, "shadowtest")
	for _, tt := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.onnx"), "no such file"},
		{garbage, "not a model ONNX Runtime can load"},
		{renamed, "the model lacks [" + model.FeatureNames[0] + "] and has [not_a_feature]"},
	} {
		cfg := defaultConfig()
		cfg.Rules.Path = "../../configs/rules.yaml"
		cfg.Model.Path, cfg.Model.Library, cfg.Model.ShadowPath = serving, ortLibrary(), tt.path
		d, err := newDecider(cfg, rdb, time.Now, pipeline.NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)), false)
		if err == nil {
			d.Close()
			t.Errorf("%s: the service starts with it as its shadow model", tt.path)
			continue
		}
		if !strings.HasPrefix(err.Error(), "model.shadow_path: ") || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want model.shadow_path: … %s", tt.path, err, tt.want)
		}
	}
}

// replay -shadow-model scores with both models and compares them on the labels, side by side:
// here a model on the amount against a challenger that says 0.95 of every payment (which ranks
// nothing: ROC AUC 0.5; finds every fraud: recall 1).
func TestReplayComparesTheShadowModel(t *testing.T) {
	serving := toyModel(t, "serving.onnx", "toy-serving", -5, 0.05)
	challenger := toyModel(t, "challenger.onnx", "toy-always", 3, 0)
	var stdout, stderr strings.Builder
	err := run(context.Background(), []string{"replay", "-in", "../../e2e/testdata/seed/payments.jsonl", "-labels", "../../e2e/testdata/seed/labels.jsonl",
		"-model", serving, "-shadow-model", challenger, "-out", os.DevNull},
		envMap(map[string]string{"FRAUD_CARD_HMAC_KEY": "golden-test-key-0123456789", "FRAUD_RULES_PATH": "../../configs/rules.yaml",
			"FRAUD_MODEL_ONNXRUNTIME_LIBRARY": ortLibrary()}),
		&stdout, &stderr)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	report := stderr.String()
	t.Logf("\n%s", report)
	rows := map[string][]string{}
	for _, l := range strings.Split(report, "\n") {
		if rest, ok := strings.CutPrefix(l, "replay:   "); ok {
			if f := strings.Fields(rest); len(f) >= 2 {
				rows[strings.Join(f[:len(f)-2], " ")] = f[len(f)-2:]
			}
		}
	}
	for name, want := range map[string][]string{
		"model_version":        {"toy-serving", "toy-always"},
		"ROC AUC":              {"", "0.500"},
		"recall (score > 0.5)": {"", "1.000"},
	} {
		got := rows[name]
		if len(got) != 2 || (want[0] != "" && got[0] != want[0]) || got[1] != want[1] {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if got := rows["ROC AUC"]; len(got) == 2 && got[0] == got[1] {
		t.Errorf("the serving model's ROC AUC is the challenger's: %v", got)
	}
}

func TestROCAUC(t *testing.T) {
	for _, tt := range []struct {
		s    []scoredLabel
		want float64
	}{
		{[]scoredLabel{{0.9, true}, {0.8, true}, {0.2, false}, {0.1, false}}, 1},
		{[]scoredLabel{{0.1, true}, {0.9, false}}, 0},
		{[]scoredLabel{{0.5, true}, {0.5, false}}, 0.5},                             // a tie counts half
		{[]scoredLabel{{0.9, true}, {0.3, true}, {0.5, false}, {0.1, false}}, 0.75}, // 3 of 4 pairs
		{[]scoredLabel{{0.9, true}}, 0},
	} {
		if got := rocAUC(tt.s); math.Abs(got-tt.want) > 1e-12 {
			t.Errorf("rocAUC(%v) = %v, want %v", tt.s, got, tt.want)
		}
	}
}
