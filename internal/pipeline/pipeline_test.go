package pipeline

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/lists"
	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/rules"
	"github.com/paysentry/fraud-detector/internal/window"
)

const rulesFile = "../../configs/rules.yaml"

// defaultRules is the rules file the service ships.
func defaultRules(t testing.TB) *rules.Set {
	t.Helper()
	set, err := rules.Load(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func compile(t testing.TB, src string) *rules.Set {
	t.Helper()
	set, err := rules.Compile("test.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return set
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// lateWindows counts every payment once, and says every payment whose id starts with "late"
// came too late to count.
type lateWindows struct{}

func (lateWindows) Observe(_ context.Context, events []window.Event, out []window.Result) (bool, error) {
	for i, e := range events {
		out[i] = window.Result{Window: e.Time.Truncate(time.Hour), Count: 1, Late: strings.HasPrefix(e.PaymentID, "late")}
		if out[i].Late {
			out[i].Count = 0
		}
	}
	return true, nil
}

func (lateWindows) Note(r window.Result) (decision.Reason, bool) {
	if r.Late {
		return decision.Reason{Code: decision.CodeLate, Detail: "too late to count"}, true
	}
	return decision.Reason{}, false
}

func (lateWindows) Losses() (int64, time.Time) { return 0, time.Time{} }

// countingWindows counts a card's payments in one window, as many as it is given.
type countingWindows struct{ counts map[string]int64 }

func (w *countingWindows) Observe(_ context.Context, events []window.Event, out []window.Result) (bool, error) {
	for i, e := range events {
		w.counts[e.Card]++
		out[i] = window.Result{Window: e.Time.Truncate(time.Hour), Count: w.counts[e.Card]}
	}
	return true, nil
}

func (*countingWindows) Note(window.Result) (decision.Reason, bool) { return decision.Reason{}, false }
func (*countingWindows) Losses() (int64, time.Time)                 { return 0, time.Time{} }

// fixedScorer scores every row with score and keeps how many rows each call had.
type fixedScorer struct {
	score float64
	calls []int
}

func (s *fixedScorer) Score(rows []float32, n int, out []float64) (string, error) {
	s.calls = append(s.calls, n)
	if len(rows) != n*len(model.FeatureNames) {
		panic("rows do not match n")
	}
	for i := range n {
		out[i] = s.score
	}
	return "v-test", nil
}

var dec = payment.NewDecoder([]byte("test-key-0123456789"), 64<<10)

func payments(t testing.TB, lines ...string) []*payment.Payment {
	t.Helper()
	var ps []*payment.Payment
	for _, l := range lines {
		p, err := dec.Decode([]byte(l))
		if err != nil {
			t.Fatalf("%s: %v", l, err)
		}
		ps = append(ps, &p)
	}
	return ps
}

func pay(id, card, amount string) string {
	return `{"payment_id":"` + id + `","card_id":"` + card + `","amount":"` + amount + `","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`
}

func decide(t testing.TB, p *Pipeline, ps []*payment.Payment) []Decision {
	t.Helper()
	out := make([]Decision, len(ps))
	if err := p.Decide(context.Background(), ps, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func codes(rs []decision.Reason) (c []string) {
	for _, r := range rs {
		c = append(c, r.Code)
	}
	return c
}

// The default rules are the seed's three detectors: an amount over 100, an 11th payment in a
// card's hour, a score over 0.5; each decision names the rule that decided it.
func TestDefaultRulesAreTheSeed(t *testing.T) {
	w := &countingWindows{counts: map[string]int64{}}
	sc := &fixedScorer{score: 0.2}
	p := New(Config{StateRetryBudget: time.Second}, w, sc, defaultRules(t), nil, NewMetrics(prometheus.NewRegistry()), discard)
	var lines []string
	for i := range 11 {
		lines = append(lines, pay("v"+string(rune('a'+i)), "busy", "5"))
	}
	lines = append(lines, pay("big", "c2", "100.01"), pay("edge", "c3", "100.00"))
	out := decide(t, p, payments(t, lines...))
	for i := range 10 {
		if out[i].Flagged || out[i].Action != "" || len(out[i].Reasons) != 0 {
			t.Errorf("payment %d of the hour: %+v", i+1, out[i].Verdict)
		}
	}
	if v := out[10].Verdict; !v.Flagged || v.Rule != "card_velocity_1h" || !slices.Equal(codes(v.Reasons), []string{decision.CodeVelocity}) ||
		*out[10].WindowCount != 11 {
		t.Errorf("11th payment: %+v", v)
	}
	if v := out[11].Verdict; !v.Flagged || v.Rule != "amount_over_threshold" || v.Reasons[0].Rule != "amount_over_threshold" ||
		!strings.Contains(v.Reasons[0].Detail, "100.01 EUR") {
		t.Errorf("100.01: %+v", v)
	}
	if out[12].Flagged {
		t.Errorf("100.00 flagged: %+v", out[12].Verdict)
	}
	sc.score = 0.51
	if v := decide(t, p, payments(t, pay("risky", "c4", "5")))[0]; !v.Flagged || v.Rule != "model_score" || *v.Score != 0.51 || v.ModelVersion != "v-test" {
		t.Errorf("score 0.51: %+v", v)
	}
}

// One model call a batch, for the payments with their card's state only; every payment gets its
// features with Config.Features, the others a reason saying they were not scored, in the one
// late_event reason the windows gave them.
func TestModelScoresPaymentsWithTheirState(t *testing.T) {
	sc := &fixedScorer{score: 0.9}
	p := New(Config{StateRetryBudget: time.Second, Features: true}, lateWindows{}, sc, defaultRules(t), nil, NewMetrics(prometheus.NewRegistry()), discard)
	out := decide(t, p, payments(t, pay("ok", "c1", "10"), pay("late-1", "c2", "10")))
	if !slices.Equal(sc.calls, []int{1}) {
		t.Errorf("model calls %v, want one of 1 row", sc.calls)
	}
	if o := out[0]; o.Score == nil || *o.Score != 0.9 || !o.Flagged || !slices.Equal(codes(o.Reasons), []string{decision.CodeModel}) {
		t.Errorf("scored payment: %+v", o)
	}
	if o := out[1]; o.Score != nil || o.Flagged || !slices.Equal(codes(o.Reasons), []string{decision.CodeLate}) ||
		!strings.Contains(o.Reasons[0].Detail, "not scored by the model") || len(o.Features) != len(model.FeatureNames) {
		t.Errorf("late payment: %+v", o)
	}
}

// With the card state stage off (stages.windows: false) the pipeline asks Redis nothing:
// decisions have no window count and no model score, and no reason claims the payment came late.
func TestWindowsStageOff(t *testing.T) {
	sc := &fixedScorer{score: 0.9}
	p := New(Config{StateRetryBudget: time.Second, StateFailurePolicy: FailOpen}, nil, sc, defaultRules(t), nil, NewMetrics(prometheus.NewRegistry()), discard)
	out := decide(t, p, payments(t, pay("small", "c1", "10"), pay("large", "c1", "100.01")))
	if len(sc.calls) != 0 {
		t.Errorf("model called %v without the card's state", sc.calls)
	}
	if o := out[0]; o.Flagged || len(o.Reasons) != 0 || o.WindowCount != nil || o.Score != nil {
		t.Errorf("small payment: %+v", o)
	}
	if o := out[1]; !o.Flagged || len(o.Reasons) != 1 || o.Reasons[0].Code != decision.CodeAmount || o.WindowCount != nil {
		t.Errorf("large payment: %+v", o)
	}
	if !p.StateLost().IsZero() || p.Degraded() {
		t.Error("state reported lost or degraded with the stage off")
	}
}

// The policy: an active allow rule overrides every flag and review, a flag rule overrides review
// rules, and shadow rules are listed but never act.
func TestPolicy(t *testing.T) {
	set := compile(t, `
rules:
  - {id: big, description: big, expression: payment.amount > 100, action: flag}
  - {id: odd_channel, description: odd, expression: payment.channel == "moto", action: review}
  - {id: trusted, description: trusted, expression: payment.merchant_id == "m-trusted", action: allow}
  - {id: candidate, description: a rule on trial, expression: payment.amount > 50, action: flag, mode: shadow}
`)
	p := New(Config{}, nil, nil, set, nil, NewMetrics(prometheus.NewRegistry()), discard)
	out := decide(t, p, payments(t,
		`{"payment_id":"a","card_id":"c","amount":"60","currency":"EUR","timestamp":"2026-03-01T10:00:00Z"}`,
		`{"payment_id":"b","card_id":"c","amount":"60","currency":"EUR","timestamp":"2026-03-01T10:00:00Z","channel":"moto"}`,
		`{"payment_id":"c","card_id":"c","amount":"160","currency":"EUR","timestamp":"2026-03-01T10:00:00Z","channel":"moto"}`,
		`{"payment_id":"d","card_id":"c","amount":"160","currency":"EUR","timestamp":"2026-03-01T10:00:00Z","merchant_id":"m-trusted"}`,
	))
	want := []struct {
		action, rule string
		flagged      bool
		reasons      []string
	}{
		{"", "", false, nil},
		{"review", "odd_channel", false, []string{"odd_channel"}},
		{"flag", "big", true, []string{"big", "odd_channel"}},
		{"allow", "trusted", false, []string{"big"}},
	}
	for i, w := range want {
		v := out[i].Verdict
		if v.Action != w.action || v.Rule != w.rule || v.Flagged != w.flagged || !slices.Equal(codes(v.Reasons), w.reasons) {
			t.Errorf("payment %d: %+v, want %+v", i, v, w)
		}
		if len(v.Shadow) != 1 || v.Shadow[0].Rule != "candidate" {
			t.Errorf("payment %d: shadow %+v, want the candidate rule", i, v.Shadow)
		}
	}
}

// A changed rules file is in force from the next batch; one with an error changes nothing and
// says which rule is wrong.
func TestReloadRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - {id: big, description: big, expression: payment.amount > 100, action: flag}\n")
	set, err := rules.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(prometheus.NewRegistry())
	p := New(Config{}, nil, nil, set, nil, m, discard)
	ps := payments(t, pay("a", "c", "60"))
	if decide(t, p, ps)[0].Flagged {
		t.Fatal("60 flagged by amount > 100")
	}
	write("rules:\n  - {id: big, description: big, expression: payment.amount > 50, action: flag}\n")
	var told *rules.Set
	if changed, err := p.ReloadRules(path, func(s *rules.Set) { told = s }); !changed || err != nil || told != p.Rules() {
		t.Fatalf("reload: %v, %v", changed, err)
	}
	if d := decide(t, p, ps)[0]; !d.Flagged || d.RulesVersion != p.Rules().Version() || d.RulesVersion == set.Version() {
		t.Errorf("after the reload: %+v", d)
	}
	write("rules:\n  - {id: big, description: big, expression: payment.amount > \"50\", action: flag}\n")
	changed, err := p.ReloadRules(path, nil)
	if changed || err == nil || !strings.Contains(err.Error(), "big") {
		t.Errorf("a rule with a type error: %v, %v; want refused, naming the rule", changed, err)
	}
	if !decide(t, p, ps)[0].Flagged {
		t.Error("the running rules did not stay after a refused file")
	}
	if got := testutil.ToFloat64(m.reloads.WithLabelValues("error")); got != 1 {
		t.Errorf("fraud_rules_reloads_total{result=\"error\"} %v, want 1", got)
	}
}

// fraud_degraded follows the pipeline's state flag, whoever changes it.
func TestDegradedFollowsTheState(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := New(Config{}, lateWindows{}, nil, defaultRules(t), nil, NewMetrics(reg), discard)
	degraded := func() float64 {
		n, err := testutil.GatherAndCount(reg, "fraud_degraded")
		if err != nil || n != 1 {
			t.Fatalf("fraud_degraded: %d series, %v", n, err)
		}
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "fraud_degraded" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	if got := degraded(); got != 0 {
		t.Fatalf("fraud_degraded %v at start", got)
	}
	p.stateDown.Store(true)
	if got := degraded(); got != 1 {
		t.Errorf("fraud_degraded %v while down, want 1", got)
	}
	p.StateAnswered()
	if got := degraded(); got != 0 || p.Degraded() {
		t.Errorf("fraud_degraded %v after redis answered, want 0", got)
	}
}

// The backtest counts each rule's hits by label and what the candidate changes, on the decisions
// the current set made.
func TestBacktest(t *testing.T) {
	cur := compile(t, "rules:\n  - {id: big, description: big, expression: payment.amount > 100, action: flag}\n")
	cand := compile(t, `rules:
  - {id: big, description: big, expression: payment.amount > 50, action: flag}
  - {id: tiny, description: tiny, expression: payment.amount < 2, action: review}
`)
	p := New(Config{}, nil, nil, cur, nil, NewMetrics(prometheus.NewRegistry()), discard)
	out := decide(t, p, payments(t, pay("a", "c", "150"), pay("b", "c", "60"), pay("c", "c", "1"), pay("d", "c", "60")))
	bt := NewBacktest(cur, "cur.yaml", cand, "cand.yaml")
	for i, label := range []string{"fraud", "fraud", "legitimate", "legitimate"} {
		bt.Add(label, &out[i])
	}
	var b strings.Builder
	bt.Report(&b)
	fields := func(prefix string) string {
		for _, l := range strings.Split(b.String(), "\n") {
			if f := strings.Fields(l); len(f) > 0 && strings.Join(f[:min(len(f), 2)], " ") == prefix {
				return strings.Join(f, " ")
			}
		}
		return ""
	}
	for prefix, want := range map[string]string{
		"big current*":   "big current* active flag 1 1 0 100.0% 50.0%",
		"big candidate*": "big candidate* active flag 3 2 1 66.7% 100.0%",
		"tiny candidate": "tiny candidate active review 1 0 1 0.0% 0.0%",
		"newly flagged":  "newly flagged 2 1 1 - - - -",
		"no longer":      "no longer flagged 0 0 0 - - - -",
		"candidate 3":    "candidate 3 2 1 66.7% 100.0% 1 0",
		"current 1":      "current 1 1 0 100.0% 50.0% 0 0",
		"backtest: 4":    "backtest: 4 payments, 2 labelled fraud",
	} {
		if got := fields(prefix); got != want {
			t.Errorf("%q: got %q, want %q\n%s", prefix, got, want, b.String())
		}
	}
}

// fakeLists are lists whose Refresh fails while err is set.
type fakeLists struct {
	mu        sync.Mutex
	err       error
	refreshed time.Time
	tries     int
}

func (l *fakeLists) Snapshot() *lists.Snapshot { return nil }

func (l *fakeLists) Refreshed() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.refreshed
}

func (l *fakeLists) Refresh(context.Context) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tries++
	if l.err != nil {
		return false, l.err
	}
	l.refreshed = time.Now()
	return true, nil
}

func (l *fakeLists) set(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.err = err
}

// Lists that were never read are waited for as the card state is: fail_open decides without
// them, with degraded_state, trying once a batch while Redis stays away; fail_closed holds.
func TestListsNeverReadAreWaitedFor(t *testing.T) {
	ls := &fakeLists{err: errors.New("connection refused")}
	reg := prometheus.NewRegistry()
	p := New(Config{StateRetryBudget: 300 * time.Millisecond, StateFailurePolicy: FailOpen}, nil, nil, defaultRules(t), ls, NewMetrics(reg), discard)
	out := decide(t, p, payments(t, pay("a", "c", "5")))
	if !slices.Equal(codes(out[0].Reasons), []string{decision.CodeDegraded}) || !strings.Contains(out[0].Reasons[0].Detail, "without the lists") {
		t.Errorf("fail_open without lists: %+v", out[0].Verdict)
	}
	before := ls.tries
	decide(t, p, payments(t, pay("b", "c", "5")))
	if n := ls.tries - before; n != 1 {
		t.Errorf("%d tries while the lists stay unread, want 1", n)
	}
	ls.set(nil)
	if out := decide(t, p, payments(t, pay("c", "c", "5"))); len(out[0].Reasons) != 0 {
		t.Errorf("with the lists read: %+v", out[0].Verdict)
	}

	closed := &fakeLists{err: errors.New("connection refused")}
	p = New(Config{StateRetryBudget: 50 * time.Millisecond, StateFailurePolicy: FailClosed}, nil, nil, defaultRules(t), closed, NewMetrics(prometheus.NewRegistry()), discard)
	done := make(chan error, 1)
	ps, ds := payments(t, pay("d", "c", "5")), make([]Decision, 1)
	go func() { done <- p.Decide(context.Background(), ps, ds) }()
	waitFor(t, "three tries of the lists", func() bool { closed.mu.Lock(); defer closed.mu.Unlock(); return closed.tries >= 3 })
	select {
	case err := <-done:
		t.Fatalf("fail_closed decided without the lists: %v", err)
	default:
	}
	closed.set(nil)
	select {
	case err := <-done:
		if err != nil || len(ds[0].Reasons) != 0 {
			t.Errorf("once the lists were read: %v, %+v", err, ds[0].Verdict)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("not decided within 30 s of the lists being readable")
	}
}

// waitFor polls cond until it holds, and fails the test if it does not within 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within 30 s: %s", what)
		}
	}
}

// The file watch uses a change once two checks read it the same, so that a file being written in
// place is not used half written; SIGHUP uses it at once.
func TestWatchRulesWaitsForAStableFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rule := func(limit string) string {
		return "rules:\n  - {id: big, description: big, expression: payment.amount > " + limit + ", action: flag}\n"
	}
	write(rule("100"))
	set, err := rules.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p := New(Config{}, nil, nil, set, nil, NewMetrics(prometheus.NewRegistry()), discard)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tick, hup, checked := make(chan time.Time), make(chan os.Signal), make(chan struct{})
	changed := make(chan string, 4)
	done := make(chan error, 1)
	go func() {
		done <- p.watchRules(ctx, path, tick, hup, func(s *rules.Set) { changed <- s.Version() }, checked)
	}()
	check := func() { tick <- time.Now(); <-checked } // returns once the check is done
	check()                                           // the file as it started, read twice: compiled, the same set, nothing told
	check()
	write(rule("50"))
	check()
	check()
	if v := <-changed; v != compile(t, rule("50")).Version() || p.Rules().Version() != v {
		t.Fatalf("after two reads: %s in force, told %s", p.Rules().Version(), v)
	}
	// A file that changes between every two checks is never used, until it stops changing.
	for _, limit := range []string{"60", "70", "80"} {
		write(rule(limit))
		check()
	}
	check()
	if v := <-changed; v != compile(t, rule("80")).Version() {
		t.Fatalf("a file changing at every check: told %s, want the version of the last, read twice", v)
	}
	write(rule("95"))
	hup <- syscall.SIGHUP
	<-checked
	if v := <-changed; v != compile(t, rule("95")).Version() || p.Rules().Version() != v {
		t.Fatalf("SIGHUP: %s in force, told %s", p.Rules().Version(), v)
	}
	if d := decide(t, p, payments(t, pay("a", "c", "90"))); d[0].Flagged {
		t.Errorf("90 flagged after the file said > 95: %+v", d[0].Verdict)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// downWindows is a Redis that does not answer.
type downWindows struct{}

func (downWindows) Observe(context.Context, []window.Event, []window.Result) (bool, error) {
	return true, errors.New("connection refused")
}
func (downWindows) Note(window.Result) (decision.Reason, bool) { return decision.Reason{}, false }
func (downWindows) Losses() (int64, time.Time)                 { return 0, time.Time{} }

// Redis away at the start, fail_open: decided without the lists and without the card's state, in
// one degraded_state reason that says both (a decision gives each reason once).
func TestDegradedOnce(t *testing.T) {
	ls := &fakeLists{err: errors.New("connection refused")}
	p := New(Config{StateRetryBudget: 100 * time.Millisecond, StateFailurePolicy: FailOpen}, downWindows{}, nil, defaultRules(t), ls,
		NewMetrics(prometheus.NewRegistry()), discard)
	d := decide(t, p, payments(t, pay("a", "c", "500")))[0]
	if !slices.Equal(codes(d.Reasons), []string{decision.CodeAmount, decision.CodeDegraded}) ||
		!strings.Contains(d.Reasons[1].Detail, "without the lists") || !strings.Contains(d.Reasons[1].Detail, "without the card's state") {
		t.Errorf("reasons %+v, want the amount and one degraded_state naming the lists and the card's state", d.Reasons)
	}
}

// Deciding without the state asks Redis nothing, under either policy: lists never read are noted,
// not waited for.
func TestDecideWithoutStateAsksNothing(t *testing.T) {
	for _, policy := range []string{FailOpen, FailClosed} {
		ls := &fakeLists{err: errors.New("connection refused")}
		p := New(Config{StateRetryBudget: time.Minute, StateFailurePolicy: policy}, nil, nil, defaultRules(t), ls, NewMetrics(prometheus.NewRegistry()), discard)
		ps, ds := payments(t, pay("a", "c", "500")), make([]Decision, 1)
		if err := p.DecideWithoutState(context.Background(), ps, ds, "no time"); err != nil {
			t.Fatal(err)
		}
		if ls.tries != 0 || !ds[0].Flagged || !slices.Contains(codes(ds[0].Reasons), decision.CodeDegraded) {
			t.Errorf("%s: %d tries of the lists, decision %+v", policy, ls.tries, ds[0].Verdict)
		}
	}
}
