package detect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/pipeline"
	"github.com/paysentry/fraud-detector/internal/rules"
	"github.com/paysentry/fraud-detector/internal/window"
)

// These tests drive the handler through fakes of sarama's session, claim and producer so that the
// order of acknowledgements is in the test's hands. The e2e tests run the same code on real Kafka.

// fakeProducer hands every input to the test, which acknowledges it when it chooses.
type fakeProducer struct {
	sarama.AsyncProducer
	mu        sync.Mutex
	acked     map[*sarama.ProducerMessage]bool
	sent      []*sarama.ProducerMessage
	checks    []markCheck
	input     chan *sarama.ProducerMessage
	successes chan *sarama.ProducerMessage
	errors    chan *sarama.ProducerError
}

func newFakeProducer() *fakeProducer {
	return &fakeProducer{
		// Unbuffered: a record counts as sent only once the test has taken it, so that a mark
		// cannot slip in between a send and the test seeing it.
		input:     make(chan *sarama.ProducerMessage),
		successes: make(chan *sarama.ProducerMessage),
		errors:    make(chan *sarama.ProducerError),
		acked:     map[*sarama.ProducerMessage]bool{},
	}
}

// markCheck records, for one mark, whether an output of a record at or before it was unacknowledged.
type markCheck struct {
	mark, source int64
	acked        bool
}

// onMark records whether every output sent so far whose source offset is at most offset was
// acknowledged when offset was marked.
func (p *fakeProducer) onMark(offset int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.sent {
		var src int64
		for _, h := range m.Headers {
			if string(h.Key) == HeaderSourceOffset {
				fmt.Sscan(string(h.Value), &src)
			}
		}
		if src <= offset {
			p.checks = append(p.checks, markCheck{mark: offset, source: src, acked: p.acked[m]})
		}
	}
}

func (p *fakeProducer) ackedAtMark(t *testing.T) []markCheck {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.checks) == 0 {
		t.Fatal("no mark was checked")
	}
	return slices.Clone(p.checks)
}

func (p *fakeProducer) Input() chan<- *sarama.ProducerMessage     { return p.input }
func (p *fakeProducer) Successes() <-chan *sarama.ProducerMessage { return p.successes }
func (p *fakeProducer) Errors() <-chan *sarama.ProducerError      { return p.errors }
func (p *fakeProducer) AsyncClose()                               { close(p.successes); close(p.errors) }
func (p *fakeProducer) ack(m *sarama.ProducerMessage) {
	p.mu.Lock()
	p.acked[m] = true
	p.mu.Unlock()
	p.successes <- m
}
func (p *fakeProducer) fail(m *sarama.ProducerMessage, err error) {
	p.errors <- &sarama.ProducerError{Msg: m, Err: err}
}
func (p *fakeProducer) next(t *testing.T) *sarama.ProducerMessage {
	t.Helper()
	select {
	case m := <-p.input:
		p.mu.Lock()
		p.sent = append(p.sent, m)
		p.mu.Unlock()
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no record produced within 10 s")
		return nil
	}
}

type fakeSession struct {
	sarama.ConsumerGroupSession
	ctx    context.Context
	onMark func(int64)
	mu     sync.Mutex
	marks  []int64
	mark   chan int64
}

func (s *fakeSession) Context() context.Context { return s.ctx }
func (s *fakeSession) MarkMessage(m *sarama.ConsumerMessage, _ string) {
	s.mu.Lock()
	s.marks = append(s.marks, m.Offset)
	s.mu.Unlock()
	s.onMark(m.Offset)
	s.mark <- m.Offset
}

type fakeClaim struct {
	sarama.ConsumerGroupClaim
	msgs chan *sarama.ConsumerMessage
	hwm  atomic.Int64
}

func (c *fakeClaim) HighWaterMarkOffset() int64 { return c.hwm.Load() }
func (c *fakeClaim) InitialOffset() int64       { return 0 }

func (c *fakeClaim) Topic() string                            { return "payments" }
func (c *fakeClaim) Partition() int32                         { return 0 }
func (c *fakeClaim) Messages() <-chan *sarama.ConsumerMessage { return c.msgs }

