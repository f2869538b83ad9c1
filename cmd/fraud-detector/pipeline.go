package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/lists"
	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/pipeline"
	"github.com/paysentry/fraud-detector/internal/rules"
	"github.com/paysentry/fraud-detector/internal/window"
)

// decider is the decision pipeline with the parts it is built from. newDecider is the one place
// that builds it from the configuration: serve (and so the demo) and replay use it.
type decider struct {
	pipe    *pipeline.Pipeline
	windows *window.Store
	scorer  *model.Scorer // nil: no model
	shadow  *model.Scorer // the challenger (model.shadow_path); nil: none
	lists   *lists.Store
}

// newDecider builds the pipeline of cfg over rdb: the card state (unless stages.windows is off),
// the model (unless model.path is none) and its challenger (if model.shadow_path is set), the
// rules file and the lists. now is the windows' clock.
// With features, every payment's model features are in its decision (the replay writes them).
func newDecider(cfg Config, rdb redis.UniversalClient, now func() time.Time, m *pipeline.Metrics, log *slog.Logger, features bool) (*decider, error) {
	set, err := rules.Load(cfg.Rules.Path)
	if err != nil {
		return nil, err
	}
	d := &decider{windows: window.NewStore(rdb, cfg.Window, now),
		lists: lists.NewStore(rdb, cfg.Lists.KeyPrefix, time.Now)}
	d.lists.SetSpecs(set.Lists())
	var win pipeline.Windows // nil: the stage is off
	if cfg.Stages.Windows {
		win = d.windows
	}
	var scorer pipeline.Scorer
	if cfg.Model.Enabled() {
		if d.scorer, err = model.NewScorer(cfg.Model, log); err != nil {
			return nil, err
		}
		scorer = d.scorer
	}
	var shadow pipeline.Scorer
	if cfg.Model.Enabled() && cfg.Model.ShadowEnabled() {
		if d.shadow, err = model.NewScorer(cfg.Model.Shadow(), log.With("role", "shadow")); err != nil {
			d.Close()
			return nil, fmt.Errorf("model.shadow_path: %w", err)
		}
		shadow = d.shadow
	}
	d.pipe = pipeline.New(pipeline.Config{StateRetryBudget: cfg.Stream.StateRetryBudget,
		StateFailurePolicy: cfg.Stream.StateFailurePolicy, Features: features, Shadow: shadow}, win, scorer, set, d.lists, m, log)
	log.Info("rules loaded", "path", cfg.Rules.Path, "rules_version", set.Version(), "rules", len(set.Rules()), "lists", len(set.Lists()))
	return d, nil
}

func (d *decider) modelVersion() string {
	if d.scorer == nil {
		return "none"
	}
	return d.scorer.Version()
}

// shadowVersion is the challenger's version; "" without one.
func (d *decider) shadowVersion() string {
	if d.shadow == nil {
		return ""
	}
	return d.shadow.Version()
}

// Close frees the models.
func (d *decider) Close() {
	if d.scorer != nil {
		d.scorer.Close()
	}
	if d.shadow != nil {
		d.shadow.Close()
	}
}
