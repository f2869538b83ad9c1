package model

import (
	"strings"
	"testing"
	"time"
)

// model.shadow_path: off when empty or none; it needs a serving model and another file; its own
// Scorer takes the library and the reload check of the model's.
func TestShadowConfig(t *testing.T) {
	base := Config{Path: "configs/model.onnx", Library: "lib.so", ReloadCheck: 5 * time.Second}
	for _, tt := range []struct {
		path, shadow string
		on           bool
		err          string
	}{
		{"configs/model.onnx", "", false, ""},
		{"configs/model.onnx", "none", false, ""},
		{"configs/model.onnx", "challenger.onnx", true, ""},
		{"none", "challenger.onnx", true, "model.shadow_path: a challenger is scored beside the serving model"},
		{"configs/model.onnx", "configs/../configs/model.onnx", true, "model.shadow_path: names the serving model's file"},
	} {
		c := base
		c.Path, c.ShadowPath = tt.path, tt.shadow
		if c.ShadowEnabled() != tt.on {
			t.Errorf("%q: ShadowEnabled %v", tt.shadow, c.ShadowEnabled())
		}
		err := c.Validate()
		if (err == nil) != (tt.err == "") || (err != nil && !strings.HasPrefix(err.Error(), tt.err)) {
			t.Errorf("model %q, shadow %q: %v, want %q", tt.path, tt.shadow, err, tt.err)
		}
	}
	c := base
	c.ShadowPath = "challenger.onnx"
	if s := c.Shadow(); s != (Config{Path: "challenger.onnx", Library: "lib.so", ReloadCheck: 5 * time.Second}) {
		t.Errorf("the challenger's configuration: %+v", s)
	}
}