// fakeWindows counts per card like the real store (without lateness), or fails while down is set
// and once after failOnce is set.
type fakeWindows struct {
	mu       sync.Mutex
	counts   map[string]int64
	down     atomic.Bool
	failOnce atomic.Bool
	calls    atomic.Int64
}

func (w *fakeWindows) Observe(_ context.Context, events []window.Event, out []window.Result) (bool, error) {
	w.calls.Add(1)
	if w.down.Load() {
		return true, errors.New("connection refused")
	}
	if w.failOnce.CompareAndSwap(true, false) {
		return true, errors.New("i/o timeout")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, e := range events {
		w.counts[e.Card]++
		out[i] = window.Result{Window: e.Time.Truncate(time.Hour), Count: w.counts[e.Card]}
	}
	return true, nil
}

func (w *fakeWindows) Losses() (int64, time.Time) { return 0, time.Time{} }

func (w *fakeWindows) Note(window.Result) (decision.Reason, bool) { return decision.Reason{}, false }

type rig struct {
	win   *fakeWindows
	p     *pipeline.Pipeline
	h     *Handler
	prod  *fakeProducer
	sess  *fakeSession
	claim *fakeClaim
	out   *Outputs
	done  chan error
	stop  context.CancelFunc
	reg   *prometheus.Registry
}

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	prod := newFakeProducer()
	out := NewOutputs(prod)
	r := &rig{
		win:   &fakeWindows{counts: map[string]int64{}},
		prod:  prod,
		out:   out,
		sess:  &fakeSession{ctx: ctx, mark: make(chan int64, 100)},
		claim: &fakeClaim{msgs: make(chan *sarama.ConsumerMessage, 100)},
		done:  make(chan error, 1),
		stop:  cancel,
		reg:   prometheus.NewRegistry(),
	}
	r.sess.onMark = prod.onMark
	set, err := rules.Load("../../configs/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(r.reg)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	r.p = pipeline.New(pipeline.Config{StateRetryBudget: cfg.StateRetryBudget, StateFailurePolicy: cfg.StateFailurePolicy},
		r.win, nil, set, nil, m.Pipeline(), log)
	r.h = NewHandler(cfg, Topics{HighRisk: "high-risk", DLQ: "dlq"},
		payment.NewDecoder([]byte("test-key-0123456789"), 64<<10), r.p, out, m, log)
	t.Cleanup(func() { cancel(); out.Close(time.Second) })
	return r
}

func (r *rig) run() { go func() { r.done <- r.h.ConsumeClaim(r.sess, r.claim) }() }

func (r *rig) feed(offset int64, amount string) {
	r.claim.msgs <- &sarama.ConsumerMessage{Topic: "payments", Offset: offset, Value: fmt.Appendf(nil,
		`{"payment_id":"p%d","card_id":"c1","amount":"%s","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`, offset, amount)}
}

func (r *rig) wait(t *testing.T) {
	t.Helper()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("ConsumeClaim: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ConsumeClaim did not return")
	}
}

func (r *rig) nextMark(t *testing.T) int64 {
	t.Helper()
	select {
	case off := <-r.sess.mark:
		return off
	case <-time.After(10 * time.Second):
		t.Fatal("no offset marked within 10 s")
		return -1
	}
}

// waitUntil polls cond until it holds, and fails the test if it does not within 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
	}
}

func (r *rig) marks() []int64 {
	r.sess.mu.Lock()
	defer r.sess.mu.Unlock()
	return slices.Clone(r.sess.marks)
}

func testConfig() Config {
	return Config{BatchSize: 2, BatchLinger: time.Hour, MaxInFlightBatches: 4, MaxPaymentBytes: 64 << 10,
		DLQMaxValueBytes: 1024, RetryBackoff: time.Millisecond, DrainTimeout: 10 * time.Second,
		StateRetryBudget: 20 * time.Millisecond, StateFailurePolicy: pipeline.FailOpen}
}

