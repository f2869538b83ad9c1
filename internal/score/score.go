// Package score decides payments while the caller waits (POST /v1/score): the same pipeline as
// the stream, so that one rule set and one model answer both ways, and the same card state, so
// that a payment scored here and later read from the topic is counted once (the card state knows
// it by payment_id) and decided the same. An answer given without the card state (past the
// budget) is the exception: the stream decides that payment again, with the card state.
//
// Requests that arrive together are gathered into one batch of the pipeline, so that they share
// one Redis round trip and one model run: the first request of a batch waits at most
// Config.Linger for others. Each request has a budget (Config.Timeout): a batch the card state
// cannot answer within its earliest request's budget is decided without the card state, as the
// stream does under fail_open, and says degraded_state; under fail_closed such a decision is a
// flag. More payments waiting than Config.MaxQueued are refused (ErrOverloaded) rather than
// queued.
package score

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/pipeline"
)

// Config sets the endpoint.
type Config struct {
	// Timeout is a request's budget: past it, the answer is decided without the card state.
	Timeout time.Duration `yaml:"timeout" env:"TIMEOUT"`
	// Linger is how long a batch's first request waits for others.
	Linger time.Duration `yaml:"linger" env:"LINGER"`
	// MaxBatch bounds the payments of one batch of the pipeline.
	MaxBatch int `yaml:"max_batch" env:"MAX_BATCH"`
	// MaxQueued bounds the payments waiting for a batch; past it, requests get 503.
	MaxQueued int `yaml:"max_queued" env:"MAX_QUEUED"`
	// Workers is how many batches are decided at once.
	Workers int `yaml:"workers" env:"WORKERS"`
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	switch {
	case c.Timeout < time.Millisecond || c.Timeout > 10*time.Second:
		return fmt.Errorf("score.timeout: must be from 1ms to 10s, got %s", c.Timeout)
	case c.Linger < 0 || c.Linger > c.Timeout/2:
		return fmt.Errorf("score.linger: must be from 0 to half of score.timeout, got %s", c.Linger)
	case c.MaxBatch < 1 || c.MaxBatch > 5000:
		return fmt.Errorf("score.max_batch: must be from 1 to 5000, got %d", c.MaxBatch)
	case c.MaxQueued < max(c.MaxBatch, MaxRequest):
		return fmt.Errorf("score.max_queued: must be at least score.max_batch and %d (a batch request's payments), got %d", MaxRequest, c.MaxQueued)
	case c.Workers < 1 || c.Workers > 64:
		return fmt.Errorf("score.workers: must be from 1 to 64, got %d", c.Workers)
	}
	return nil
}

// MaxRequest is the most payments one request may hold (POST /v1/score:batch).
const MaxRequest = 500

// ErrOverloaded: more payments wait than Config.MaxQueued; try again shortly.
var ErrOverloaded = errors.New("too many payments waiting to be scored")

// Decider is the pipeline.
type Decider interface {
	Decide(ctx context.Context, ps []*payment.Payment, out []pipeline.Decision) error
	DecideWithoutState(ctx context.Context, ps []*payment.Payment, out []pipeline.Decision, why string) error
}

var _ Decider = (*pipeline.Pipeline)(nil)

// Scorer gathers requests into batches of the pipeline.
type Scorer struct {
	cfg        Config
	dec        *payment.Decoder
	pipe       Decider
	failClosed bool
	queue      chan *request
	slots      chan struct{} // payments that may wait: MaxQueued of them
	stopped    chan struct{} // closed when Run returns
}

// ErrStopped: the scorer is stopping (the service shuts down); nothing more is decided.
var ErrStopped = errors.New("the scorer is stopping")

// request is one caller's payments and where its answer goes.
type request struct {
	ps       []*payment.Payment
	deadline time.Time
	out      []pipeline.Decision
	done     chan error
}

// New returns a scorer over pipe, decoding payments with dec as the stream does; policy is the
// stream's state failure policy.
func New(cfg Config, dec *payment.Decoder, pipe Decider, policy string) *Scorer {
	return &Scorer{cfg: cfg, dec: dec, pipe: pipe, failClosed: policy == pipeline.FailClosed,
		queue: make(chan *request, cfg.MaxQueued), slots: make(chan struct{}, cfg.MaxQueued), stopped: make(chan struct{})}
}

