package pipeline

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Stages of a batch, as the stage label of fraud_stage_duration_seconds names them. The pipeline
// times window, model and rules; the stream times decode and produce.
const (
	StageDecode  = "decode"
	StageWindow  = "window"
	StageModel   = "model"
	StageRules   = "rules"
	StageProduce = "produce"
	// StageShadow is the challenger model's call (model.shadow_path), when one is configured.
	StageShadow = "shadow_model"
)

// Metrics are the pipeline's Prometheus metrics. The stream shares the stage histogram and the
// Redis counters with it, for the stages and the Redis calls of its own.
type Metrics struct {
	Stage        *prometheus.HistogramVec // stage
	RedisErrors  *prometheus.CounterVec   // op: windows, reviews, labels
	RedisRetries *prometheus.CounterVec   // op
	stateLosses  prometheus.Counter
	reloads      *prometheus.CounterVec // result: ok, error
	// shadowFailures: batches the challenger model failed to score.
	shadowFailures prometheus.Counter

	down  atomic.Pointer[atomic.Bool] // the pipeline's state flag, read by fraud_degraded
	lists atomic.Pointer[Lists]       // the pipeline's lists, read by fraud_lists_age_seconds
}

// NewMetrics registers the pipeline's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		Stage: f.NewHistogramVec(prometheus.HistogramOpts{Name: "fraud_stage_duration_seconds",
			Help:    "Time a batch spends in each stage: decode, window (Redis), model, rules, produce (sent to acknowledged).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}, []string{"stage"}),
		RedisErrors: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_redis_errors_total",
			Help: "Redis calls that failed, by operation (windows, lists, reviews, labels)."}, []string{"op"}),
		RedisRetries: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_redis_retries_total",
			Help: "Redis calls made again after a failure, by operation."}, []string{"op"}),
		stateLosses: f.NewCounter(prometheus.CounterOpts{Name: "fraud_state_losses_total",
			Help: "Times this instance found that Redis had lost its data (its epoch key missing or changed): windows, aggregates and reviews started again from nothing."}),
		reloads: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_rules_reloads_total",
			Help: "Rules file reloads, by result: ok (a new rule set in force) or error (refused; the running set stays)."}, []string{"result"}),
		shadowFailures: f.NewCounter(prometheus.CounterOpts{Name: "fraud_shadow_model_failures_total",
			Help: "Batches the shadow (challenger) model failed to score: decided as always, without shadow scores."}),
	}
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "fraud_degraded",
		Help: "1 while Redis is unavailable to the stream (fail_open decides without the windows, fail_closed holds), else 0."},
		func() float64 {
			if d := m.down.Load(); d != nil && d.Load() {
				return 1
			}
			return 0
		})
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "fraud_lists_age_seconds",
		Help: "Seconds since this instance last read the lists from Redis (it asks every lists.refresh); -1 until it has read them once."},
		func() float64 {
			l := m.lists.Load()
			if l == nil {
				return -1
			}
			at := (*l).Refreshed()
			if at.IsZero() {
				return -1
			}
			return time.Since(at).Seconds()
		})
	for _, s := range []string{StageDecode, StageWindow, StageModel, StageRules, StageProduce} {
		m.Stage.WithLabelValues(s)
	}
	for _, op := range []string{"windows", "lists", "reviews", "labels"} {
		m.RedisErrors.WithLabelValues(op)
		m.RedisRetries.WithLabelValues(op)
	}
	for _, r := range []string{"ok", "error"} {
		m.reloads.WithLabelValues(r)
	}
	return m
}

// StateLosses is fraud_state_losses_total.
func (m *Metrics) StateLosses() prometheus.Counter { return m.stateLosses }

func (m *Metrics) observe(stage string, since time.Time) {
	m.Stage.WithLabelValues(stage).Observe(time.Since(since).Seconds())
}
