// Package pipeline is the decision, transport-free: given a batch of decoded payments it runs the
// stages in order (the card state in Redis, the model, the rules) and the policy, and returns a
// decision for each. The stages compute (window counts and aggregates, a fraud probability, which
// rules match); only the policy decides. The stream (internal/detect), the replay and a
// synchronous API call it the same way.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/lists"
	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/rules"
	"github.com/paysentry/fraud-detector/internal/window"
)

// Failure policies for when Redis cannot be reached within the retry budget.
const (
	FailOpen   = "fail_open"   // decide on what is available, with reason degraded_state
	FailClosed = "fail_closed" // hold the batch until Redis answers
)

// Config sets how the card state stage meets a Redis that does not answer.
type Config struct {
	// StateRetryBudget is how long a batch retries Redis before StateFailurePolicy applies.
	StateRetryBudget time.Duration
	// StateFailurePolicy: fail_open decides without the card state and adds degraded_state;
	// fail_closed waits, for as long as it takes, until Redis answers or ctx ends.
	StateFailurePolicy string
	// Features: every valid payment gets its model features in its Decision, even without a
	// model (the replay writes them for training).
	Features bool
	// Shadow is a challenger model (model.shadow_path): it scores the rows the model scores, in
	// one more call a batch, into Decision.ShadowScore; nothing decides on it and the rules do not
	// see it. nil: none.
	Shadow Scorer
}

// Windows is the card state kept in Redis.
type Windows interface {
	// Observe counts events[i] and fills out[i], in one round trip; asked reports whether it
	// asked Redis anything (not when every event is too late or too far ahead).
	Observe(ctx context.Context, events []window.Event, out []window.Result) (asked bool, err error)
	// Note explains a result that is not in its card's state (too late, too far ahead).
	Note(r window.Result) (decision.Reason, bool)
	// Losses says how many times Redis was found to have lost its data, and when last.
	Losses() (int64, time.Time)
}

var _ Windows = (*window.Store)(nil)

// Scorer is the fraud model.
type Scorer interface {
	// Score writes the fraud probability of each of n rows of model.FeatureNames into out, in
	// one call, and says which model version scored them.
	Score(rows []float32, n int, out []float64) (version string, err error)
}

var _ Scorer = (*model.Scorer)(nil)

// Lists gives the lists' contents as they are now.
type Lists interface {
	// Snapshot is the lists as last read.
	Snapshot() *lists.Snapshot
	// Refreshed is when the lists were last read (zero: never).
	Refreshed() time.Time
	// Refresh reads the lists that changed.
	Refresh(ctx context.Context) (bool, error)
}

var _ Lists = (*lists.Store)(nil)

// Decision is the pipeline's answer for one payment: what the stages computed, which rules
// matched, and what the policy made of them.
type Decision struct {
	Verdict
	// Input is what the rules saw: the payment, its card's state and its score. The replay
	// evaluates a candidate rule set on it.
	Input        rules.Input
	WindowCount  *int64   // the card's count in the payment's window; nil if late, ahead or degraded
	Score        *float64 // nil when not scored
	ModelVersion string
	// ShadowScore is the challenger model's probability for the same features (Config.Shadow),
	// and ShadowModelVersion its version: nil and "" when it did not score the payment (none
	// configured, the payment not scored, or the challenger failed on the batch). Never acted on.
	ShadowScore        *float64
	ShadowModelVersion string
	RulesVersion       string // the rule set and the lists' versions the decision was made with
	Hits               []rules.Hit
	// RuleErrors are the rules whose evaluation failed on this payment (they did not match).
	RuleErrors []*rules.Rule
	Features   []float32 // model.FeatureNames, when the model scored it or Config.Features
	degraded   bool
}

// Pipeline decides on batches of payments. It is safe for concurrent use: each partition of the
// stream calls it with its own batches.
type Pipeline struct {
	cfg   Config
	win   Windows // nil: the card state stage is off
	model Scorer  // nil: no model
	lists Lists   // nil: every list is empty
	m     *Metrics
	log   *slog.Logger

	rules      atomic.Pointer[rules.Set]
	version    versionCache
	errLogs    ruleErrorLog
	shadowLogs ruleErrorLog // the challenger's failures, logged once a minute

	stateDown atomic.Bool  // Redis failed on the last try; the change is logged once
	listsDown atomic.Bool  // the lists, never read, could not be read on the last try
	losses    atomic.Int64 // losses of Redis's data logged and counted
}

// New returns a pipeline over the card state win (nil: the stage is off, and without a card's
// state the model scores nothing), the model (nil: none), the rule set and the lists (nil: every
// list is empty), counting in m.
func New(cfg Config, win Windows, scorer Scorer, set *rules.Set, ls Lists, m *Metrics, log *slog.Logger) *Pipeline {
	p := &Pipeline{cfg: cfg, win: win, model: scorer, lists: ls, m: m, log: log}
	p.rules.Store(set)
	m.down.Store(&p.stateDown)
	if ls != nil {
		m.lists.Store(&ls)
	}
	return p
}

