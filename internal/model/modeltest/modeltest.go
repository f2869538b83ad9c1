// Package modeltest writes small ONNX models in the form the service loads (one float input
// [N, features], a float output "probabilities" [N, 2], the features and the version in the
// metadata), without training: for tests that need a model whose features are the code's
// whatever they are, and whose scores they know, such as a challenger beside the shipped model.
//
// A model is a logistic regression: p = sigmoid(Bias + Σ Weights[f]·x[f]); with no weights it
// scores every payment sigmoid(Bias) (Bias 100 scores 1.0, -100 scores 0.0). The file is written
// with the protobuf wire format by hand (onnx.proto3: ModelProto, GraphProto, NodeProto,
// TensorProto, ValueInfoProto), to need nothing beyond the standard library.
package modeltest

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Logistic is a model over named features.
type Logistic struct {
	Features []string           // the input's columns, in order (model.FeatureNames)
	Version  string             // its model_version
	Bias     float32            // the intercept, in log-odds
	Weights  map[string]float32 // per feature; a feature not named weighs 0
}

// Write writes m as an ONNX file at path, in a directory of the test's own if path is a bare
// name, and returns the path.
func Write(t testing.TB, path string, m Logistic) string {
	t.Helper()
	if filepath.Base(path) == path {
		path = filepath.Join(t.TempDir(), path)
	}
	b, err := m.ONNX()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ONNX is m as an ONNX file (IR version 7, opset 13).
func (m Logistic) ONNX() ([]byte, error) {
	if len(m.Features) == 0 {
		return nil, fmt.Errorf("modeltest: a model needs features")
	}
	w := make([]float32, len(m.Features))
	for name, v := range m.Weights {
		i := slices.Index(m.Features, name)
		if i < 0 {
			return nil, fmt.Errorf("modeltest: weight for %s, which is not a feature", name)
		}
		w[i] = v
	}
	n := int64(len(m.Features))
	var g []byte
	for _, node := range [][]string{ // inputs..., output, op
		{"input", "weights", "z", "MatMul"},
		{"z", "bias", "logit", "Add"},
		{"logit", "p", "Sigmoid"},
		{"one", "p", "q", "Sub"},
	} {
		g = bytesField(g, 1, nodeProto(node[:len(node)-2], node[len(node)-2], node[len(node)-1], nil))
	}
	g = bytesField(g, 1, nodeProto([]string{"q", "p"}, "probabilities", "Concat", intAttribute("axis", 1)))
	g = bytesField(g, 2, []byte("modeltest"))
	g = bytesField(g, 5, floatTensor("weights", []int64{n, 1}, w))
	g = bytesField(g, 5, floatTensor("bias", []int64{1}, []float32{m.Bias}))
	g = bytesField(g, 5, floatTensor("one", []int64{1}, []float32{1}))
	g = bytesField(g, 11, valueInfo("input", n))
	g = bytesField(g, 12, valueInfo("probabilities", 2))

	var b []byte
	b = varintField(b, 1, 7) // ir_version
	b = bytesField(b, 2, []byte("modeltest"))
	b = bytesField(b, 7, g)
	b = bytesField(b, 8, varintField(nil, 2, 13)) // opset_import: the default domain, 13
	for _, kv := range [][2]string{{"feature_names", strings.Join(m.Features, ",")}, {"model_version", m.Version}} {
		b = bytesField(b, 14, bytesField(bytesField(nil, 1, []byte(kv[0])), 2, []byte(kv[1])))
	}
	return b, nil
}

// nodeProto is a NodeProto: inputs (1), output (2), op_type (4), attribute (5).
func nodeProto(inputs []string, output, op string, attr []byte) []byte {
	var b []byte
	for _, in := range inputs {
		b = bytesField(b, 1, []byte(in))
	}
	b = bytesField(b, 2, []byte(output))
	b = bytesField(b, 4, []byte(op))
	if attr != nil {
		b = bytesField(b, 5, attr)
	}
	return b
}

// intAttribute is an AttributeProto of type INT (2): name (1), i (3), type (20).
func intAttribute(name string, v int64) []byte {
	b := bytesField(nil, 1, []byte(name))
	b = varintField(b, 3, uint64(v))
	return varintField(b, 20, 2)
}

// floatTensor is a TensorProto of FLOAT (1): dims (1), data_type (2), name (8), raw_data (9).
func floatTensor(name string, dims []int64, v []float32) []byte {
	var b []byte
	for _, d := range dims {
		b = varintField(b, 1, uint64(d))
	}
	b = varintField(b, 2, 1)
	b = bytesField(b, 8, []byte(name))
	raw := make([]byte, 0, 4*len(v))
	for _, x := range v {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
	}
	return bytesField(b, 9, raw)
}

// valueInfo is a ValueInfoProto of a float tensor [N, width]: name (1), type (2) → tensor_type
// (1) → elem_type (1) FLOAT, shape (2) → dim (1): dim_param (2) "N", dim_value (1) width.
func valueInfo(name string, width int64) []byte {
	var shape []byte
	shape = bytesField(shape, 1, bytesField(nil, 2, []byte("N")))
	shape = bytesField(shape, 1, varintField(nil, 1, uint64(width)))
	tensor := bytesField(varintField(nil, 1, 1), 2, shape)
	return bytesField(bytesField(nil, 1, []byte(name)), 2, bytesField(nil, 1, tensor))
}

func varintField(b []byte, field int, v uint64) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3)
	return binary.AppendUvarint(b, v)
}

func bytesField(b []byte, field int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
