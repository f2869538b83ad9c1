package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/window"
)

// windows runs the card state stage over a batch. It reports false when the batch must not be
// decided: the policy is fail_closed and ctx ended while waiting for Redis.
func (p *Pipeline) windows(ctx context.Context, ds []Decision) bool {
	if p.win == nil {
		return true // the stage is off (stages.windows): no card state
	}
	events := make([]window.Event, len(ds))
	for i := range ds {
		pm := ds[i].Input.Payment
		events[i] = window.Event{PaymentID: pm.ID, Card: pm.CardID, Time: pm.Time, Amount: pm.Amount,
			Country: pm.Country, Merchant: pm.MerchantID, Device: pm.DeviceID}
	}
	results := make([]window.Result, len(events))
	if err := p.observe(ctx, events, results); err != nil {
		if p.cfg.StateFailurePolicy == FailClosed || ctx.Err() != nil {
			return false
		}
		for i := range ds {
			ds[i].note(decision.CodeDegraded, "decided without the card's state (and so without the model): Redis unavailable ("+err.Error()+")")
			ds[i].degraded = true
		}
		return true
	}
	p.noticeLoss()
	for i := range ds {
		r := &results[i]
		ds[i].Input.State = r
		if !r.Late && !r.Ahead {
			n := r.Count
			ds[i].WindowCount = &n
		} else if n, ok := p.win.Note(*r); ok {
			ds[i].note(n.Code, n.Detail)
		}
	}
	return true
}

// observe calls Observe, retrying with backoff: with fail_open for up to the retry budget, with
// fail_closed for as long as it takes or until ctx ends. Each try has a deadline, so that a Redis
// that does not answer at all costs no more than the budget. A fail_open batch that starts while
// Redis is known to be down tries once, for a quarter of the budget (at least 250 ms): waiting out
// the budget on every batch would stall the stream that fail_open is meant to keep moving. Only
// an answer from Redis, or a failure to get one, changes the state, which is logged once each way.
func (p *Pipeline) observe(ctx context.Context, events []window.Event, out []window.Result) error {
	failOpen := p.cfg.StateFailurePolicy != FailClosed
	wasDown := p.stateDown.Load()
	budget := p.cfg.StateRetryBudget
	deadline := time.Now().Add(budget)
	if failOpen && wasDown {
		// Enough for a dial, a script load and a batch on a busy machine; no more than the budget.
		deadline = time.Now().Add(min(budget, max(budget/4, 250*time.Millisecond)))
	}
	wait := 50 * time.Millisecond
	for {
		if !failOpen {
			deadline = time.Now().Add(budget) // every try of fail_closed gets the budget
		}
		try, cancel := context.WithDeadline(ctx, deadline)
		asked, err := p.win.Observe(try, events, out)
		cancel()
		if err == nil {
			if asked && p.stateDown.CompareAndSwap(true, false) {
				p.log.Info("redis answers again; windows back in use")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.m.RedisErrors.WithLabelValues("windows").Inc()
		p.log.Debug("window state try failed", "err", err, "down", wasDown)
		if failOpen && (wasDown || time.Now().Add(wait).After(deadline)) {
			if p.stateDown.CompareAndSwap(false, true) {
				p.log.Error("redis unavailable; deciding without windows (fail_open)", "err", err)
			}
			return fmt.Errorf("window state: %w", err)
		}
		if !failOpen && p.stateDown.CompareAndSwap(false, true) {
			p.log.Error("redis unavailable; holding the partitions until it answers (fail_closed)", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		p.m.RedisRetries.WithLabelValues("windows").Inc()
		wait = min(2*wait, 2*time.Second)
	}
}

// noticeLoss logs and counts, once each, the losses of Redis's data that the windows found.
func (p *Pipeline) noticeLoss() {
	n, when := p.win.Losses()
	old := p.losses.Load()
	if n <= old || !p.losses.CompareAndSwap(old, n) {
		return // nothing new, or another partition's batch moved it first (the next batch sees the rest)
	}
	p.m.stateLosses.Add(float64(n - old))
	p.log.Error("redis lost its data: card windows, aggregates and open reviews start again from nothing; "+
		"see the README, \"When Redis loses its data\"", "found_at", when, "losses", n)
}

// Degraded reports whether Redis failed the last try of the card state stage.
func (p *Pipeline) Degraded() bool { return p.stateDown.Load() }

// StateAnswered tells the pipeline that Redis answered something else (a readiness probe), so
// that an idle stream does not stay degraded until its next payment.
func (p *Pipeline) StateAnswered() {
	if p.stateDown.CompareAndSwap(true, false) {
		p.log.Info("redis answers again; windows back in use")
	}
}

// StateLost reports when the windows last found that Redis had lost its data (zero: never).
func (p *Pipeline) StateLost() time.Time {
	if p.win == nil || p.losses.Load() == 0 {
		return time.Time{}
	}
	_, when := p.win.Losses()
	return when
}