// Rules is the rule set in force.
func (p *Pipeline) Rules() *rules.Set { return p.rules.Load() }

// RulesVersion names the rule set in force and the lists' versions as they are now.
func (p *Pipeline) RulesVersion() string {
	return p.version.of(p.rules.Load(), p.snapshot())
}

func (p *Pipeline) snapshot() *lists.Snapshot {
	if p.lists == nil {
		return nil
	}
	return p.lists.Snapshot()
}

// Decide runs the stages and the policy over a batch of valid payments and fills out[i] for
// ps[i]. Each stage runs over the whole batch, so that a stage that needs a round trip (Redis,
// the model) makes one. It fails only when ctx ends before the batch could be decided (with
// fail_closed, while waiting for Redis): then nothing of out is to be used.
func (p *Pipeline) Decide(ctx context.Context, ps []*payment.Payment, out []Decision) error {
	return p.decide(ctx, ps, out, "")
}

// DecideWithoutState decides as Decide does when Redis does not answer under fail_open: without
// the card's state (and so without the model), each decision noting why (degraded_state). It asks
// Redis nothing (the lists as last read; none if never read), so it answers at once. It is for an
// answer that cannot wait for Redis; whether the payments were counted by a call that timed out
// is not known.
func (p *Pipeline) DecideWithoutState(ctx context.Context, ps []*payment.Payment, out []Decision, why string) error {
	return p.decide(ctx, ps, out, why)
}

// decide runs the stages and the policy; with a reason why, the card state stage is left out.
func (p *Pipeline) decide(ctx context.Context, ps []*payment.Payment, out []Decision, why string) error {
	if len(ps) == 0 {
		return nil
	}
	var listsErr error
	switch {
	case why == "":
		listsErr = p.readLists(ctx)
	case p.lists != nil && p.lists.Refreshed().IsZero():
		listsErr = errors.New("not read yet") // without Redis: the lists as last read, none here
	}
	if listsErr != nil && why == "" && (p.cfg.StateFailurePolicy == FailClosed || ctx.Err() != nil) {
		return fmt.Errorf("decide %d payments: lists: %w", len(ps), listsErr)
	}
	set, snap := p.rules.Load(), p.snapshot()
	var ls rules.Lists
	if snap != nil {
		ls = snap
	}
	version := p.version.of(set, snap)
	for i, pm := range ps {
		out[i] = Decision{Input: rules.Input{Payment: pm, Lists: ls}, RulesVersion: version}
		if listsErr != nil {
			out[i].note(decision.CodeDegraded, "decided without the lists, never read from Redis since the start ("+listsErr.Error()+")")
		}
	}
	began := time.Now()
	switch {
	case why != "":
		for i := range out {
			out[i].note(decision.CodeDegraded, "decided without the card's state (and so without the model): "+why)
			out[i].degraded = true
		}
	case !p.windows(ctx, out):
		return fmt.Errorf("decide %d payments: card state: %w", len(ps), context.Cause(ctx))
	default:
		p.m.observe(StageWindow, began)
	}
	p.score(out)
	began = time.Now()
	p.rulesStage(set, out)
	p.m.observe(StageRules, began)
	return nil
}

// Record is the decision as high-risk-payments carries it, for payment pm decided at at.
func (d *Decision) Record(pm *payment.Payment, at time.Time) decision.Decision {
	return decision.Decision{
		PaymentID:          pm.ID,
		CardID:             pm.CardID,
		Flagged:            d.Flagged,
		Action:             d.Action,
		Rule:               d.Rule,
		Score:              d.Score,
		Reasons:            d.Reasons,
		ShadowReasons:      d.Shadow,
		WindowCount:        d.WindowCount,
		ModelVersion:       d.ModelVersion,
		ShadowScore:        d.ShadowScore,
		ShadowModelVersion: d.ShadowModelVersion,
		RulesVersion:       d.RulesVersion,
		DecidedAt:          at,
		Payment:            pm.JSON(),
	}
}

// note adds a stage's note to d's reasons: to the note of that code if d has one already, so that
// each code appears once in a decision.
func (d *Decision) note(code, detail string) {
	for k := range d.Reasons {
		if d.Reasons[k].Code == code {
			d.Reasons[k].Detail += "; " + detail
			return
		}
	}
	d.Reasons = append(d.Reasons, decision.Reason{Code: code, Detail: detail})
}

// rulesStage evaluates set over a batch whose stages have run, and applies the policy.
func (p *Pipeline) rulesStage(set *rules.Set, ds []Decision) {
	for i := range ds {
		d := &ds[i]
		var errs []rules.EvalError
		d.Hits, errs = set.Eval(&d.Input, d.Hits)
		for _, e := range errs {
			d.RuleErrors = append(d.RuleErrors, e.Rule)
			if p.errLogs.due(e.Rule.ID, time.Now()) {
				p.log.Warn("rule failed; it did not match (logged once a minute per rule, counted in fraud_rule_errors_total)",
					"rule", e.Rule.ID, "payment_id", d.Input.Payment.ID, "err", e.Err)
			}
		}
		notes := d.Reasons
		d.Verdict = Apply(d.Hits)
		d.Reasons = append(d.Reasons, notes...)
	}
}

