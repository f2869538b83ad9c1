// Package model scores payments with a fraud model in ONNX format, through ONNX Runtime
// (github.com/yalue/onnxruntime_go): one session per model file, one batched Run per batch of
// payments, on the calling goroutine (one intra-op thread).
//
// A model file says in its metadata which features it takes, in order ("feature_names", comma
// separated), and its version ("model_version"); a model whose features differ from the code's
// (FeatureNames) is refused, naming the difference. Its input is one float tensor [N, features];
// its output "probabilities" a float tensor [N, 2] whose second column is the fraud probability.
package model

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// Metadata keys of a model file.
const (
	MetaFeatures  = "feature_names"
	MetaVersion   = "model_version"
	MetaThreshold = "threshold"
	MetaDataHash  = "training_data_sha256"
	MetaMetrics   = "test_metrics"
)

var (
	initOnce sync.Once
	initErr  error
)

// Init loads the ONNX Runtime shared library at path, once a process; later calls return the
// first one's result.
func Init(library string) error {
	initOnce.Do(func() {
		if _, err := os.Stat(library); err != nil {
			initErr = fmt.Errorf("onnx runtime library: %w (fetch it with scripts/onnxruntime.sh, or set model.onnxruntime_library)", err)
			return
		}
		ort.SetSharedLibraryPath(library)
		if err := ort.InitializeEnvironment(); err != nil {
			initErr = fmt.Errorf("onnx runtime at %s: %w", library, err)
			return
		}
		ort.DisableTelemetry()
	})
	return initErr
}

// Model is one loaded model file. Score may be called from several goroutines at once.
type Model struct {
	session  *ort.DynamicAdvancedSession
	features int
	// Version is the model's "model_version"; Hash the SHA-256 of the file, in hex.
	Version, Hash string
	// Meta holds every metadata entry of the file.
	Meta map[string]string
}

// Load reads the model file at path and checks that it takes the features named, in that order.
// Init must have been called.
func Load(path string, features []string) (*Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	m, err := load(data, features)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", path, err)
	}
	return m, nil
}

func load(data []byte, features []string) (*Model, error) {
	inputs, outputs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("not a model ONNX Runtime can load: %w", err)
	}
	if len(inputs) != 1 || inputs[0].DataType != ort.TensorElementDataTypeFloat || len(inputs[0].Dimensions) != 2 {
		return nil, fmt.Errorf("want one float input [N, %d], got %v", len(features), inputs)
	}
	if !slices.ContainsFunc(outputs, func(o ort.InputOutputInfo) bool {
		return o.Name == "probabilities" && o.DataType == ort.TensorElementDataTypeFloat
	}) {
		return nil, fmt.Errorf("want a float output named probabilities [N, 2], got %v", outputs)
	}
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, err
	}
	defer opts.Destroy()
	for _, set := range []func() error{
		func() error { return opts.SetIntraOpNumThreads(1) },
		func() error { return opts.SetInterOpNumThreads(1) },
		func() error { return opts.SetExecutionMode(ort.ExecutionModeSequential) },
	} {
		if err := set(); err != nil {
			return nil, err
		}
	}
	session, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{inputs[0].Name}, []string{"probabilities"}, opts)
	if err != nil {
		return nil, err
	}
	m := &Model{session: session, features: len(features), Meta: map[string]string{}}
	sum := sha256.Sum256(data)
	m.Hash = hex.EncodeToString(sum[:])
	if err := m.readMeta(session); err != nil {
		session.Destroy()
		return nil, err
	}
	if err := sameFeatures(strings.Split(m.Meta[MetaFeatures], ","), features); err != nil {
		session.Destroy()
		return nil, err
	}
	if d := inputs[0].Dimensions[1]; d != int64(len(features)) && d > 0 {
		session.Destroy()
		return nil, fmt.Errorf("input takes %d features, its metadata names %d", d, len(features))
	}
	m.Version = m.Meta[MetaVersion]
	if m.Version == "" {
		m.Version = "sha256:" + m.Hash[:12]
	}
	return m, nil
}

func (m *Model) readMeta(session *ort.DynamicAdvancedSession) error {
	meta, err := session.GetModelMetadata()
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	defer meta.Destroy()
	keys, err := meta.GetCustomMetadataMapKeys()
	if err != nil {
		return fmt.Errorf("metadata: %w", err)
	}
	for _, k := range keys {
		v, _, err := meta.LookupCustomMetadataMap(k)
		if err != nil {
			return fmt.Errorf("metadata %s: %w", k, err)
		}
		m.Meta[k] = v
	}
	if m.Meta[MetaFeatures] == "" {
		return errors.New("metadata has no feature_names: the service cannot tell what the model takes")
	}
	return nil
}

// sameFeatures says how the model's feature list differs from the code's.
func sameFeatures(model, code []string) error {
	if slices.Equal(model, code) {
		return nil
	}
	var missing, extra []string
	for _, f := range code {
		if !slices.Contains(model, f) {
			missing = append(missing, f)
		}
	}
	for _, f := range model {
		if !slices.Contains(code, f) {
			extra = append(extra, f)
		}
	}
	var diff []string
	if len(missing) > 0 {
		diff = append(diff, fmt.Sprintf("the model lacks %v", missing))
	}
	if len(extra) > 0 {
		diff = append(diff, fmt.Sprintf("has %v that the service does not compute", extra))
	}
	switch {
	case len(diff) > 0:
		return fmt.Errorf("its features differ from the service's: %s (retrain it with this version's replay)", strings.Join(diff, " and "))
	default:
		for i := range code {
			if model[i] != code[i] {
				return fmt.Errorf("its features are in another order: position %d is %s in the model, %s in the service (retrain it with this version's replay)",
					i, model[i], code[i])
			}
		}
		return fmt.Errorf("its features differ from the service's: %d against %d", len(model), len(code))
	}
}

// Score scores n payments whose features are rows, n rows of the model's features each, and
// writes each payment's fraud probability to out.
func (m *Model) Score(rows []float32, n int, out []float64) error {
	if n == 0 {
		return nil
	}
	if len(rows) != n*m.features || len(out) < n {
		return fmt.Errorf("score %d payments: %d values for %d features, room for %d scores", n, len(rows), m.features, len(out))
	}
	in, err := ort.NewTensor(ort.NewShape(int64(n), int64(m.features)), rows)
	if err != nil {
		return fmt.Errorf("score %d payments: %w", n, err)
	}
	defer in.Destroy()
	prob, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(n), 2))
	if err != nil {
		return fmt.Errorf("score %d payments: %w", n, err)
	}
	defer prob.Destroy()
	if err := m.session.Run([]ort.Value{in}, []ort.Value{prob}); err != nil {
		return fmt.Errorf("score %d payments: %w", n, err)
	}
	p := prob.GetData()
	for i := range n {
		out[i] = float64(p[2*i+1])
	}
	return nil
}

// Close frees the session. The model must not be used after.
func (m *Model) Close() error { return m.session.Destroy() }