// Score decides ps, waiting for the batch it joins: within Config.Timeout of the call, as the
// stream would with the card state, or without it (degraded_state). It returns ErrOverloaded at
// once when too many payments wait.
func (s *Scorer) Score(ctx context.Context, ps []*payment.Payment) ([]pipeline.Decision, error) {
	for i := range ps {
		select {
		case s.slots <- struct{}{}:
		default:
			for range i {
				<-s.slots
			}
			return nil, ErrOverloaded
		}
	}
	r := &request{ps: ps, deadline: time.Now().Add(s.cfg.Timeout), out: make([]pipeline.Decision, len(ps)), done: make(chan error, 1)}
	s.queue <- r // never blocks: the slots bound what is queued
	select {
	case err := <-r.done:
		return r.out, err
	case <-ctx.Done():
		return nil, ctx.Err() // the batch still decides it: counted once, as a redelivery would be
	case <-s.stopped:
		select {
		case err := <-r.done: // decided as Run ended
			return r.out, err
		default:
			return nil, ErrStopped // not taken into a batch before Run ended
		}
	}
}

// InvalidError is a request's first payment that is not valid.
type InvalidError struct {
	Index int            // its place in the request
	Err   *payment.Error // why, as the dead-letter topic would say
}

func (e *InvalidError) Error() string { return fmt.Sprintf("payment %d: %v", e.Index, e.Err) }

// ScoreJSON decodes payments as the stream does and decides them, and returns each decision as
// high-risk-payments would carry it (also when not flagged). A payment that is not valid fails
// the request (*InvalidError), and nothing is decided.
func (s *Scorer) ScoreJSON(ctx context.Context, raws [][]byte) ([]decision.Decision, error) {
	ps := make([]*payment.Payment, len(raws))
	for i, b := range raws {
		p, err := s.dec.Decode(b)
		if err != nil {
			var pe *payment.Error
			if !errors.As(err, &pe) {
				pe = &payment.Error{Code: payment.CodeInvalidJSON, Msg: err.Error()}
			}
			return nil, &InvalidError{Index: i, Err: pe}
		}
		ps[i] = &p
	}
	out, err := s.Score(ctx, ps)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	ds := make([]decision.Decision, len(ps))
	for i := range ps {
		ds[i] = out[i].Record(ps[i], now)
	}
	return ds, nil
}

// Run gathers and decides batches until ctx ends, and then waits for the batches being decided;
// requests not yet in a batch get ErrStopped.
func (s *Scorer) Run(ctx context.Context) error {
	workers := make(chan struct{}, s.cfg.Workers)
	defer func() {
		for range s.cfg.Workers { // the batches being decided answer first
			workers <- struct{}{}
		}
		close(s.stopped)
	}()
	var held *request // taken, but too many for the batch it came to: the next one's first
	for {
		first := held
		if first == nil {
			select {
			case <-ctx.Done():
				return nil
			case first = <-s.queue:
			}
		}
		held = nil
		batch, n := []*request{first}, len(first.ps)
		linger := time.NewTimer(s.cfg.Linger)
	gather:
		for n < s.cfg.MaxBatch {
			select {
			case r := <-s.queue:
				if n+len(r.ps) > s.cfg.MaxBatch {
					held = r
					break gather
				}
				batch, n = append(batch, r), n+len(r.ps)
			case <-linger.C:
				break gather
			}
		}
		linger.Stop()
		workers <- struct{}{}
		go func() {
			defer func() { <-workers }()
			s.decide(batch, n)
		}()
	}
}

// answerMargin is the part of a request's budget kept for deciding without the card state and
// answering, should the card state not answer in time.
const answerMargin = 5 * time.Millisecond

// decide decides a batch and answers its requests.
func (s *Scorer) decide(batch []*request, n int) {
	ps := make([]*payment.Payment, 0, n)
	deadline := batch[0].deadline
	for _, r := range batch {
		ps = append(ps, r.ps...)
		if r.deadline.Before(deadline) {
			deadline = r.deadline
		}
	}
	out := make([]pipeline.Decision, n)
	ctx, cancel := context.WithDeadline(context.Background(), deadline.Add(-min(answerMargin, s.cfg.Timeout/4)))
	err := s.pipe.Decide(ctx, ps, out)
	cancel()
	if err != nil {
		// Without Redis at all: DecideWithoutState asks it nothing, so this answers at once.
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err = s.pipe.DecideWithoutState(ctx, ps, out, "Redis did not answer within score.timeout")
		cancel()
		if err == nil && s.failClosed {
			for i := range out {
				flag(&out[i])
			}
		}
	}
	k := 0
	for _, r := range batch {
		k += copy(r.out, out[k:k+len(r.ps)])
		for range r.ps {
			<-s.slots
		}
		r.done <- err
	}
}

// flag makes a decision taken without the card state a flag, as fail_closed asks: the payment is
// not let through on what could not be checked.
func flag(d *pipeline.Decision) {
	if d.Flagged || d.Action == "allow" {
		return
	}
	d.Flagged, d.Action = true, "flag"
	if d.Rule == "" {
		d.Rule = decision.CodeDegraded
	}
}
