package detect

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the stream's Prometheus metrics. No label carries a card or a payment.
type Metrics struct {
	consumed     prometheus.Counter
	decisions    *prometheus.CounterVec // outcome: flagged, clear
	flags        *prometheus.CounterVec // reason: every reason code of a flagged payment
	deadLetters  *prometheus.CounterVec // error: the payment.Error code
	stage        *prometheus.HistogramVec
	latency      prometheus.Histogram
	batchSize    prometheus.Histogram
	redisErrors  *prometheus.CounterVec // op: windows, reviews, labels
	redisRetries *prometheus.CounterVec
	degraded     prometheus.Gauge
	lag          *prometheus.GaugeVec // topic, partition
	reviews      prometheus.Counter
	labels       prometheus.Counter
}

// Stages of a batch, as the stage label of fraud_stage_duration_seconds names them.
const (
	StageDecode  = "decode"
	StageRules   = "rules"
	StageWindow  = "window"
	StageModel   = "model"
	StageProduce = "produce"
)

// NewMetrics registers the stream's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		consumed: f.NewCounter(prometheus.CounterOpts{Name: "fraud_payments_consumed_total",
			Help: "Records read from the payments topic whose batch was done (outputs acknowledged, offset marked), valid or not."}),
		decisions: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_decisions_total",
			Help: "Valid payments decided, by outcome (flagged or clear)."}, []string{"outcome"}),
		flags: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_flags_total",
			Help: "Reasons given with flagged payments, by reason code (a payment flagged for two reasons counts in both)."}, []string{"reason"}),
		deadLetters: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_dead_letters_total",
			Help: "Records sent to the dead-letter topic, by error code."}, []string{"error"}),
		stage: f.NewHistogramVec(prometheus.HistogramOpts{Name: "fraud_stage_duration_seconds",
			Help:    "Time a batch spends in each stage: decode, rules, window (Redis), model, produce (sent to acknowledged).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}, []string{"stage"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{Name: "fraud_decision_latency_seconds",
			Help:    "From a payment's append to the payments topic to its batch's outputs being acknowledged.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{Name: "fraud_batch_size",
			Help: "Records per batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		redisErrors: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_redis_errors_total",
			Help: "Redis calls that failed, by operation (windows, reviews, labels)."}, []string{"op"}),
		redisRetries: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_redis_retries_total",
			Help: "Redis calls made again after a failure, by operation."}, []string{"op"}),
		degraded: f.NewGauge(prometheus.GaugeOpts{Name: "fraud_degraded",
			Help: "1 while Redis is unavailable to the stream (fail_open decides without the windows, fail_closed holds), else 0."}),
		lag: f.NewGaugeVec(prometheus.GaugeOpts{Name: "fraud_consumer_lag",
			Help: "Records of a claimed payments partition not yet decided: the high-water mark minus the next offset to decide."},
			[]string{"topic", "partition"}),
		reviews: f.NewCounter(prometheus.CounterOpts{Name: "fraud_reviews_opened_total",
			Help: "Flagged decisions read into the review queue (a review already open counts again)."}),
		labels: f.NewCounter(prometheus.CounterOpts{Name: "fraud_labels_applied_total",
			Help: "Analysts' verdicts read from the labels topic and applied to the merchants' fraud counts."}),
	}
	for _, s := range []string{StageDecode, StageRules, StageWindow, StageModel, StageProduce} {
		m.stage.WithLabelValues(s)
	}
	for _, o := range []string{"flagged", "clear"} {
		m.decisions.WithLabelValues(o)
	}
	for _, op := range []string{"windows", "reviews", "labels"} {
		m.redisErrors.WithLabelValues(op)
		m.redisRetries.WithLabelValues(op)
	}
	return m
}

func (m *Metrics) observeStage(stage string, since time.Time) {
	m.stage.WithLabelValues(stage).Observe(time.Since(since).Seconds())
}

func (m *Metrics) setLag(topic string, partition int32, lag int64) {
	m.lag.WithLabelValues(topic, strconv.Itoa(int(partition))).Set(float64(max(lag, 0)))
}

func (m *Metrics) dropLag(topic string, partition int32) {
	m.lag.DeleteLabelValues(topic, strconv.Itoa(int(partition)))
}

// tally is what one batch adds to the counters, added once its outputs are acknowledged.
type tally struct {
	records     int
	flagged     int
	clear       int
	reasons     map[string]int
	deadLetters map[string]int
	appended    []time.Time // each record's append time, for the decision latency
	sent        time.Time
}

func (m *Metrics) count(t *tally, done time.Time) {
	m.consumed.Add(float64(t.records))
	m.decisions.WithLabelValues("flagged").Add(float64(t.flagged))
	m.decisions.WithLabelValues("clear").Add(float64(t.clear))
	for r, n := range t.reasons {
		m.flags.WithLabelValues(r).Add(float64(n))
	}
	for c, n := range t.deadLetters {
		m.deadLetters.WithLabelValues(c).Add(float64(n))
	}
	for _, at := range t.appended {
		if !at.IsZero() {
			m.latency.Observe(max(done.Sub(at).Seconds(), 0))
		}
	}
	m.stage.WithLabelValues(StageProduce).Observe(done.Sub(t.sent).Seconds())
}
