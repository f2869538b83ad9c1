// Package detect runs the stream: a sarama consumer-group handler that reads payments in batches
// per partition, decides on each, produces the decisions of flagged payments and dead-letters
// invalid records, and marks a batch's offsets only once all of its outputs are acknowledged.
package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/pipeline"
	"github.com/paysentry/fraud-detector/internal/rules"
)

// Config sets how records are batched and drained.
type Config struct {
	// BatchSize is the most records one batch takes from a partition.
	BatchSize int `yaml:"batch_size" env:"BATCH_SIZE"`
	// BatchLinger is how long a batch waits to fill once its first record is in. Zero processes
	// whatever has arrived as soon as nothing more is waiting.
	BatchLinger time.Duration `yaml:"batch_linger" env:"BATCH_LINGER"`
	// MaxInFlightBatches bounds the batches of one partition whose outputs await acknowledgement.
	MaxInFlightBatches int `yaml:"max_in_flight_batches" env:"MAX_IN_FLIGHT_BATCHES"`
	// MaxPaymentBytes is the largest record that can be a payment; larger ones are dead-lettered.
	MaxPaymentBytes int `yaml:"max_payment_bytes" env:"MAX_PAYMENT_BYTES"`
	// DLQMaxValueBytes cuts the value of a dead-lettered record to this many bytes, so that a
	// record too large for the dead-letter topic cannot stall its partition.
	DLQMaxValueBytes int `yaml:"dlq_max_value_bytes" env:"DLQ_MAX_VALUE_BYTES"`
	// RetryBackoff is the first wait before outputs that the producer gave up on are sent again;
	// it doubles up to 30 s.
	RetryBackoff time.Duration `yaml:"retry_backoff" env:"RETRY_BACKOFF"`
	// DrainTimeout bounds how long a partition waits for its in-flight outputs when it is revoked
	// or the service stops. What is not acknowledged by then is not marked, and is read again.
	DrainTimeout time.Duration `yaml:"drain_timeout" env:"DRAIN_TIMEOUT"`
	// StateRetryBudget is how long a batch retries Redis before StateFailurePolicy applies (the
	// pipeline's card state stage applies both).
	StateRetryBudget time.Duration `yaml:"state_retry_budget" env:"STATE_RETRY_BUDGET"`
	// StateFailurePolicy: fail_open decides without the windows and adds degraded_state;
	// fail_closed holds the partitions, marking nothing, until Redis answers.
	StateFailurePolicy string `yaml:"state_failure_policy" env:"STATE_FAILURE_POLICY"`
	// StateLossUnready is how long /readyz fails after the stream found that Redis lost its data
	// (0: it never fails for that; the log line and fraud_state_losses_total still tell).
	StateLossUnready time.Duration `yaml:"state_loss_unready" env:"STATE_LOSS_UNREADY"`
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.BatchSize < 1:
		return fmt.Errorf("stream.batch_size: must be at least 1, got %d", c.BatchSize)
	case c.BatchSize > 5000:
		return fmt.Errorf("stream.batch_size: at most 5000 (a batch's card state is one round trip), got %d", c.BatchSize)
	case c.BatchLinger < 0:
		return fmt.Errorf("stream.batch_linger: must not be negative, got %s", c.BatchLinger)
	case c.MaxInFlightBatches < 1:
		return fmt.Errorf("stream.max_in_flight_batches: must be at least 1, got %d", c.MaxInFlightBatches)
	case c.MaxPaymentBytes < 256 || c.MaxPaymentBytes > 16<<20:
		return fmt.Errorf("stream.max_payment_bytes: must be from 256 to 16777216, got %d", c.MaxPaymentBytes)
	case c.DLQMaxValueBytes < 1024:
		return fmt.Errorf("stream.dlq_max_value_bytes: must be at least 1024, got %d", c.DLQMaxValueBytes)
	case c.RetryBackoff <= 0:
		return fmt.Errorf("stream.retry_backoff: must be positive, got %s", c.RetryBackoff)
	case c.StateRetryBudget <= 0:
		return fmt.Errorf("stream.state_retry_budget: must be positive, got %s", c.StateRetryBudget)
	case c.StateLossUnready < 0:
		return fmt.Errorf("stream.state_loss_unready: must not be negative, got %s", c.StateLossUnready)
	case c.StateFailurePolicy != pipeline.FailOpen && c.StateFailurePolicy != pipeline.FailClosed:
		return fmt.Errorf("stream.state_failure_policy: must be fail_open or fail_closed, got %q", c.StateFailurePolicy)
	case c.DrainTimeout <= 0 || c.DrainTimeout > 50*time.Second:
		// A member that takes longer than the group's rebalance timeout (60 s) to let go of its
		// partitions is evicted, and its last commits fail.
		return fmt.Errorf("stream.drain_timeout: must be positive and at most 50s, got %s", c.DrainTimeout)
	}
	return nil
}

