package detect

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/paysentry/fraud-detector/internal/pipeline"
	"github.com/paysentry/fraud-detector/internal/rules"
)

// Metrics are the stream's Prometheus metrics. No label carries a card or a payment.
type Metrics struct {
	consumed    prometheus.Counter
	decisions   *prometheus.CounterVec // outcome: flagged, review, allowed, clear
	flags       *prometheus.CounterVec // reason: every reason code of a flagged payment
	ruleHits    *prometheus.CounterVec // rule, mode
	ruleErrors  *prometheus.CounterVec // rule
	deadLetters *prometheus.CounterVec // error: the payment.Error code
	latency     prometheus.Histogram
	scores      *prometheus.HistogramVec // model: serving, shadow
	batchSize   prometheus.Histogram
	reviews     prometheus.Counter
	labels      prometheus.Counter
	pipeline    *pipeline.Metrics // the stage histogram and the Redis counters are shared with it

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

// NewMetrics registers the stream's metrics, and the pipeline's, with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		pipeline: pipeline.NewMetrics(reg),
		consumed: f.NewCounter(prometheus.CounterOpts{Name: "fraud_payments_consumed_total",
			Help: "Records read from the payments topic whose batch was done (outputs acknowledged, offset marked), valid or not."}),
		decisions: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_decisions_total",
			Help: "Valid payments decided, by outcome: flagged, review (sent to the analysts, not high risk), allowed (an allow rule overrode the others) or clear."}, []string{"outcome"}),
		ruleHits: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_rule_hits_total",
			Help: "Payments a rule matched, by rule and mode (active or shadow), counted once the batch is done."}, []string{"rule", "mode"}),
		ruleErrors: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_rule_errors_total",
			Help: "Payments on which a rule's evaluation failed at run time (the rule did not match), by rule, counted once the batch is done."}, []string{"rule"}),
		flags: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_flags_total",
			Help: "Reasons given with flagged payments, by reason code (a payment flagged for two reasons counts in both)."}, []string{"reason"}),
		deadLetters: f.NewCounterVec(prometheus.CounterOpts{Name: "fraud_dead_letters_total",
			Help: "Records sent to the dead-letter topic, by error code."}, []string{"error"}),
		latency: f.NewHistogram(prometheus.HistogramOpts{Name: "fraud_decision_latency_seconds",
			Help:    "From a payment's record timestamp (its producer's create time, or the broker's append time on a LogAppendTime topic) to its batch's outputs being acknowledged.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		scores: f.NewHistogramVec(prometheus.HistogramOpts{Name: "fraud_model_score",
			Help: "Fraud probabilities given to payments, by model: serving (model.path, which the rules act on) and shadow " +
				"(model.shadow_path, a challenger reported and never acted on), counted once the batch is done.",
			Buckets: []float64{0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99}}, []string{"model"}),
		batchSize: f.NewHistogram(prometheus.HistogramOpts{Name: "fraud_batch_size",
			Help: "Records per batch.", Buckets: prometheus.ExponentialBuckets(1, 2, 11)}),
		reviews: f.NewCounter(prometheus.CounterOpts{Name: "fraud_reviews_opened_total",
			Help: "Reviews opened in the analysts' queue (a redelivered decision whose review is open already does not count)."}),
		labels: f.NewCounter(prometheus.CounterOpts{Name: "fraud_labels_applied_total",
			Help: "Analysts' verdicts read from the labels topic and applied to the merchants' fraud counts."}),
	}
	m.held = map[heldKey]*heldPartition{}
	reg.MustRegister(lagCollector{m: m, desc: prometheus.NewDesc("fraud_consumer_lag",
		"Records of a payments partition this instance holds that are not done yet: the partition's newest offset "+
			"(asked of the brokers at each scrape) minus the next offset to mark.", []string{"topic", "partition"}, nil)})
	for _, o := range []string{"flagged", "review", "allowed", "clear"} {
		m.decisions.WithLabelValues(o)
	}
	return m
}

// Pipeline is the pipeline's share of the metrics, for pipeline.New.
func (m *Metrics) Pipeline() *pipeline.Metrics { return m.pipeline }

// KnowRules makes fraud_rule_hits_total show 0 for every rule of set before it first matches.
func (m *Metrics) KnowRules(set *rules.Set) {
	for _, r := range set.Rules() {
		m.ruleHits.WithLabelValues(r.ID, r.Mode)
		m.ruleErrors.WithLabelValues(r.ID)
	}
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
	reviewed    int
	allowed     int
	clear       int
	reasons     map[string]int
	hits        map[ruleMode]int
	ruleErrors  map[string]int
	deadLetters map[string]int
	appended    []time.Time  // each record's timestamp, for the decision latency
	scores      [2][]float64 // the serving and the shadow model's scores, for fraud_model_score
	sent        time.Time
	outputs     int
}

type ruleMode struct{ rule, mode string }

// hit counts the rules that matched a payment, and those that failed on it.
func (t *tally) hit(hits []rules.Hit, failed []*rules.Rule) {
	for _, h := range hits {
		if t.hits == nil {
			t.hits = map[ruleMode]int{}
		}
		t.hits[ruleMode{h.Rule.ID, h.Rule.Mode}]++
	}
	for _, r := range failed {
		if t.ruleErrors == nil {
			t.ruleErrors = map[string]int{}
		}
		t.ruleErrors[r.ID]++
	}
}

// Models whose scores fraud_model_score counts, in the order of tally.scores.
var scoreModels = [2]string{"serving", "shadow"}

// score notes a payment's scores, either of which may be nil (not scored).
func (t *tally) score(serving, shadow *float64) {
	for k, s := range [2]*float64{serving, shadow} {
		if s != nil {
			t.scores[k] = append(t.scores[k], *s)
		}
	}
}

func (m *Metrics) count(t *tally, done time.Time) {
	m.consumed.Add(float64(t.records))
	m.decisions.WithLabelValues("flagged").Add(float64(t.flagged))
	m.decisions.WithLabelValues("review").Add(float64(t.reviewed))
	m.decisions.WithLabelValues("allowed").Add(float64(t.allowed))
	m.decisions.WithLabelValues("clear").Add(float64(t.clear))
	for k, n := range t.hits {
		m.ruleHits.WithLabelValues(k.rule, k.mode).Add(float64(n))
	}
	for r, n := range t.ruleErrors {
		m.ruleErrors.WithLabelValues(r).Add(float64(n))
	}
	for r, n := range t.reasons {
		m.flags.WithLabelValues(r).Add(float64(n))
	}
	for c, n := range t.deadLetters {
		m.deadLetters.WithLabelValues(c).Add(float64(n))
	}
	for k, scores := range t.scores {
		if len(scores) == 0 {
			continue
		}
		h := m.scores.WithLabelValues(scoreModels[k])
		for _, s := range scores {
			h.Observe(s)
		}
	}
	for _, at := range t.appended {
		if !at.IsZero() {
			m.latency.Observe(max(done.Sub(at).Seconds(), 0))
		}
	}
	if t.outputs > 0 {
		m.pipeline.Stage.WithLabelValues(pipeline.StageProduce).Observe(done.Sub(t.sent).Seconds())
	}
}