// Batches are marked in order and only once all of their outputs are acknowledged, whatever the
// order of the acknowledgements.
func TestMarksInOrderOnlyAfterAcknowledgement(t *testing.T) {
	r := newRig(t, testConfig())
	for off := range int64(4) { // two full batches, every payment flagged
		r.feed(off, "150")
	}
	r.run()
	a0, a1, b2, b3 := r.prod.next(t), r.prod.next(t), r.prod.next(t), r.prod.next(t)
	for _, m := range []*sarama.ProducerMessage{b3, b2, a1, a0} {
		r.prod.ack(m)
	}
	if got := []int64{r.nextMark(t), r.nextMark(t)}; !slices.Equal(got, []int64{1, 3}) {
		t.Fatalf("marks %v, want [1 3]", got)
	}
	for _, m := range r.prod.ackedAtMark(t) {
		if !m.acked {
			t.Errorf("offset %d marked before its output (source offset %d) was acknowledged", m.mark, m.source)
		}
	}
	close(r.claim.msgs)
	r.wait(t)
	if got := r.marks(); !slices.Equal(got, []int64{1, 3}) {
		t.Errorf("marks %v, want [1 3]", got)
	}
}

// The counters count a batch once it is marked: consumed, decisions by outcome, flags by reason,
// dead letters by error, the lag of the partition (dropped when it is released), the latency
// from the append time.
func TestMetricsCountMarkedBatches(t *testing.T) {
	r := newRig(t, testConfig())
	r.claim.hwm.Store(10)
	appended := time.Now().Add(-time.Second)
	r.feed(0, "150")
	r.feed(1, "10")
	r.run()
	first := r.prod.next(t)
	m := r.h.m
	if got := testutil.ToFloat64(m.consumed); got != 0 {
		t.Errorf("consumed %v before the batch's output was acknowledged, want 0", got)
	}
	if got, n := gathered(t, r.reg, "fraud_consumer_lag"); n != 1 || got != 10 {
		t.Errorf("lag %v (%d series) with nothing marked of 10 records, want 10", got, n)
	}
	r.claim.msgs <- &sarama.ConsumerMessage{Topic: "payments", Offset: 2, Value: []byte(`{"payment_id":`), Timestamp: appended}
	r.feed(3, "99")
	r.prod.ack(first)
	r.prod.ack(r.prod.next(t)) // the dead letter
	r.nextMark(t)
	r.nextMark(t) // the handler moves the partition's next offset before it marks: the lag is 6 now
	if got, _ := gathered(t, r.reg, "fraud_consumer_lag"); got != 6 {
		t.Errorf("lag %v once offsets 0-3 of 10 are marked, want 6", got)
	}
	r.claim.hwm.Store(20) // the partition grows while nothing is read: the lag says so
	if got, _ := gathered(t, r.reg, "fraud_consumer_lag"); got != 16 {
		t.Errorf("lag %v after the partition grew to 20, want 16", got)
	}
	close(r.claim.msgs)
	r.wait(t)
	for _, c := range []struct {
		name string
		got  prometheus.Collector
		want float64
	}{
		{"consumed", m.consumed, 4},
		{"flagged", m.decisions.WithLabelValues("flagged"), 1},
		{"clear", m.decisions.WithLabelValues("clear"), 2},
		{"amount flags", m.flags.WithLabelValues(decision.CodeAmount), 1},
		{"dead letters", m.deadLetters.WithLabelValues("invalid_json"), 1},
	} {
		if got := testutil.ToFloat64(c.got); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	if _, n := gathered(t, r.reg, "fraud_consumer_lag"); n != 0 {
		t.Errorf("%d lag series after the partition was released, want 0", n)
	}
	mf, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mf {
		if f.GetName() == "fraud_decision_latency_seconds" {
			h := f.GetMetric()[0].GetHistogram()
			// One record had a timestamp (a second ago); the others had none and are not observed.
			if h.GetSampleCount() != 1 || h.GetSampleSum() < 1 || h.GetSampleSum() > 60 {
				t.Errorf("latency: %d samples, sum %v s; want 1 sample of about a second", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
}

// gathered sums the samples of the gauge name in reg and says how many series it has.
func gathered(t *testing.T, reg *prometheus.Registry, name string) (sum float64, series int) {
	t.Helper()
	mf, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mf {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetGauge().GetValue()
				series++
			}
		}
	}
	return sum, series
}

func TestBatchWithoutOutputsIsMarkedAtOnce(t *testing.T) {
	r := newRig(t, testConfig())
	r.feed(0, "10")
	r.feed(1, "100.00")
	r.run()
	if got := r.nextMark(t); got != 1 { // a produced record would block: the fake's input is unbuffered
		t.Fatalf("mark %d, want 1", got)
	}
	close(r.claim.msgs)
	r.wait(t)
}

func TestLingerClosesAPartialBatch(t *testing.T) {
	cfg := testConfig()
	cfg.BatchSize, cfg.BatchLinger = 100, 5*time.Millisecond
	r := newRig(t, cfg)
	r.feed(0, "500")
	r.run()
	r.prod.ack(r.prod.next(t)) // produced although the batch is far from full
	if got := r.nextMark(t); got != 0 {
		t.Fatalf("mark %d, want 0", got)
	}
	close(r.claim.msgs)
	r.wait(t)
}

// Outputs the producer gave up on are sent again; the batch is marked once they succeed.
func TestFailedOutputsAreSentAgain(t *testing.T) {
	r := newRig(t, testConfig())
	r.feed(0, "150")
	r.feed(1, "20")
	r.run()
	m := r.prod.next(t)
	r.prod.fail(m, errors.New("broker down"))
	again := r.prod.next(t)
	if string(again.Value.(sarama.ByteEncoder)) != string(m.Value.(sarama.ByteEncoder)) {
		t.Fatalf("sent %s again, want %s", again.Value, m.Value)
	}
	select {
	case off := <-r.sess.mark:
		t.Fatalf("marked %d while its output had failed", off)
	default:
	}
	r.prod.ack(again)
	if got := r.nextMark(t); got != 1 {
		t.Fatalf("mark %d, want 1", got)
	}
	close(r.claim.msgs)
	r.wait(t)
}

// When the session ends, in-flight batches are drained and marked before ConsumeClaim returns.
func TestRevokeDrainsInFlight(t *testing.T) {
	r := newRig(t, testConfig())
	r.feed(0, "150")
	r.feed(1, "150")
	r.run()
	a, b := r.prod.next(t), r.prod.next(t)
	r.stop()
	r.prod.ack(a)
	r.prod.ack(b)
	r.wait(t)
	if got := r.marks(); !slices.Equal(got, []int64{1}) {
		t.Errorf("marks %v, want [1]", got)
	}
}

// A batch not acknowledged within the drain timeout is left unmarked, to be read again.
func TestDrainTimeoutLeavesBatchUnmarked(t *testing.T) {
	cfg := testConfig()
	cfg.DrainTimeout = 20 * time.Millisecond
	r := newRig(t, cfg)
	r.feed(0, "150")
	r.feed(1, "150")
	r.run()
	a, b := r.prod.next(t), r.prod.next(t)
	r.stop()
	r.wait(t)
	if got := r.marks(); len(got) != 0 {
		t.Errorf("marks %v, want none", got)
	}
	r.prod.ack(a) // let Outputs.Close finish
	r.prod.ack(b)
}

func TestDeadLetter(t *testing.T) {
	r := newRig(t, testConfig())
	long := append([]byte(`{"x":"4111111111111111`), make([]byte, 2000)...)
	msgs := []*sarama.ConsumerMessage{
		{Topic: "payments", Partition: 3, Offset: 17, Key: []byte("k"), Value: []byte(`{"payment_id":`),
			Headers: []*sarama.RecordHeader{{Key: []byte("trace"), Value: []byte("t1")}}},
		{Topic: "payments", Partition: 3, Offset: 18, Value: long},
		{Topic: "payments", Partition: 3, Offset: 19, Value: nil},
	}
	out, _, _ := r.h.process(context.Background(), msgs)
	if len(out) != 3 {
		t.Fatalf("%d outputs, want 3", len(out))
	}
	hdr := func(m *sarama.ProducerMessage, k string) string {
		for _, h := range m.Headers {
			if string(h.Key) == k {
				return string(h.Value)
			}
		}
		return ""
	}
	bad := out[0]
	if bad.Topic != "dlq" || string(bad.Key.(sarama.ByteEncoder)) != "k" || string(bad.Value.(sarama.ByteEncoder)) != `{"payment_id":` {
		t.Errorf("dead letter %+v", bad)
	}
	for k, want := range map[string]string{"trace": "t1", HeaderErrorCode: "invalid_json", HeaderSourceTopic: "payments",
		HeaderSourcePartition: "3", HeaderSourceOffset: "17"} {
		if got := hdr(bad, k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	cut := out[1]
	v := cut.Value.(sarama.ByteEncoder)
	if len(v) != 1024 || hdr(cut, HeaderErrorTruncated) != fmt.Sprint(len(long)) || hdr(cut, HeaderErrorRedacted) != "card_number" {
		t.Errorf("long record: %d bytes, headers %v", len(v), cut.Headers)
	}
	if string(v[:22]) != `{"x":"411111******1111` {
		t.Errorf("card number not masked: %s", v[:22])
	}
	if null := out[2]; null.Value != nil || hdr(null, HeaderErrorCode) != payment.CodeEmpty {
		t.Errorf("null record: %+v", null)
	}
}

func TestDecisionRecord(t *testing.T) {
	r := newRig(t, testConfig())
	out, _, _ := r.h.process(context.Background(), []*sarama.ConsumerMessage{{Topic: "payments", Partition: 1, Offset: 5, Value: []byte(
		`{"payment_id":"p1","card_number":"4111111111111111","amount":"250.00","currency":"USD","timestamp":"2026-03-01T10:00:00Z"}`)}})
	if len(out) != 1 || out[0].Topic != "high-risk" {
		t.Fatalf("outputs %+v", out)
	}
	d, err := decision.Unmarshal(out[0].Value.(sarama.ByteEncoder))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Flagged || d.PaymentID != "p1" || len(d.Reasons) != 1 || d.Reasons[0].Code != decision.CodeAmount ||
		d.RulesVersion == "" || d.DecidedAt.IsZero() || string(out[0].Key.(sarama.StringEncoder)) != d.CardID {
		t.Errorf("decision %+v", d)
	}
	if got := string(d.Payment); !strings.Contains(got, `"card_number":"411111******1111"`) || strings.Contains(got, "4111111111111111") {
		t.Errorf("payment %s", got)
	}
}

func TestDeadLetterHidesCardNumbersAndFits(t *testing.T) {
	r := newRig(t, testConfig())
	const pan = "4111111111111111"
	var headers []*sarama.RecordHeader
	for i := range 100 { // 100 headers of 1 KiB: more than a dead letter keeps
		headers = append(headers, &sarama.RecordHeader{Key: fmt.Appendf(nil, "h%d", i), Value: make([]byte, 1024)})
	}
	headers[0].Value = []byte("card " + pan)
	value := []byte(`{"payment_id":"p","card_id":"c","amount":"1","currency":"EUR","timestamp":"` + pan + `"}`)
	out, _, _ := r.h.process(context.Background(), []*sarama.ConsumerMessage{{Topic: "payments", Key: append([]byte(pan), make([]byte, 8000)...), Value: value, Headers: headers}})
	m := out[0]
	size := len(m.Key.(sarama.ByteEncoder)) + len(m.Value.(sarama.ByteEncoder))
	for _, h := range m.Headers {
		size += len(h.Key) + len(h.Value)
		if strings.Contains(string(h.Value), pan) {
			t.Errorf("header %s shows the card number: %s", h.Key, h.Value)
		}
	}
	if strings.Contains(string(m.Key.(sarama.ByteEncoder)), pan) || strings.Contains(string(m.Value.(sarama.ByteEncoder)), pan) {
		t.Error("key or value shows the card number")
	}
	if limit := testConfig().DLQMaxValueBytes + 64<<10; size > limit {
		t.Errorf("dead letter of %d bytes, more than %d", size, limit)
	}
	got := map[string]string{}
	for _, h := range m.Headers {
		got[string(h.Key)] = string(h.Value)
	}
	if got[HeaderErrorKeyTruncated] != "8016" || got[HeaderErrorHeadersDropped] == "" || got[HeaderErrorRedacted] != "card_number" {
		t.Errorf("headers %v", got)
	}
}

// A dead letter the broker refuses for good is replaced by a bare one; the batch is then marked.
func TestRefusedDeadLetterIsSentBare(t *testing.T) {
	r := newRig(t, testConfig())
	r.claim.msgs <- &sarama.ConsumerMessage{Topic: "payments", Offset: 0, Value: []byte("not json")}
	r.claim.msgs <- &sarama.ConsumerMessage{Topic: "payments", Offset: 1, Value: []byte("also not json")}
	r.run()
	a, b := r.prod.next(t), r.prod.next(t)
	r.prod.fail(a, sarama.ErrMessageSizeTooLarge)
	r.prod.ack(b)
	bare := r.prod.next(t)
	if bare.Value != nil || bare.Key != nil {
		t.Errorf("bare dead letter carries key or value: %+v", bare)
	}
	var why string
	for _, h := range bare.Headers {
		if string(h.Key) == HeaderErrorDLQ {
			why = string(h.Value)
		}
	}
	if !strings.Contains(why, "too large") {
		t.Errorf("error.dlq = %q", why)
	}
	r.prod.ack(bare)
	if got := r.nextMark(t); got != 1 {
		t.Fatalf("mark %d, want 1", got)
	}
	close(r.claim.msgs)
	r.wait(t)
}

// When the producer takes no more records, a revoked partition returns within the drain timeout
// (rather than blocking on the producer), marking nothing.
func TestRevokeWhileProducerIsBlocked(t *testing.T) {
	cfg := testConfig()
	cfg.DrainTimeout = 50 * time.Millisecond
	r := newRig(t, cfg)
	r.feed(0, "150")
	r.feed(1, "150")
	r.run()
	first := r.prod.next(t) // the producer takes one record, then stalls
	r.stop()
	r.wait(t)
	if got := r.marks(); len(got) != 0 {
		t.Errorf("marks %v, want none", got)
	}
	r.prod.ack(first)
}

func payments(n int, card, amount string) []*sarama.ConsumerMessage {
	var msgs []*sarama.ConsumerMessage
	for i := range n {
		msgs = append(msgs, &sarama.ConsumerMessage{Topic: "payments", Offset: int64(i), Value: fmt.Appendf(nil,
			`{"payment_id":"p%d","card_id":"%s","amount":"%s","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`, i, card, amount)})
	}
	return msgs
}

func decisions(t *testing.T, out []*sarama.ProducerMessage) []decision.Decision {
	t.Helper()
	var ds []decision.Decision
	for _, m := range out {
		d, err := decision.Unmarshal(m.Value.(sarama.ByteEncoder))
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	return ds
}

func TestVelocityFlagsAndCountsAreInTheDecision(t *testing.T) {
	r := newRig(t, testConfig())
	out, _, ok := r.h.process(context.Background(), payments(12, "c1", "20"))
	ds := decisions(t, out)
	if !ok || len(ds) != 2 {
		t.Fatalf("%d decisions, want the 11th and 12th", len(ds))
	}
	for i, d := range ds {
		if d.PaymentID != fmt.Sprintf("p%d", 10+i) || d.WindowCount == nil || *d.WindowCount != int64(11+i) ||
			len(d.Reasons) != 1 || d.Reasons[0].Code != decision.CodeVelocity {
			t.Errorf("decision %+v", d)
		}
	}
	if calls := r.win.calls.Load(); calls != 1 {
		t.Errorf("%d calls to the windows for one batch", calls)
	}
}

// A try that fails is retried within the budget; the batch then counts as usual. The budget is
// far longer than the first wait, so that a slow machine cannot use it up before the retry.
func TestFailOpenRetriesWithinTheBudget(t *testing.T) {
	cfg := testConfig()
	cfg.StateRetryBudget = time.Minute
	r := newRig(t, cfg)
	r.win.failOnce.Store(true)
	out, _, ok := r.h.process(context.Background(), payments(11, "c1", "5"))
	if n := r.win.calls.Load(); n != 2 {
		t.Errorf("%d tries, want the failed one and its retry", n)
	}
	ds := decisions(t, out)
	if !ok || len(ds) != 1 || len(ds[0].Reasons) != 1 || ds[0].Reasons[0].Code != decision.CodeVelocity ||
		ds[0].WindowCount == nil || *ds[0].WindowCount != 11 || r.p.Degraded() {
		t.Errorf("ok %v, degraded %v, decisions %+v; want the 11th payment flagged with its count", ok, r.p.Degraded(), ds)
	}
}

func TestFailOpenDecidesDegraded(t *testing.T) {
	cfg := testConfig()
	cfg.StateRetryBudget = 300 * time.Millisecond
	r := newRig(t, cfg)
	r.win.down.Store(true)
	out, _, ok := r.h.process(context.Background(), payments(3, "c1", "500"))
	ds := decisions(t, out)
	if !ok || len(ds) != 3 {
		t.Fatalf("ok %v, %d decisions", ok, len(ds))
	}
	for _, d := range ds {
		codes := []string{d.Reasons[0].Code, d.Reasons[1].Code}
		if !slices.Equal(codes, []string{decision.CodeAmount, decision.CodeDegraded}) || d.WindowCount != nil {
			t.Errorf("decision %+v", d)
		}
	}
	// Under the threshold and degraded: not flagged, so nothing is written.
	if out, _, _ := r.h.process(context.Background(), payments(3, "c2", "5")); len(out) != 0 {
		t.Errorf("%d outputs for payments nothing flagged", len(out))
	}
	// While Redis stays down a batch tries once; when it answers again, windows are back.
	calls := r.win.calls.Load()
	r.h.process(context.Background(), payments(1, "c3", "5"))
	if n := r.win.calls.Load() - calls; n != 1 {
		t.Errorf("%d tries while known down, want 1", n)
	}
	r.win.down.Store(false)
	out, _, _ = r.h.process(context.Background(), payments(11, "c4", "5"))
	if ds := decisions(t, out); len(ds) != 1 || ds[0].Reasons[0].Code != decision.CodeVelocity {
		t.Errorf("after recovery: %+v", ds)
	}
}

func TestFailClosedHoldsUntilRedisAnswers(t *testing.T) {
	cfg := testConfig()
	cfg.StateFailurePolicy = pipeline.FailClosed
	r := newRig(t, cfg)
	r.win.down.Store(true)
	r.feed(0, "500")
	r.feed(1, "500")
	r.run()
	// It keeps trying; nothing is produced meanwhile.
	waitUntil(t, "three tries of the windows", func() bool { return r.win.calls.Load() >= 3 })
	r.win.down.Store(false)
	a, b := r.prod.next(t), r.prod.next(t)
	r.prod.ack(a)
	r.prod.ack(b)
	if got := r.nextMark(t); got != 1 {
		t.Fatalf("mark %d", got)
	}
	close(r.claim.msgs)
	r.wait(t)
}

// With fail_closed, a session that ends while Redis is down marks nothing and returns.
func TestFailClosedRevokeMarksNothing(t *testing.T) {
	cfg := testConfig()
	cfg.StateFailurePolicy = pipeline.FailClosed
	r := newRig(t, cfg)
	r.win.down.Store(true)
	r.feed(0, "500")
	r.feed(1, "500")
	r.run()
	waitUntil(t, "two tries of the windows", func() bool { return r.win.calls.Load() >= 2 })
	r.stop()
	r.wait(t)
	if got := r.marks(); len(got) != 0 {
		t.Errorf("marks %v", got)
	}
}