// Topics names the topics the handler writes to.
type Topics struct {
	HighRisk string
	DLQ      string
}

// Dead-letter headers.
const (
	HeaderErrorCode      = "error.code"
	HeaderErrorMessage   = "error.message"
	HeaderErrorTruncated = "error.truncated" // the original size, when the value was cut
	HeaderErrorRedacted  = "error.redacted"  // "card_number" when card numbers were masked
	// error.key_truncated: the original key size, when the key was cut; error.headers_dropped:
	// how many of the record's headers were left out; error.dlq: why a dead letter carries only
	// the error and source headers.
	HeaderErrorKeyTruncated   = "error.key_truncated"
	HeaderErrorHeadersDropped = "error.headers_dropped"
	HeaderErrorDLQ            = "error.dlq"
	HeaderSourceTopic         = "source.topic"
	HeaderSourcePartition     = "source.partition"
	HeaderSourceOffset        = "source.offset"
)

// Handler is the sarama.ConsumerGroupHandler of the payments topic.
type Handler struct {
	cfg    Config
	topics Topics
	dec    *payment.Decoder
	pipe   *pipeline.Pipeline
	out    *Outputs
	m      *Metrics
	log    *slog.Logger
	logs   *LogLimiter // warnings that repeat while the broker is away
	now    func() time.Time
}

var _ sarama.ConsumerGroupHandler = (*Handler)(nil)

// NewHandler returns a handler that decodes with dec, decides with pipe, writes through out and
// counts in m.
func NewHandler(cfg Config, topics Topics, dec *payment.Decoder, pipe *pipeline.Pipeline, out *Outputs, m *Metrics, log *slog.Logger) *Handler {
	return &Handler{cfg: cfg, topics: topics, dec: dec, pipe: pipe, out: out, m: m, log: log,
		logs: NewLogLimiter(log, 3, time.Minute, time.Now), now: time.Now}
}

// Logs is the limiter of the stream's warnings that repeat while the broker is away (a few lines
// a minute of each); hand it to Consume, which flushes it, and use it for the service's other
// groups too.
func (h *Handler) Logs() *LogLimiter { return h.logs }

// Setup is called when a new session starts.
func (h *Handler) Setup(s sarama.ConsumerGroupSession) error {
	h.log.Info("partitions assigned", "generation", s.GenerationID(), "claims", s.Claims())
	return nil
}

// Cleanup is called when a session ends, after every ConsumeClaim has returned.
func (h *Handler) Cleanup(s sarama.ConsumerGroupSession) error {
	h.log.Info("partitions released", "generation", s.GenerationID())
	return nil
}

// batch is a run of records of one partition whose outputs are in flight.
type batch struct {
	last  *sarama.ConsumerMessage // marked once every output is acknowledged
	acks  *acks
	try   int    // how many times failed outputs were sent again
	tally *tally // counted once marked
	held  *heldPartition
}

