package score

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/pipeline"
)

// The pipeline is a stand-in here: these tests hold the gathering, the budget and the overload;
// e2e/score_test.go holds the endpoint on the real stack.
type fakePipe struct {
	mu      sync.Mutex
	batches []int
	block   chan struct{} // Decide waits for it (or its ctx) when set
}

func (f *fakePipe) Decide(ctx context.Context, ps []*payment.Payment, out []pipeline.Decision) error {
	f.mu.Lock()
	f.batches = append(f.batches, len(ps))
	block := f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i, p := range ps {
		out[i].Rule = p.ID
	}
	return nil
}

func (f *fakePipe) DecideWithoutState(_ context.Context, ps []*payment.Payment, out []pipeline.Decision, why string) error {
	for i, p := range ps {
		out[i] = pipeline.Decision{}
		out[i].Rule = p.ID
		out[i].Reasons = []decision.Reason{{Code: decision.CodeDegraded, Detail: why}}
	}
	return nil
}

func cfg() Config {
	return Config{Timeout: time.Second, Linger: 50 * time.Millisecond, MaxBatch: 500, MaxQueued: 1000, Workers: 2}
}

func start(t *testing.T, c Config, f *fakePipe, policy string) *Scorer {
	t.Helper()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s := New(c, payment.NewDecoder([]byte("a card key of sixteen bytes"), 64<<10), f, policy)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func pay(id string) *payment.Payment { return &payment.Payment{ID: id, CardID: "c-" + id} }

// Requests that come together are decided in one batch, each getting its own decisions.
func TestRequestsShareABatch(t *testing.T) {
	f := &fakePipe{}
	s := start(t, cfg(), f, pipeline.FailOpen)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			ps := []*payment.Payment{pay(fmt.Sprint("a", i)), pay(fmt.Sprint("b", i))}
			out, err := s.Score(context.Background(), ps)
			if err != nil || len(out) != 2 || out[0].Rule != ps[0].ID || out[1].Rule != ps[1].ID {
				t.Errorf("request %d: %+v, %v", i, out, err)
			}
		})
	}
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	for _, n := range f.batches {
		total += n
	}
	if total != 40 || len(f.batches) >= 20 {
		t.Errorf("batches %v: want the 40 payments of 20 requests in fewer batches than requests", f.batches)
	}
}

// Past the budget the answer comes without the card state, in time; fail_closed makes it a flag.
func TestBudgetDegrades(t *testing.T) {
	for _, policy := range []string{pipeline.FailOpen, pipeline.FailClosed} {
		f := &fakePipe{block: make(chan struct{})} // a card state that never answers
		c := cfg()
		c.Timeout, c.Linger = 100*time.Millisecond, 0
		s := start(t, c, f, policy)
		began := time.Now()
		out, err := s.Score(context.Background(), []*payment.Payment{pay("p1")})
		took := time.Since(began)
		if err != nil || len(out) != 1 || len(out[0].Reasons) == 0 || out[0].Reasons[0].Code != decision.CodeDegraded {
			t.Fatalf("%s: %+v, %v", policy, out, err)
		}
		if took > c.Timeout+50*time.Millisecond {
			t.Errorf("%s: answered after %s, the budget is %s", policy, took, c.Timeout)
		}
		if flagged := out[0].Flagged && out[0].Action == "flag"; flagged != (policy == pipeline.FailClosed) {
			t.Errorf("%s: flagged %v", policy, out[0].Flagged)
		}
	}
}

// More payments waiting than max_queued are refused at once, and the slots come back.
func TestOverloadRefuses(t *testing.T) {
	f := &fakePipe{block: make(chan struct{})}
	c := cfg()
	c.MaxBatch, c.MaxQueued, c.Workers, c.Linger = MaxRequest, MaxRequest, 1, 0
	s := start(t, c, f, pipeline.FailOpen)
	errs := make(chan error, 2)
	full := make([]*payment.Payment, MaxRequest)
	for i := range full {
		full[i] = pay(fmt.Sprint("p", i))
	}
	go func() { _, err := s.Score(context.Background(), full); errs <- err }()
	for len(s.slots) < MaxRequest { // until its payments hold every slot
		time.Sleep(time.Millisecond)
	}
	if _, err := s.Score(context.Background(), []*payment.Payment{pay("one more")}); !errors.Is(err, ErrOverloaded) {
		t.Errorf("one more payment: %v, want ErrOverloaded", err)
	}
	close(f.block)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if _, err := s.Score(context.Background(), []*payment.Payment{pay("p4")}); err != nil {
		t.Errorf("after the batch: %v", err)
	}
}

// A request's payment that is not valid is refused with the stream's error code; nothing is
// decided.
func TestInvalidPayment(t *testing.T) {
	f := &fakePipe{}
	s := start(t, cfg(), f, pipeline.FailOpen)
	_, err := s.ScoreJSON(context.Background(), [][]byte{
		[]byte(`{"payment_id":"p1","card_id":"c1","amount":"10.00","currency":"EUR","timestamp":"2026-11-30T10:00:00Z"}`),
		[]byte(`{"payment_id":"p2","card_id":"c1","amount":"-1","currency":"EUR","timestamp":"2026-11-30T10:00:00Z"}`),
	})
	var invalid *InvalidError
	if !errors.As(err, &invalid) || invalid.Index != 1 || invalid.Err.Field != "amount" {
		t.Errorf("%v, want the second payment's amount", err)
	}
	if len(f.batches) != 0 {
		t.Errorf("decided %v", f.batches)
	}
}

// A request still waiting when the scorer stops is answered, not left hanging.
func TestStopAnswersWaiting(t *testing.T) {
	f := &fakePipe{block: make(chan struct{})}
	c := cfg()
	c.Workers, c.Linger, c.MaxBatch = 1, 0, 1
	s := New(c, payment.NewDecoder([]byte("a card key of sixteen bytes"), 64<<10), f, pipeline.FailOpen)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	errs := make(chan error, 2)
	for _, id := range []string{"p1", "p2"} { // p1 decides (blocked), p2 waits for a worker
		go func() { _, err := s.Score(context.Background(), []*payment.Payment{pay(id)}); errs <- err }()
	}
	for len(s.slots) < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	close(f.block) // the batch being decided finishes
	<-done
	for range 2 { // both answered: decided, or ErrStopped if Run ended before taking it
		if err := <-errs; err != nil && !errors.Is(err, ErrStopped) {
			t.Errorf("answer: %v", err)
		}
	}
	if _, err := s.Score(context.Background(), []*payment.Payment{pay("p3")}); !errors.Is(err, ErrStopped) {
		t.Errorf("after the stop: %v, want ErrStopped", err)
	}
}

// A batch holds at most max_batch payments (one request of more is a batch of its own).
func TestBatchesHoldAtMostMaxBatch(t *testing.T) {
	f := &fakePipe{}
	c := cfg()
	c.MaxBatch, c.Linger = 10, 50*time.Millisecond
	s := start(t, c, f, pipeline.FailOpen)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Go(func() {
			ps := []*payment.Payment{pay(fmt.Sprint("a", i)), pay(fmt.Sprint("b", i)), pay(fmt.Sprint("c", i))}
			if _, err := s.Score(context.Background(), ps); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	for _, n := range f.batches {
		total += n
		if n > c.MaxBatch {
			t.Errorf("a batch of %d payments; max_batch is %d", n, c.MaxBatch)
		}
	}
	if total != 36 {
		t.Errorf("%d payments decided, want 36", total)
	}
}
