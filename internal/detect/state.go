package detect

import (
	"context"
	"fmt"
	"time"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/window"
)

// Windows is the per-card state the stream keeps in Redis.
type Windows interface {
	// Observe counts events[i] and fills out[i], in one round trip; asked reports whether it
	// asked Redis anything (not when every event is too late or too far ahead).
	Observe(ctx context.Context, events []window.Event, out []window.Result) (asked bool, err error)
	// Reasons says what a result means for the decision.
	Reasons(r window.Result) []decision.Reason
	// Losses says how many times Redis was found to have lost its data, and when last.
	Losses() (int64, time.Time)
}

var _ Windows = (*window.Store)(nil)

// Failure policies for when Redis cannot be reached within the retry budget.
const (
	FailOpen   = "fail_open"   // decide on what is available, with reason degraded_state
	FailClosed = "fail_closed" // hold the partition until Redis answers
)

// windows runs the window stage over the valid items of a batch. It reports false when the
// batch must not be decided: the policy is fail_closed and the session ended while waiting for
// Redis.
func (h *Handler) windows(ctx context.Context, items []item) bool {
	if h.win == nil {
		return true // the stage is off (stages.windows): no card state
	}
	var events []window.Event
	var idx []int
	for i := range items {
		if items[i].err == nil {
			p := &items[i].p
			events = append(events, window.Event{PaymentID: p.ID, Card: p.CardID, Time: p.Time, Amount: p.Amount,
				Country: p.Country, Merchant: p.MerchantID, Device: p.DeviceID})
			idx = append(idx, i)
		}
	}
	if len(events) == 0 {
		return true
	}
	results := make([]window.Result, len(events))
	err := h.observe(ctx, events, results)
	if err != nil {
		if h.cfg.StateFailurePolicy == FailClosed || ctx.Err() != nil {
			return false
		}
		for _, i := range idx {
			items[i].reasons = append(items[i].reasons, decision.Reason{Code: decision.CodeDegraded,
				Detail: "decided without the card's state (and so without the model): Redis unavailable (" + err.Error() + ")"})
			items[i].degraded = true
		}
		return true
	}
	h.noticeLoss()
	for k, i := range idx {
		r := &results[k]
		items[i].state = r
		if !r.Late && !r.Ahead {
			n := r.Count
			items[i].windowCount = &n
		}
		items[i].reasons = append(items[i].reasons, h.win.Reasons(*r)...)
	}
	return true
}

// observe calls Observe, retrying with backoff: with fail_open for up to the retry budget, with
// fail_closed for as long as it takes or until the session ends. Each try has a deadline, so that
// a Redis that does not answer at all costs no more than the budget. A fail_open batch that starts
// while Redis is known to be down tries once, for a quarter of the budget (at least 250 ms): waiting out the budget
// on every batch would stall the stream that fail_open is meant to keep moving. Only an answer
// from Redis, or a failure to get one, changes the state, which is logged once each way.
func (h *Handler) observe(ctx context.Context, events []window.Event, out []window.Result) error {
	failOpen := h.cfg.StateFailurePolicy != FailClosed
	wasDown := h.stateDown.Load()
	budget := h.cfg.StateRetryBudget
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
		asked, err := h.win.Observe(try, events, out)
		cancel()
		if err == nil {
			if asked && h.stateDown.CompareAndSwap(true, false) {
				h.log.Info("redis answers again; windows back in use")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.m.redisErrors.WithLabelValues("windows").Inc()
		h.log.Debug("window state try failed", "err", err, "down", wasDown)
		if failOpen && (wasDown || time.Now().Add(wait).After(deadline)) {
			if h.stateDown.CompareAndSwap(false, true) {
				h.log.Error("redis unavailable; deciding without windows (fail_open)", "err", err)
			}
			return fmt.Errorf("window state: %w", err)
		}
		if !failOpen && h.stateDown.CompareAndSwap(false, true) {
			h.log.Error("redis unavailable; holding the partitions until it answers (fail_closed)", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		h.m.redisRetries.WithLabelValues("windows").Inc()
		wait = min(2*wait, 2*time.Second)
	}
}

// noticeLoss logs and counts, once each, the losses of Redis's data that the windows found.
func (h *Handler) noticeLoss() {
	n, when := h.win.Losses()
	old := h.losses.Load()
	if n <= old || !h.losses.CompareAndSwap(old, n) {
		return // nothing new, or another partition's batch moved it first (the next batch sees the rest)
	}
	h.m.stateLosses.Add(float64(n - old))
	h.log.Error("redis lost its data: card windows, aggregates and open reviews start again from nothing; "+
		"see the README, \"When Redis loses its data\"", "found_at", when, "losses", n)
}

// StateLost reports when the windows last found that Redis had lost its data (zero: never).
func (h *Handler) StateLost() time.Time {
	if h.win == nil || h.losses.Load() == 0 {
		return time.Time{}
	}
	_, when := h.win.Losses()
	return when
}