// ConsumeClaim reads one partition: it collects batches, processes each, and marks a batch's last
// offset once the outputs of that batch and of every batch before it are acknowledged. Batches
// are pipelined: up to MaxInFlightBatches await their acknowledgements while the next is built.
func (h *Handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	ctx := sess.Context()
	msgs := claim.Messages()
	held := h.m.hold(claim)
	defer h.m.release(held)
	buf := make([]*sarama.ConsumerMessage, 0, h.cfg.BatchSize)
	var inflight []*batch
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	defer linger.Stop()
	var lingerC <-chan time.Time

	// flush processes the batch being collected. Once the session has ended nothing new is
	// processed: those records are not marked and are read again by whoever gets the partition.
	flush := func() {
		if len(buf) == 0 || ctx.Err() != nil {
			return
		}
		out, t, ok := h.process(ctx, buf)
		if !ok {
			return // the session ended before the batch could be decided: it is read again
		}
		if held.next.Load() < 0 {
			held.next.Store(buf[0].Offset)
		}
		t.sent, t.outputs = time.Now(), len(out)
		inflight = append(inflight, &batch{last: buf[len(buf)-1], acks: h.out.send(ctx, out, h.cfg.DrainTimeout), tally: t, held: held})
		clear(buf)
		buf = buf[:0]
		lingerC = nil
	}

	for {
		in := msgs
		if len(inflight) >= h.cfg.MaxInFlightBatches {
			in = nil // wait for the oldest batch before taking more
		}
		var head <-chan struct{}
		if len(inflight) > 0 {
			head = inflight[0].acks.done
		}
		select {
		case m, ok := <-in:
			if !ok {
				return h.drain(sess, claim, inflight)
			}
			buf = append(buf, m)
		more: // take what is already waiting, up to a full batch
			for len(buf) < h.cfg.BatchSize {
				select {
				case m, ok := <-msgs:
					if !ok {
						return h.drain(sess, claim, inflight)
					}
					buf = append(buf, m)
				default:
					break more
				}
			}
			switch {
			case len(buf) >= h.cfg.BatchSize || h.cfg.BatchLinger == 0:
				flush()
			case lingerC == nil:
				linger.Reset(h.cfg.BatchLinger)
				lingerC = linger.C
			}
		case <-lingerC:
			flush()
		case <-head:
			if !h.settle(ctx, sess, claim, inflight[0]) {
				if ctx.Err() != nil {
					return h.drain(sess, claim, inflight)
				}
				continue // sent again; wait for the new acknowledgements
			}
			inflight[0] = nil
			inflight = inflight[1:]
		case <-ctx.Done():
			return h.drain(sess, claim, inflight)
		}
	}
}

// settle marks a batch whose outputs are all acknowledged and reports true. If some failed after
// the producer's own retries it waits, sends them again and reports false; the batch stays unmarked
// until they succeed, so nothing is lost, and the partition holds still meanwhile. A dead letter
// the broker can never take (too large for the topic, say) is replaced by one without the
// record's key, value and headers, which still names the error and the source offset.
func (h *Handler) settle(ctx context.Context, sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, b *batch) bool {
	failed := b.acks.result()
	if len(failed) == 0 {
		h.mark(sess, b)
		return true
	}
	wait := min(h.cfg.RetryBackoff<<min(b.try, 10), 30*time.Second)
	b.try++
	h.logs.Log(ctx, slog.LevelWarn, "outputs not acknowledged "+claim.Topic(), "outputs not acknowledged; sending them again",
		"topic", claim.Topic(), "partition", claim.Partition(), "records", len(failed),
		"attempt", b.try, "backoff", wait, "err", failed[0].err)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return false // the partition is being revoked: the batch stays unmarked and is read again
	}
	// Fresh messages, so that nothing sarama kept on the failed ones carries over.
	again := make([]*sarama.ProducerMessage, len(failed))
	for i, f := range failed {
		m := f.msg
		again[i] = &sarama.ProducerMessage{Topic: m.Topic, Key: m.Key, Value: m.Value, Headers: m.Headers}
		if m.Topic == h.topics.DLQ && permanent(f.err) {
			again[i] = h.bareDeadLetter(m, f.err)
		}
	}
	b.acks = h.out.send(ctx, again, h.cfg.DrainTimeout)
	return false
}

// drain waits, within the drain timeout, for the in-flight batches in order and marks each that
// is fully acknowledged. It stops at the first one that is not: later offsets must not be marked
// before it.
func (h *Handler) drain(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim, inflight []*batch) error {
	deadline := time.NewTimer(h.cfg.DrainTimeout)
	defer deadline.Stop()
	for i, b := range inflight {
		select {
		case <-b.acks.done:
		case <-deadline.C:
			h.logs.Log(context.Background(), slog.LevelWarn, "drain timed out "+claim.Topic(), "drain timed out; unacknowledged batches will be read again",
				"topic", claim.Topic(), "partition", claim.Partition(), "batches", len(inflight)-i)
			return nil
		}
		if failed := b.acks.result(); len(failed) > 0 {
			h.logs.Log(context.Background(), slog.LevelWarn, "outputs failed while draining "+claim.Topic(), "outputs failed while draining; the batch will be read again",
				"topic", claim.Topic(), "partition", claim.Partition(), "records", len(failed), "err", failed[0].err)
			return nil
		}
		h.mark(sess, b)
	}
	return nil
}

