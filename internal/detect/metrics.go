package detect

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"

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
	reviews      prometheus.Counter
	labels       prometheus.Counter
	stateLosses  prometheus.Counter

	down atomic.Pointer[atomic.Bool] // the handler's state flag, read by fraud_degraded

	mu     sync.Mutex
	held   map[heldKey]*heldPartition // the partitions this instance holds, for fraud_consumer_lag
	newest func(topic string, partition int32) (int64, error)
}

type heldKey struct {
	topic     string
	partition int32
}

// heldPartition is a claimed partition: the next offset not yet done (-1 until known), and the
// claim, whose high-water mark stands in for the newest offset when no newest is set.
type heldPartition struct {
	key   heldKey
	next  atomic.Int64
	claim sarama.ConsumerGroupClaim
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
			Help:    "From a payment's record timestamp (its producer's create time, or the broker's append time on a LogAppendTime topic) to its batch's outputs being acknowledged.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{Name: "fraud_batch_size",
			Help: "Records per batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		redisErrors: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_redis_errors_total",
			Help: "Redis calls that failed, by operation (windows, reviews, labels)."}, []string{"op"}),
		redisRetries: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_redis_retries_total",
			Help: "Redis calls made again after a failure, by operation."}, []string{"op"}),
		reviews: f.NewCounter(prometheus.CounterOpts{Name: "fraud_reviews_opened_total",
			Help: "Reviews opened in the analysts' queue (a redelivered decision whose review is open already does not count)."}),
		labels: f.NewCounter(prometheus.CounterOpts{Name: "fraud_labels_applied_total",
			Help: "Analysts' verdicts read from the labels topic and applied to the merchants' fraud counts."}),
		stateLosses: f.NewCounter(prometheus.CounterOpts{Name: "fraud_state_losses_total",
			Help: "Times this instance found that Redis had lost its data (its epoch key missing or changed): windows, aggregates and reviews started again from nothing."}),
	}
	m.held = map[heldKey]*heldPartition{}
	f.NewGaugeFunc(prometheus.GaugeOpts{Name: "fraud_degraded",
		Help: "1 while Redis is unavailable to the stream (fail_open decides without the windows, fail_closed holds), else 0."},
		func() float64 {
			if d := m.down.Load(); d != nil && d.Load() {
				return 1
			}
			return 0
		})
	reg.MustRegister(lagCollector{m: m, desc: prometheus.NewDesc("fraud_consumer_lag",
		"Records of a payments partition this instance holds that are not done yet: the partition's newest offset "+
			"(asked of the brokers at each scrape) minus the next offset to mark.", []string{"topic", "partition"}, nil)})
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

// SetNewestOffsets sets how fraud_consumer_lag learns a partition's newest offset at each scrape;
// without it, the claim's high-water mark (from its last fetch) stands in.
func (m *Metrics) SetNewestOffsets(newest func(topic string, partition int32) (int64, error)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.newest = newest
}

// hold adds a claimed partition to fraud_consumer_lag until release.
func (m *Metrics) hold(claim sarama.ConsumerGroupClaim) *heldPartition {
	p := &heldPartition{key: heldKey{claim.Topic(), claim.Partition()}, claim: claim}
	p.next.Store(-1)
	if off := claim.InitialOffset(); off >= 0 {
		p.next.Store(off)
	}
	m.mu.Lock()
	m.held[p.key] = p
	m.mu.Unlock()
	return p
}

func (m *Metrics) release(p *heldPartition) {
	m.mu.Lock()
	if m.held[p.key] == p {
		delete(m.held, p.key)
	}
	m.mu.Unlock()
}

// lagCollector is fraud_consumer_lag, computed at each scrape, so that it keeps rising while the
// stream is held (fail_closed, outputs being sent again) rather than showing the last batch's.
type lagCollector struct {
	m    *Metrics
	desc *prometheus.Desc
}

func (c lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	parts := make([]*heldPartition, 0, len(c.m.held))
	for _, p := range c.m.held {
		parts = append(parts, p)
	}
	newest := c.m.newest
	c.m.mu.Unlock()
	for _, p := range parts {
		next := p.next.Load()
		if next < 0 {
			continue // nothing read yet: where the partition starts is not known
		}
		end := p.claim.HighWaterMarkOffset()
		if newest != nil {
			var err error
			if end, err = newest(p.key.topic, p.key.partition); err != nil {
				continue
			}
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(max(end-next, 0)),
			p.key.topic, strconv.Itoa(int(p.key.partition)))
	}
}

// tally is what one batch adds to the counters, added once its outputs are acknowledged.
type tally struct {
	records     int
	flagged     int
	clear       int
	reasons     map[string]int
	deadLetters map[string]int
	appended    []time.Time // each record's timestamp, for the decision latency
	sent        time.Time
	outputs     int
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
	if t.outputs > 0 {
		m.stage.WithLabelValues(StageProduce).Observe(done.Sub(t.sent).Seconds())
	}
}
