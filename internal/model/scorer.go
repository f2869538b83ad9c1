package model

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Config sets the model.
type Config struct {
	// Path of the ONNX model file, relative to the working directory; "none" (or empty): no model,
	// decisions on the rules and windows alone.
	Path string `yaml:"path" env:"PATH"`
	// Library is the ONNX Runtime shared library (scripts/onnxruntime.sh fetches it).
	Library string `yaml:"onnxruntime_library" env:"ONNXRUNTIME_LIBRARY"`
	// ReloadCheck is how often the file is checked for a change (SIGHUP checks at once); 0: never.
	ReloadCheck time.Duration `yaml:"reload_check" env:"RELOAD_CHECK"`
	// ShadowPath is a challenger model file: it scores every payment the model scores, on the
	// same features, and is reported beside it (shadow_score, metrics), never acted on; it must
	// take the same features and is reloaded as the model is. Empty (or "none"): no challenger.
	ShadowPath string `yaml:"shadow_path" env:"SHADOW_PATH"`
}

// Enabled reports whether a model is configured.
func (c Config) Enabled() bool { return c.Path != "" && c.Path != "none" }

// ShadowEnabled reports whether a challenger model is configured.
func (c Config) ShadowEnabled() bool { return c.ShadowPath != "" && c.ShadowPath != "none" }

// Shadow is the configuration of the challenger model's own Scorer: its file at Path, the same
// library and reload check.
func (c Config) Shadow() Config {
	return Config{Path: c.ShadowPath, Library: c.Library, ReloadCheck: c.ReloadCheck}
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.ReloadCheck < 0:
		return fmt.Errorf("model.reload_check: must not be negative, got %s", c.ReloadCheck)
	case c.Enabled() && c.Library == "":
		return fmt.Errorf("model.onnxruntime_library: must name the ONNX Runtime library when model.path is set")
	case c.ShadowEnabled() && !c.Enabled():
		return fmt.Errorf("model.shadow_path: a challenger is scored beside the serving model: set model.path too (it is %q)", c.Path)
	case c.ShadowEnabled() && filepath.Clean(c.ShadowPath) == filepath.Clean(c.Path):
		return fmt.Errorf("model.shadow_path: names the serving model's file (model.path %s); a challenger is another file", c.Path)
	}
	return nil
}

// Scorer scores with the model file at Config.Path, and swaps in a new model when the file
// changes. A batch is scored by one model from start to end: a swap waits for the batches in
// flight and takes effect from the next.
type Scorer struct {
	cfg Config
	log *slog.Logger

	mu    sync.RWMutex
	model *Model
}

// NewScorer loads the model at cfg.Path. A model that cannot be loaded, or whose features differ
// from FeatureNames, is an error.
func NewScorer(cfg Config, log *slog.Logger) (*Scorer, error) {
	if err := Init(cfg.Library); err != nil {
		return nil, err
	}
	m, err := Load(cfg.Path, FeatureNames)
	if err != nil {
		return nil, err
	}
	log.Info("model loaded", "path", cfg.Path, "model_version", m.Version, "features", len(FeatureNames), "trained_threshold", m.Meta[MetaThreshold])
	return &Scorer{cfg: cfg, log: log, model: m}, nil
}

// Score scores n rows of features into out with the current model.
func (s *Scorer) Score(rows []float32, n int, out []float64) (version string, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.model.Version, s.model.Score(rows, n, out)
}

// Version is the current model's version.
func (s *Scorer) Version() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.model.Version
}

// Reload loads the file again if its content changed, and swaps the new model in. A file that
// cannot be loaded leaves the current model in place; the error says why.
func (s *Scorer) Reload() (bool, error) {
	data, err := os.ReadFile(s.cfg.Path)
	if err != nil {
		return false, fmt.Errorf("reload model: %w", err)
	}
	sum := sha256.Sum256(data)
	s.mu.RLock()
	same := s.model.Hash == hex.EncodeToString(sum[:])
	s.mu.RUnlock()
	if same {
		return false, nil
	}
	m, err := load(data, FeatureNames)
	if err != nil {
		return false, fmt.Errorf("reload model %s: %w; the current model stays", s.cfg.Path, err)
	}
	s.mu.Lock()
	old := s.model
	s.model = m
	s.mu.Unlock()
	old.Close()
	s.log.Info("model reloaded", "path", s.cfg.Path, "model_version", m.Version, "was", old.Version)
	return true, nil
}

// Watch reloads the model when its file changes (checked every Config.ReloadCheck) or when
// hup receives, until ctx ends.
func (s *Scorer) Watch(ctx context.Context, hup <-chan os.Signal) error {
	var tick <-chan time.Time
	if s.cfg.ReloadCheck > 0 {
		t := time.NewTicker(s.cfg.ReloadCheck)
		defer t.Stop()
		tick = t.C
	}
	var lastErr string
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		case <-hup:
		}
		if _, err := s.Reload(); err != nil && err.Error() != lastErr {
			s.log.Error("model not reloaded", "err", err)
			lastErr = err.Error()
		} else if err == nil {
			lastErr = ""
		}
	}
}

// Close frees the model.
func (s *Scorer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.model.Close()
}