// mark marks a batch whose outputs are all acknowledged and counts it. The partition's next
// offset and the counters are updated first, so whoever sees the mark sees them too.
func (h *Handler) mark(sess sarama.ConsumerGroupSession, b *batch) {
	b.held.next.Store(b.last.Offset + 1)
	h.m.count(b.tally, b.acks.doneAt)
	sess.MarkMessage(b.last, "")
}

// item is one record on its way through a batch.
type item struct {
	msg *sarama.ConsumerMessage
	p   payment.Payment
	err error // decoding error: the record is dead-lettered
	d   *pipeline.Decision
}

// process decides on a batch and returns the records to produce: a decision for every payment
// the policy flagged or sent to review and a dead-letter record for every invalid one, and what
// the batch adds to the metrics. It reports false if the batch could not be decided before the
// session ended.
func (h *Handler) process(ctx context.Context, msgs []*sarama.ConsumerMessage) ([]*sarama.ProducerMessage, *tally, bool) {
	items := make([]item, len(msgs))
	t := &tally{records: len(msgs), appended: make([]time.Time, len(msgs))}
	for i, m := range msgs {
		items[i].msg = m
		t.appended[i] = m.Timestamp
	}
	h.m.batchSize.Observe(float64(len(msgs)))
	began := time.Now()
	if !h.decide(ctx, items) {
		return nil, nil, false
	}
	if took := time.Since(began); took > time.Second {
		h.log.Warn("batch slow to decide", "payments", len(items), "took", took)
	}
	now := h.now().UTC()
	var out []*sarama.ProducerMessage
	for i := range items {
		it := &items[i]
		if it.err != nil {
			out = append(out, h.deadLetter(it.msg, it.err))
			if t.deadLetters == nil {
				t.deadLetters = map[string]int{}
			}
			t.deadLetters[errorCode(it.err)]++
			continue
		}
		t.hit(it.d.Hits, it.d.RuleErrors)
		t.score(it.d.Score, it.d.ShadowScore)
		switch it.d.Action {
		case rules.ActionFlag:
			out = append(out, h.decision(it, now))
			t.flagged++
			if t.reasons == nil {
				t.reasons = map[string]int{}
			}
			for _, r := range it.d.Reasons {
				t.reasons[r.Code]++
			}
		case rules.ActionReview:
			out = append(out, h.decision(it, now))
			t.reviewed++
		case rules.ActionAllow:
			t.allowed++
		default:
			t.clear++
		}
	}
	return out, t, true
}

// errorCode names what is wrong with a record that is not a valid payment.
func errorCode(err error) string {
	var pe *payment.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return "internal"
}

// decide decodes a batch and runs the pipeline over its valid payments. It reports false if the
// batch could not be decided before the session ended.
func (h *Handler) decide(ctx context.Context, items []item) bool {
	began := time.Now()
	ps := make([]*payment.Payment, 0, len(items))
	for i := range items {
		it := &items[i]
		if it.p, it.err = h.dec.Decode(it.msg.Value); it.err == nil {
			ps = append(ps, &it.p)
		}
	}
	h.m.pipeline.Stage.WithLabelValues(pipeline.StageDecode).Observe(time.Since(began).Seconds())
	ds := make([]pipeline.Decision, len(ps))
	if err := h.pipe.Decide(ctx, ps, ds); err != nil {
		return false
	}
	k := 0
	for i := range items {
		if items[i].err == nil {
			items[i].d = &ds[k]
			k++
		}
	}
	return true
}

func (h *Handler) decision(it *item, now time.Time) *sarama.ProducerMessage {
	d := it.d.Record(&it.p, now)
	v := d.AppendJSON(make([]byte, 0, 384+len(d.Payment)))
	return &sarama.ProducerMessage{
		Topic:   h.topics.HighRisk,
		Key:     sarama.StringEncoder(it.p.CardID),
		Value:   sarama.ByteEncoder(v),
		Headers: sourceHeaders(it.msg),
	}
}

// Limits that keep a dead letter within kafka.max_message_bytes whatever the record carried:
// the value is cut to DLQMaxValueBytes, and these bound the rest.
const (
	dlqMaxKeyBytes     = 4 << 10
	dlqMaxHeaderBytes  = 32 << 10 // the record's own headers, all together
	dlqMaxMessageBytes = 1 << 10  // the error.message header
)