// Verdict is what the policy made of the rules that matched a payment.
type Verdict struct {
	// Action is flag, review or allow, from the active rules that matched; "" when none did.
	Action string
	// Flagged: the payment is high risk (Action is flag).
	Flagged bool
	// Rule is the id of the rule that decided: the first allow rule that matched, else the first
	// flag rule, else the first review rule; "" when none matched.
	Rule string
	// Reasons: one per active flag or review rule that matched, in the file's order, then the
	// stages' notes (late_event, degraded_state), which explain and never flag.
	Reasons []decision.Reason
	// Shadow: one per shadow rule that matched. Shadow rules are evaluated and counted, never acted on.
	Shadow []decision.Reason
}

// Apply is the policy: an active allow rule overrides every flag and review; a flag rule
// overrides review rules. Shadow rules only explain.
func Apply(hits []rules.Hit) Verdict {
	var v Verdict
	var allow, flag, review string
	for _, h := range hits {
		r := decision.Reason{Code: h.Rule.Reason, Detail: h.Detail, Rule: h.Rule.ID}
		if h.Rule.Mode == rules.ModeShadow {
			v.Shadow = append(v.Shadow, r)
			continue
		}
		switch h.Rule.Action {
		case rules.ActionAllow:
			if allow == "" {
				allow = h.Rule.ID
			}
			continue
		case rules.ActionFlag:
			if flag == "" {
				flag = h.Rule.ID
			}
		case rules.ActionReview:
			if review == "" {
				review = h.Rule.ID
			}
		}
		v.Reasons = append(v.Reasons, r)
	}
	switch {
	case allow != "":
		v.Action, v.Rule = rules.ActionAllow, allow
	case flag != "":
		v.Action, v.Rule, v.Flagged = rules.ActionFlag, flag, true
	case review != "":
		v.Action, v.Rule = rules.ActionReview, review
	}
	return v
}

// readLists reads the lists once if they were never read: a payment must not be decided against
// block and allow lists that are empty only because Redis was away when the service started. It
// retries as the card state does: fail_open for up to the retry budget, fail_closed until ctx ends.
// Once read, the lists are refreshed in the background (lists.Store.Run), and a Redis that goes
// away leaves the last lists read in force.
func (p *Pipeline) readLists(ctx context.Context) error {
	if p.lists == nil || !p.lists.Refreshed().IsZero() {
		return nil
	}
	failOpen := p.cfg.StateFailurePolicy != FailClosed
	budget := p.cfg.StateRetryBudget
	wasDown := p.listsDown.Load()
	if failOpen && wasDown { // one short try a batch, as the card state does while Redis is away
		budget = min(budget, max(budget/4, 250*time.Millisecond))
	}
	deadline := time.Now().Add(budget)
	wait := 50 * time.Millisecond
	for {
		try, cancel := context.WithTimeout(ctx, budget)
		_, err := p.lists.Refresh(try)
		cancel()
		if err == nil {
			if p.listsDown.CompareAndSwap(true, false) {
				p.log.Info("lists read from redis; deciding with them")
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.m.RedisErrors.WithLabelValues("lists").Inc()
		if failOpen && (wasDown || time.Now().Add(wait).After(deadline)) {
			if p.listsDown.CompareAndSwap(false, true) {
				p.log.Error("lists not read from redis; deciding without them, with degraded_state (fail_open)", "err", err)
			}
			return err
		}
		if !failOpen && p.listsDown.CompareAndSwap(false, true) {
			p.log.Error("lists not read from redis; holding the partitions until they are (fail_closed)", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		p.m.RedisRetries.WithLabelValues("lists").Inc()
		wait = min(2*wait, 2*time.Second)
	}
}

// ruleErrorLog limits the log lines of rules that fail at run time to one a minute per rule: a
// rule that fails on every payment would otherwise write one line a payment.
type ruleErrorLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (l *ruleErrorLog) due(rule string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last[rule]) < time.Minute {
		return false
	}
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	l.last[rule] = now
	return true
}

// versionCache remembers the last rules_version it computed: a batch's rule set and lists are
// almost always the previous batch's.
type versionCache struct {
	mu    sync.Mutex
	set   *rules.Set
	lists string
	value string
}

// of is the rules_version of set with the lists in snap: the set's version alone while no list
// was ever changed, else with a hash of the lists' versions.
func (c *versionCache) of(set *rules.Set, snap *lists.Snapshot) string {
	lv := ""
	if snap != nil {
		lv = snap.Version()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.set == set && c.lists == lv && c.value != "" {
		return c.value
	}
	v := set.Version()
	if lv != "" {
		v += "+" + lv
	}
	c.set, c.lists, c.value = set, lv, v
	return v
}