// deadLetter is the record for m on the dead-letter topic: m's key, value and headers as they
// came, with card numbers masked and sizes bounded, and headers naming the error and the source.
func (h *Handler) deadLetter(m *sarama.ConsumerMessage, cause error) *sarama.ProducerMessage {
	code := errorCode(cause)
	msg, _ := payment.RedactPANs([]byte(cause.Error()))
	headers := make([]sarama.RecordHeader, 0, len(m.Headers)+8)
	size, dropped := 0, 0
	for _, rh := range m.Headers {
		if size += len(rh.Key) + len(rh.Value); size > dlqMaxHeaderBytes {
			dropped++
			continue
		}
		v, _ := payment.RedactPANs(rh.Value)
		headers = append(headers, sarama.RecordHeader{Key: rh.Key, Value: v})
	}
	headers = append(headers,
		sarama.RecordHeader{Key: []byte(HeaderErrorCode), Value: []byte(code)},
		sarama.RecordHeader{Key: []byte(HeaderErrorMessage), Value: msg[:min(len(msg), dlqMaxMessageBytes)]})
	headers = append(headers, sourceHeaders(m)...)
	if dropped > 0 {
		headers = append(headers, sarama.RecordHeader{Key: []byte(HeaderErrorHeadersDropped), Value: []byte(strconv.Itoa(dropped))})
	}
	// Mask first, then cut: a card number must not survive half-cut.
	v, redacted := payment.RedactPANs(m.Value)
	key, keyRedacted := payment.RedactPANs(m.Key)
	if redacted || keyRedacted {
		headers = append(headers, sarama.RecordHeader{Key: []byte(HeaderErrorRedacted), Value: []byte("card_number")})
	}
	if len(v) > h.cfg.DLQMaxValueBytes {
		headers = append(headers, sarama.RecordHeader{Key: []byte(HeaderErrorTruncated), Value: []byte(strconv.Itoa(len(v)))})
		v = v[:h.cfg.DLQMaxValueBytes]
	}
	if len(key) > dlqMaxKeyBytes {
		headers = append(headers, sarama.RecordHeader{Key: []byte(HeaderErrorKeyTruncated), Value: []byte(strconv.Itoa(len(key)))})
		key = key[:dlqMaxKeyBytes]
	}
	pm := &sarama.ProducerMessage{Topic: h.topics.DLQ, Headers: headers}
	if m.Key != nil {
		pm.Key = sarama.ByteEncoder(key)
	}
	if m.Value != nil {
		pm.Value = sarama.ByteEncoder(v)
	}
	return pm
}

// bareDeadLetter replaces a dead letter that the broker refused for good: only the headers that
// name the error and the source remain, and error.dlq says why the rest is missing. The original
// record stays at its source offset.
func (h *Handler) bareDeadLetter(m *sarama.ProducerMessage, err error) *sarama.ProducerMessage {
	bare := &sarama.ProducerMessage{Topic: m.Topic}
	for _, rh := range m.Headers {
		switch string(rh.Key) {
		case HeaderErrorCode, HeaderErrorMessage, HeaderSourceTopic, HeaderSourcePartition, HeaderSourceOffset:
			bare.Headers = append(bare.Headers, rh)
		}
	}
	bare.Headers = append(bare.Headers, sarama.RecordHeader{Key: []byte(HeaderErrorDLQ), Value: []byte("dead letter refused, sent without key, value and headers: " + err.Error())})
	return bare
}

// permanent reports whether the producer's error cannot go away by sending the same record again.
func permanent(err error) bool {
	var ce sarama.ConfigurationError
	return errors.As(err, &ce) || errors.Is(err, sarama.ErrMessageSizeTooLarge) ||
		errors.Is(err, sarama.ErrInvalidMessage) || errors.Is(err, sarama.ErrInvalidRecord)
}

func sourceHeaders(m *sarama.ConsumerMessage) []sarama.RecordHeader {
	return []sarama.RecordHeader{
		{Key: []byte(HeaderSourceTopic), Value: []byte(m.Topic)},
		{Key: []byte(HeaderSourcePartition), Value: strconv.AppendInt(nil, int64(m.Partition), 10)},
		{Key: []byte(HeaderSourceOffset), Value: strconv.AppendInt(nil, m.Offset, 10)},
	}
}
