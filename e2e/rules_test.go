package e2e

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/rules"
)

// The rules as data: a rule added to the file decides the next payment without a restart, a broken
// file changes nothing, a list item changes the next decision on every instance, a shadow rule
// never acts, and the replay's backtest and decisions agree with what the seed's files say.

// ruleDecision is the part of a high-risk decision these tests read.
type ruleDecision struct {
	PaymentID     string       `json:"payment_id"`
	CardID        string       `json:"card_id"`
	Flagged       bool         `json:"flagged"`
	Action        string       `json:"action"`
	Rule          string       `json:"rule"`
	Reasons       []ruleReason `json:"reasons"`
	ShadowReasons []ruleReason `json:"shadow_reasons"`
	RulesVersion  string       `json:"rules_version"`
}

type ruleReason struct {
	Code   string `json:"code"`
	Detail string `json:"detail"`
	Rule   string `json:"rule"`
}

func (d ruleDecision) codes() []string {
	var cs []string
	for _, r := range d.Reasons {
		cs = append(cs, r.Code)
	}
	return cs
}

func ruleDecisions(t *testing.T, topic string) []ruleDecision {
	t.Helper()
	var ds []ruleDecision
	for _, m := range readAll(t, newClient(t), topic) {
		var d ruleDecision
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatalf("decision %s: %v", m.Value, err)
		}
		ds = append(ds, d)
	}
	return ds
}

// channelPayment is a payment record line for kcat (KEY<TAB>VALUE) with a channel.
func channelPayment(id, card, amount, channel string, at time.Time) string {
	return card + "\t" + `{"payment_id":"` + id + `","card_id":"` + card + `","amount":"` + amount +
		`","currency":"EUR","timestamp":"` + at.UTC().Format(time.RFC3339Nano) + `","channel":"` + channel + `"}`
}

// replaceFile writes b to path by renaming a file written beside it, so that a service checking
// path never reads it half written.
func replaceFile(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// logged returns the service's JSON log lines whose msg is msg, in order.
func (s *service) logged(msg string) []map[string]any {
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(s.logs.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
			lines = append(lines, line)
		}
	}
	return lines
}

// awaitLogged waits until the service has logged msg n times and returns the nth line.
func (s *service) awaitLogged(t *testing.T, msg string, n int, within time.Duration) map[string]any {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if lines := s.logged(msg); len(lines) >= n {
			return lines[n-1]
		}
		if !s.running() {
			t.Fatalf("service exited (%v) before logging %q %d times", s.err, msg, n)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the service logged %q %d times in %s, want %d", msg, len(s.logged(msg)), within, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// assignment is what a service logged it was assigned last: the group's generation and how many
// partitions of a topic.
type assignment struct{ generation, partitions int }

func lastAssignment(s *service, topic string) assignment {
	var last assignment
	for _, l := range s.logged("partitions assigned") {
		g, _ := l["generation"].(float64)
		claims, _ := l["claims"].(map[string]any)
		ps, _ := claims[topic].([]any)
		last = assignment{int(g), len(ps)}
	}
	return last
}

// instance is a running service and the address of its API.
type instance struct {
	svc  *service
	addr string
}

// awaitMetrics waits until the sum over the instances of every metric in want has reached its
// value, then requires each to equal it.
func awaitMetrics(t *testing.T, within time.Duration, want map[string]float64, is ...instance) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := map[string]float64{}
		for _, in := range is {
			if !in.svc.running() {
				t.Fatalf("service exited: %v", in.svc.err)
			}
			for k, v := range scrape(t, in.addr) {
				got[k] += v
			}
		}
		reached := true
		for k, v := range want {
			reached = reached && got[k] >= v
		}
		if reached || time.Now().After(deadline) {
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v (after %s)", k, got[k], v, within)
				}
			}
			if t.Failed() {
				t.FailNow()
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var buildRulesVersion = regexp.MustCompile(`^fraud_build_info\{.*rules_version="([^"]*)"`)

// servedRulesVersion is the rules_version of fraud_build_info.
func servedRulesVersion(t *testing.T, addr string) string {
	t.Helper()
	for k := range scrape(t, addr) {
		if m := buildRulesVersion.FindStringSubmatch(k); m != nil {
			return m[1]
		}
	}
	t.Fatalf("no fraud_build_info with a rules_version at %s", addr)
	return ""
}

// awaitRulesVersionChange waits until fraud_build_info's rules_version differs from was, and
// returns it.
func awaitRulesVersionChange(t *testing.T, in instance, was string, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if v := servedRulesVersion(t, in.addr); v != was {
			return v
		}
		if !in.svc.running() {
			t.Fatalf("service exited: %v", in.svc.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules_version at %s still %s after %s", in.addr, was, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// apiDo sends a request with a bearer token and returns the status and the body.
func apiDo(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return resp.StatusCode, b
}

// errorCode is the code of an API error body.
func errorCode(b []byte) string {
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	json.Unmarshal(b, &e)
	return e.Error.Code
}

func TestRuleAddedToTheFileFlagsWithoutRestart(t *testing.T) {
	tp := newTopics(t, 1)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	shipped := shippedRules(t, "")
	replaceFile(t, path, shipped)
	svc := startService(t, tp, "FRAUD_RULES_PATH="+path, "FRAUD_RULES_RELOAD_CHECK=200ms")
	in := instance{svc, svc.apiAddr(t)}
	shippedVersion := svc.awaitLogged(t, "consuming", 1, 60*time.Second)["rules_version"]
	now := time.Now().UTC()

	// The shipped rules: a moto payment of 20 is clear.
	kcatProduce(t, tp.payments, []string{channelPayment("moto-1", "card-m1", "20", "moto", now)}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{`fraud_decisions_total{outcome="clear"}`: 1}, in)

	// A rule appended to the file is in force from the next check on.
	const moto = `
  - id: moto_channel
    description: Mail and telephone orders are flagged.
    expression: 'payment.channel == "moto"'
    action: flag
`
	replaceFile(t, path, shippedRules(t, moto))
	reloaded := svc.awaitLogged(t, "rules reloaded", 1, 30*time.Second)
	motoVersion, _ := reloaded["rules_version"].(string)
	if motoVersion == "" || motoVersion == shippedVersion || reloaded["was"] != shippedVersion || reloaded["rules"] != float64(shippedRuleCount(t)+1) {
		t.Fatalf("rules reloaded: %v; the shipped rules are %v", reloaded, shippedVersion)
	}
	if v := servedRulesVersion(t, in.addr); v != motoVersion {
		t.Errorf("fraud_build_info rules_version %s, want %s", v, motoVersion)
	}
	kcatProduce(t, tp.payments, []string{channelPayment("moto-2", "card-m2", "20", "moto", now)}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{
		`fraud_decisions_total{outcome="flagged"}`:                 1,
		`fraud_rule_hits_total{mode="active",rule="moto_channel"}`: 1,
		`fraud_rules_reloads_total{result="ok"}`:                   1,
	}, in)

	// A file with a type error is refused whole: the rule is named, and the running rules stay.
	const broken = `
  - id: broken_amount
    description: Compares the amount with a string.
    expression: payment.amount > "x"
    action: flag
`
	replaceFile(t, path, shippedRules(t, moto+broken))
	refused := svc.awaitLogged(t, "rules not reloaded; the running rules stay", 1, 30*time.Second)
	if err, _ := refused["err"].(string); !strings.Contains(err, "rule broken_amount") || refused["rules_version"] != motoVersion {
		t.Errorf("rules not reloaded: %v, want the error naming rule broken_amount and rules_version %s", refused, motoVersion)
	}
	kcatProduce(t, tp.payments, []string{channelPayment("moto-3", "card-m3", "20", "moto", now)}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{
		`fraud_decisions_total{outcome="flagged"}`:                 2,
		`fraud_rule_hits_total{mode="active",rule="moto_channel"}`: 2,
		`fraud_rules_reloads_total{result="error"}`:                1,
	}, in)

	// SIGHUP checks the file at once: the file unchanged and still broken is reported again (the
	// watch alone reports an unchanged error once).
	if err := svc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	svc.awaitLogged(t, "rules not reloaded; the running rules stay", 2, 30*time.Second)
	awaitMetrics(t, 30*time.Second, map[string]float64{`fraud_rules_reloads_total{result="error"}`: 2}, in)

	// The shipped file back, and SIGHUP: the moto rule is gone and the shipped version is back.
	replaceFile(t, path, shipped)
	if err := svc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	back := svc.awaitLogged(t, "rules reloaded", 2, 30*time.Second)
	if back["rules_version"] != shippedVersion || back["was"] != motoVersion {
		t.Errorf("rules reloaded: %v, want %s from %s", back, shippedVersion, motoVersion)
	}
	kcatProduce(t, tp.payments, []string{channelPayment("moto-4", "card-m4", "20", "moto", now)}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{
		`fraud_decisions_total{outcome="clear"}`:   2,
		`fraud_decisions_total{outcome="flagged"}`: 2,
		`fraud_rules_reloads_total{result="ok"}`:   2,
	}, in)

	ds := ruleDecisions(t, tp.highRisk)
	slices.SortFunc(ds, func(a, b ruleDecision) int { return cmp.Compare(a.PaymentID, b.PaymentID) })
	if len(ds) != 2 {
		t.Fatalf("%d decisions on the high-risk topic, want moto-2 and moto-3: %+v", len(ds), ds)
	}
	for i, d := range ds {
		id := fmt.Sprintf("moto-%d", i+2)
		if d.PaymentID != id || !d.Flagged || d.Action != "flag" || d.Rule != "moto_channel" ||
			len(d.Reasons) != 1 || d.Reasons[0].Code != "moto_channel" || d.Reasons[0].Rule != "moto_channel" ||
			d.Reasons[0].Detail != "Mail and telephone orders are flagged." || d.RulesVersion != motoVersion {
			t.Errorf("decision %+v, want %s flagged by moto_channel with rules_version %s", d, id, motoVersion)
		}
	}
	svc.stop(t)
}

func TestListItemChangesTheNextDecision(t *testing.T) {
	tp := newTopics(t, 2)
	names := []string{"ana", "ben"}
	var is []instance
	tokens := map[string]string{}
	for _, name := range names {
		token := "e2e-lists-" + name + "-token-0123456789"
		recordSecret(token, "the analyst "+name+"'s API token")
		sum := sha256.Sum256([]byte(token))
		addr := freePort(t)
		svc := startService(t, tp, "FRAUD_API_LISTEN="+addr, "FRAUD_API_TOKENS="+name+":analyst:"+hex.EncodeToString(sum[:]))
		tokens[addr] = token
		is = append(is, instance{svc, svc.apiAddr(t)})
	}
	a, b := is[0], is[1]
	// Both in the group, a partition each, before the first payment (so that no rebalance decides
	// a payment twice).
	deadline := time.Now().Add(60 * time.Second)
	for {
		ga, gb := lastAssignment(a.svc, tp.payments), lastAssignment(b.svc, tp.payments)
		if ga.generation > 0 && ga.generation == gb.generation && ga.partitions == 1 && gb.partitions == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions assigned after 60 s: %+v and %+v, want one each in one generation", ga, gb)
		}
		time.Sleep(50 * time.Millisecond)
	}
	base := func(in instance) string { return "http://" + in.addr + "/v1/lists" }
	now := time.Now().UTC()

	kcatProduce(t, tp.payments, []string{payment("blk-1", "card-blocked", "5", now)}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{`fraud_decisions_total{outcome="clear"}`: 1}, is...)
	version := servedRulesVersion(t, a.addr)
	if v := servedRulesVersion(t, b.addr); v != version {
		t.Fatalf("the instances run rules %s and %s", version, v)
	}

	// An item put on one instance is seen by both within seconds.
	put := time.Now()
	code, body := apiDo(t, "PUT", base(a)+"/blocked_cards/items/card-blocked", tokens[a.addr], `{"note":"stolen, reported by phone"}`)
	if code != 201 {
		t.Fatalf("PUT blocked_cards/card-blocked: %d %s, want 201", code, body)
	}
	var item struct {
		List, Value, Note string
		AddedBy           string `json:"added_by"`
	}
	json.Unmarshal(body, &item)
	if item.List != "blocked_cards" || item.Value != "card-blocked" || item.Note != "stolen, reported by phone" || item.AddedBy != names[0] {
		t.Errorf("PUT answered %s", body)
	}
	if code, body := apiDo(t, "PUT", base(b)+"/blocked_cards/items/card-blocked", tokens[b.addr], ""); code != 200 {
		t.Errorf("PUT again on the other instance: %d %s, want 200", code, body)
	}
	blocked := awaitRulesVersionChange(t, a, version, 10*time.Second)
	if v := awaitRulesVersionChange(t, b, version, 10*time.Second-time.Since(put)); v != blocked {
		t.Fatalf("after the PUT the instances run rules %s and %s", blocked, v)
	}
	t.Logf("both instances saw the item within %s", time.Since(put).Round(time.Millisecond))

	kcatProduce(t, tp.payments, []string{payment("blk-2", "card-blocked", "5", now)}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{
		`fraud_decisions_total{outcome="flagged"}`:                 1,
		`fraud_rule_hits_total{mode="active",rule="blocked_card"}`: 1,
	}, is...)

	// An allowed card is never flagged, whatever else matches.
	if code, body := apiDo(t, "PUT", base(b)+"/allowed_cards/items/card-vip", tokens[b.addr], ""); code != 201 {
		t.Fatalf("PUT allowed_cards/card-vip: %d %s, want 201", code, body)
	}
	allowed := awaitRulesVersionChange(t, a, blocked, 10*time.Second)
	if v := awaitRulesVersionChange(t, b, blocked, 10*time.Second); v != allowed {
		t.Fatalf("after the second PUT the instances run rules %s and %s", allowed, v)
	}
	kcatProduce(t, tp.payments, []string{payment("vip-1", "card-vip", "500", now)}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{
		`fraud_decisions_total{outcome="allowed"}`:                          1,
		`fraud_rule_hits_total{mode="active",rule="allowed_card"}`:          1,
		`fraud_rule_hits_total{mode="active",rule="amount_over_threshold"}`: 1, // it matched, and was overridden
	}, is...)

	// Values wrong for their list's kind, and a list the rules do not declare.
	const pan = "4111111111111111"
	recordSecret(pan, "a card number put to a list")
	for _, c := range []struct {
		path       string
		status     int
		code, note string
	}{
		{"/blocked_countries/items/XX1", 422, "invalid_value", "not a country code"},
		{"/blocked_cards/items/" + pan, 422, "invalid_value", "a card number"},
		{"/blocked_emails/items/someone@example.com", 404, "unknown_list", "an undeclared list"},
	} {
		if code, body := apiDo(t, "PUT", base(a)+c.path, tokens[a.addr], ""); code != c.status || errorCode(body) != c.code {
			t.Errorf("PUT %s (%s): %d %s, want %d %s", c.path, c.note, code, body, c.status, c.code)
		}
	}

	// The audit trail names the analyst.
	type auditTrail struct {
		Changes []struct{ List, Value, Op, By, Note string }
	}
	var changes auditTrail
	if code := apiGet(t, base(b)+"/blocked_cards/changes", tokens[b.addr], &changes); code != 200 {
		t.Fatalf("GET changes: %d", code)
	}
	if len(changes.Changes) != 1 || changes.Changes[0].Value != "card-blocked" || changes.Changes[0].Op != "add" ||
		changes.Changes[0].By != names[0] || changes.Changes[0].Note != "stolen, reported by phone" {
		t.Errorf("changes of blocked_cards %+v, want one add of card-blocked by %s", changes.Changes, names[0])
	}

	// Deleted, the card is clear again on every instance.
	if code, body := apiDo(t, "DELETE", base(b)+"/blocked_cards/items/card-blocked", tokens[b.addr], ""); code != 204 {
		t.Fatalf("DELETE blocked_cards/card-blocked: %d %s, want 204", code, body)
	}
	unblocked := awaitRulesVersionChange(t, a, allowed, 10*time.Second)
	if v := awaitRulesVersionChange(t, b, allowed, 10*time.Second); v != unblocked {
		t.Fatalf("after the DELETE the instances run rules %s and %s", unblocked, v)
	}
	kcatProduce(t, tp.payments, []string{payment("blk-3", "card-blocked", "5", now)}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{
		`fraud_decisions_total{outcome="clear"}`:                   2,
		`fraud_decisions_total{outcome="flagged"}`:                 1,
		`fraud_decisions_total{outcome="allowed"}`:                 1,
		`fraud_rule_hits_total{mode="active",rule="blocked_card"}`: 1,
	}, is...)
	changes = auditTrail{}
	if code := apiGet(t, base(a)+"/blocked_cards/changes", tokens[a.addr], &changes); code != 200 ||
		len(changes.Changes) != 2 || changes.Changes[0].Op != "remove" || changes.Changes[0].By != names[1] {
		t.Errorf("changes of blocked_cards %d %+v, want the remove by %s first", code, changes.Changes, names[1])
	}

	ds := ruleDecisions(t, tp.highRisk)
	if len(ds) != 1 {
		t.Fatalf("%d decisions on the high-risk topic, want blk-2 alone: %+v", len(ds), ds)
	}
	if d := ds[0]; d.PaymentID != "blk-2" || !d.Flagged || d.Action != "flag" || d.Rule != "blocked_card" ||
		!slices.Equal(d.codes(), []string{"blocked_card"}) || d.RulesVersion != blocked {
		t.Errorf("decision %+v, want blk-2 flagged by blocked_card with rules_version %s", d, blocked)
	}
	for _, in := range is {
		in.svc.stop(t)
	}
}

func TestShadowRuleNeverFlags(t *testing.T) {
	tp := newTopics(t, 2)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	replaceFile(t, path, shippedRules(t, `
  - id: over_ten
    description: The amount is over 10.
    expression: payment.amount > 10
    action: flag
    mode: shadow
`))
	svc := startService(t, tp, "FRAUD_RULES_PATH="+path)
	in := instance{svc, svc.apiAddr(t)}
	now := time.Now().UTC()
	kcatProduce(t, tp.payments, []string{
		payment("shadow-50", "card-s50", "50", now),
		payment("shadow-150", "card-s150", "150", now),
	}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{
		`fraud_decisions_total{outcome="flagged"}`:                          1,
		`fraud_decisions_total{outcome="clear"}`:                            1,
		`fraud_decisions_total{outcome="review"}`:                           0,
		`fraud_rule_hits_total{mode="shadow",rule="over_ten"}`:              2,
		`fraud_rule_hits_total{mode="active",rule="amount_over_threshold"}`: 1,
	}, in)
	ds := ruleDecisions(t, tp.highRisk)
	if len(ds) != 1 {
		t.Fatalf("%d decisions on the high-risk topic, want shadow-150 alone: %+v", len(ds), ds)
	}
	d := ds[0]
	if d.PaymentID != "shadow-150" || !d.Flagged || d.Rule != "amount_over_threshold" ||
		!slices.Equal(d.codes(), []string{"amount_over_threshold"}) {
		t.Errorf("decision %+v, want shadow-150 flagged by amount_over_threshold alone", d)
	}
	if len(d.ShadowReasons) != 1 || d.ShadowReasons[0].Code != "over_ten" || d.ShadowReasons[0].Rule != "over_ten" {
		t.Errorf("shadow reasons %+v, want over_ten", d.ShadowReasons)
	}
	svc.stop(t)
}

// seedPayment is what the backtest's expectations need of a seed payment.
type seedPayment struct {
	ID        string          `json:"payment_id"`
	CardID    string          `json:"card_id"`
	Amount    decimal.Decimal `json:"amount"`
	Timestamp time.Time       `json:"timestamp"`
	Channel   string          `json:"channel"`
}

// readSeed reads the seed's payments in the replay's order (event time, then input order) and its
// labels by payment id.
func readSeed(t *testing.T) ([]seedPayment, map[string]string) {
	t.Helper()
	var ps []seedPayment
	eachLine(t, "testdata/seed/payments.jsonl", func(line []byte) {
		var p seedPayment
		if err := json.Unmarshal(line, &p); err != nil || p.ID == "" || p.CardID == "" {
			t.Fatalf("seed payment %s: %v", line, err)
		}
		ps = append(ps, p)
	})
	slices.SortStableFunc(ps, func(a, b seedPayment) int { return a.Timestamp.Compare(b.Timestamp) })
	labels := map[string]string{}
	eachLine(t, "testdata/seed/labels.jsonl", func(line []byte) {
		var l struct {
			PaymentID string `json:"payment_id"`
			Label     string `json:"label"`
		}
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("seed label %s: %v", line, err)
		}
		labels[l.PaymentID] = l.Label
	})
	return ps, labels
}

func eachLine(t *testing.T, path string, f func([]byte)) {
	t.Helper()
	file, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			f(sc.Bytes())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// runReplay runs the service's replay from the repository's root with env (and no other FRAUD_
// setting) and returns its standard output.
func runReplay(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(binPath, append([]string{"replay"}, args...)...)
	cmd.Dir = ".."
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FRAUD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// The lists of a prefix no one writes: the backtest must not see another's lists.
	cmd.Env = append(cmd.Env, fmt.Sprintf("FRAUD_LISTS_KEY_PREFIX=replay-lists-%d", time.Now().UnixNano()))
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = dieWithTest()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("replay %v: %v\n%s", args, err, stderr.String())
	}
	t.Logf("replay:\n%s", stderr.String())
	return stdout.String()
}

// backtestReport reads the replay's backtest: its first line, and each table (a header line of
// column names, rows up to a blank line) as rows by column name. A row's first column may be
// words: the columns after it are one word each.
func backtestReport(out string) (string, [][]map[string]string) {
	var header string
	var tables [][]map[string]string
	var cols []string
	for line := range strings.Lines(out) {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "backtest:"):
			header = strings.TrimSpace(line)
		case len(f) == 0:
			cols = nil
		case cols == nil && (f[0] == "rule" || f[0] == "decisions"):
			cols = f
			tables = append(tables, nil)
		case cols != nil && len(f) >= len(cols):
			n := len(f) - len(cols) + 1
			row := map[string]string{cols[0]: strings.Join(f[:n], " ")}
			for i, c := range cols[1:] {
				row[c] = f[n+i]
			}
			tables[len(tables)-1] = append(tables[len(tables)-1], row)
		}
	}
	return header, tables
}

// counted is a number of payments and, of them, those labelled fraud and legitimate.
type counted struct{ n, fraud, legit int }

func (c *counted) add(label string) {
	c.n++
	switch label {
	case "fraud":
		c.fraud++
	case "legitimate":
		c.legit++
	}
}

func percent(a, b int) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(a)/float64(b))
}

func TestBacktestOnKnownLabels(t *testing.T) {
	candidate := filepath.Join(t.TempDir(), "candidate.yaml")
	replaceFile(t, candidate, shippedRules(t, `
  - id: moto_review
    description: Mail and telephone orders go to an analyst.
    expression: 'payment.channel == "moto"'
    action: review
`, "expression: payment.amount > 100", "expression: payment.amount > 300"))

	// The expectations, from the files: the amounts exactly, the velocity rule as the 11th and
	// later payment of a card in a UTC hour of event time (the model is off).
	ps, labels := readSeed(t)
	var amount100, amount300, velocity, moto, curFlag, candFlag, newly, noLonger counted
	fraud, motoFlagged := 0, 0 // moto payments the candidate flags: a flag overrides a review
	perHour := map[string]int{}
	hundred, threeHundred := decimal.NewFromInt(100), decimal.NewFromInt(300)
	for _, p := range ps {
		l := labels[p.ID]
		if l == "fraud" {
			fraud++
		}
		hour := p.CardID + "@" + p.Timestamp.UTC().Truncate(time.Hour).Format(time.RFC3339)
		perHour[hour]++
		fast := perHour[hour] > 10
		over100, over300 := p.Amount.GreaterThan(hundred), p.Amount.GreaterThan(threeHundred)
		for _, c := range []struct {
			hit bool
			to  *counted
		}{
			{over100, &amount100}, {over300, &amount300}, {fast, &velocity}, {p.Channel == "moto", &moto},
			{over100 || fast, &curFlag}, {over300 || fast, &candFlag},
			{(over300 || fast) && !(over100 || fast), &newly}, {(over100 || fast) && !(over300 || fast), &noLonger},
		} {
			if c.hit {
				c.to.add(l)
			}
		}
		if p.Channel == "moto" && (over300 || fast) {
			motoFlagged++
		}
	}
	if len(ps) != 1840 || fraud != 196 || velocity.n == 0 || moto.n == 0 {
		t.Fatalf("the seed: %d payments, %d fraud, %d over the velocity, %d moto", len(ps), fraud, velocity.n, moto.n)
	}
	// The rows expected, by column.
	rule := func(id, in, mode, action string, c counted) map[string]string {
		return map[string]string{"rule": id, "in": in, "mode": mode, "action": action, "hits": fmt.Sprint(c.n),
			"fraud": fmt.Sprint(c.fraud), "legitimate": fmt.Sprint(c.legit),
			"precision": percent(c.fraud, c.fraud+c.legit), "recall": percent(c.fraud, fraud)}
	}
	var none counted
	wantRules := []map[string]string{
		rule("amount_over_threshold", "current*", "active", "flag", amount100),
		rule("amount_over_threshold", "candidate*", "active", "flag", amount300),
		rule("card_velocity_1h", "both", "active", "flag", velocity),
		rule("model_score", "both", "active", "flag", none),
		rule("blocked_card", "both", "active", "flag", none),
		rule("allowed_card", "both", "active", "allow", none),
		rule("blocked_merchant", "both", "active", "flag", none),
		rule("blocked_country", "both", "active", "flag", none),
		rule("blocked_ip", "both", "active", "flag", none),
		rule("blocked_device", "both", "active", "flag", none),
		rule("blocked_bin", "both", "active", "flag", none),
		rule("moto_review", "candidate", "active", "review", moto),
	}
	decisions := func(name string, c counted, review int) map[string]string {
		return map[string]string{"decisions": name, "flagged": fmt.Sprint(c.n), "fraud": fmt.Sprint(c.fraud),
			"legitimate": fmt.Sprint(c.legit), "precision": percent(c.fraud, c.fraud+c.legit),
			"recall": percent(c.fraud, fraud), "review": fmt.Sprint(review), "allowed": "0"}
	}
	changed := func(name string, c counted) map[string]string {
		return map[string]string{"decisions": name, "flagged": fmt.Sprint(c.n), "fraud": fmt.Sprint(c.fraud),
			"legitimate": fmt.Sprint(c.legit)}
	}
	wantDecisions := []map[string]string{
		decisions("current", curFlag, 0), // no review rule
		decisions("candidate", candFlag, moto.n-motoFlagged),
		changed("newly flagged", newly),
		changed("no longer flagged", noLonger),
	}

	out := runReplay(t, []string{"FRAUD_CARD_HMAC_KEY=" + hmacKey},
		"-in", "e2e/testdata/seed/payments.jsonl", "-labels", "e2e/testdata/seed/labels.jsonl",
		"-model", "none", "-redis", redisAddr, "-rules", candidate, "-out", "/dev/null")

	header, tables := backtestReport(out)
	if want := fmt.Sprintf("backtest: %d payments, %d labelled fraud", len(ps), fraud); header != want {
		t.Errorf("header %q, want %q", header, want)
	}
	if len(tables) != 2 {
		t.Fatalf("%d tables in the report, want the rules' and the decisions':\n%s", len(tables), out)
	}
	for i, want := range [][]map[string]string{wantRules, wantDecisions} {
		got := tables[i]
		if len(got) != len(want) {
			t.Errorf("table %d: %d rows, want %d", i+1, len(got), len(want))
			continue
		}
		for j := range want {
			for col, v := range want[j] {
				if got[j][col] != v {
					t.Errorf("table %d, row %d (%v): %s is %q, want %q", i+1, j+1, got[j], col, got[j][col], v)
				}
			}
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", out)
	}
}

func TestDefaultRulesDecideAsTheSeed(t *testing.T) {
	// The seed's decisions: payment_id, flagged, reasons, score.
	want := map[string][]string{}
	var order []string
	b, err := os.ReadFile("testdata/seed/decisions.csv")
	if err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(bytes.NewReader(b))
	r.Comment = '#'
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("decisions.csv: %v", err)
	}
	if len(rows) == 0 || !slices.Equal(rows[0], []string{"payment_id", "flagged", "reasons", "score"}) {
		t.Fatalf("decisions.csv has no header payment_id,flagged,reasons,score")
	}
	for _, row := range rows[1:] {
		want[row[0]] = row[1:]
		order = append(order, row[0])
	}

	lib, err := filepath.Abs(ortLibrary)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "decisions.csv")
	runReplay(t, []string{"FRAUD_CARD_HMAC_KEY=golden-test-key-0123456789", "FRAUD_MODEL_ONNXRUNTIME_LIBRARY=" + lib},
		"-in", "e2e/testdata/seed/payments.jsonl", "-labels", "e2e/testdata/seed/labels.jsonl",
		"-redis", redisAddr, "-out", out)
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err = csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatalf("the replay's CSV: %v", err)
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, name := range []string{"payment_id", "flagged", "reasons", "score"} {
		if _, ok := col[name]; !ok {
			t.Fatalf("the replay's CSV has no column %s: %v", name, rows[0])
		}
	}
	got := map[string][]string{}
	for _, row := range rows[1:] {
		got[row[col["payment_id"]]] = []string{row[col["flagged"]], row[col["reasons"]], row[col["score"]]}
	}
	if len(got) != len(want) {
		t.Errorf("the replay decided %d payments, the seed %d", len(got), len(want))
	}
	differ, flagged := 0, 0
	for _, id := range order {
		if want[id][0] == "1" {
			flagged++
		}
		if g, ok := got[id]; !ok || !slices.Equal(g, want[id]) {
			if differ++; differ <= 10 {
				t.Errorf("%s: flagged,reasons,score %q, the seed %q", id, g, want[id])
			}
		}
	}
	if differ > 0 || flagged == 0 {
		t.Errorf("%d of %d decisions differ from the seed's (%d flagged there)", differ, len(want), flagged)
	}
}

// A SIGHUP (a configuration tool telling every instance to reload) that comes while the service is
// still waiting for its broker does not kill it: the signal is taken from the start.
func TestSighupWhileConnecting(t *testing.T) {
	tp := newTopics(t, 1)
	svc := startService(t, tp, "FRAUD_KAFKA_BROKERS=127.0.0.1:1") // nothing listens there
	svc.awaitLogged(t, "kafka not reachable yet", 1, 30*time.Second)
	if err := svc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The next retry's line shows the process lived through the signal.
	n := len(svc.logged("kafka not reachable yet"))
	svc.awaitLogged(t, "kafka not reachable yet", n+1, 30*time.Second)
	if !svc.running() {
		t.Fatalf("the service exited after SIGHUP: %v", svc.err)
	}
}

// shippedRuleCount is how many rules configs/rules.yaml has.
func shippedRuleCount(t *testing.T) int {
	t.Helper()
	set, err := rules.Load("../configs/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return len(set.Rules())
}

// A review rule sends a payment to the analysts without making it high risk: its decision is on
// the high-risk topic with flagged false and action review, and the review group opens its review.
func TestReviewRuleOpensAReview(t *testing.T) {
	tp := newTopics(t, 2)
	path := filepath.Join(t.TempDir(), "rules.yaml")
	replaceFile(t, path, shippedRules(t, `
  - id: moto_review
    description: Mail and telephone orders go to an analyst.
    expression: 'payment.channel == "moto"'
    action: review
`))
	addr := freePort(t)
	const token = "e2e-review-rule-token-0123456789"
	recordSecret(token, "the analyst's API token")
	sum := sha256.Sum256([]byte(token))
	svc := startService(t, tp, "FRAUD_RULES_PATH="+path, "FRAUD_API_LISTEN="+addr, "FRAUD_API_TOKENS=ana:analyst:"+hex.EncodeToString(sum[:]))
	in := instance{svc, svc.apiAddr(t)} // once the API listens
	now := time.Now().UTC()
	kcatProduce(t, tp.payments, []string{
		channelPayment("moto-small", "card-r1", "20", "moto", now),
		channelPayment("moto-large", "card-r2", "500", "moto", now),
	}, false)
	awaitMetrics(t, 60*time.Second, map[string]float64{
		`fraud_decisions_total{outcome="review"}`:                 1,
		`fraud_decisions_total{outcome="flagged"}`:                1,
		`fraud_rule_hits_total{mode="active",rule="moto_review"}`: 2,
		`fraud_reviews_opened_total`:                              2,
	}, in)
	byID := map[string]ruleDecision{}
	for _, d := range ruleDecisions(t, tp.highRisk) {
		byID[d.PaymentID] = d
	}
	if d := byID["moto-small"]; d.Flagged || d.Action != "review" || d.Rule != "moto_review" || !slices.Equal(d.codes(), []string{"moto_review"}) {
		t.Errorf("moto-small: %+v, want action review by moto_review, not flagged", d)
	}
	// A flag rule overrides the review rule; both are reasons.
	if d := byID["moto-large"]; !d.Flagged || d.Action != "flag" || d.Rule != "amount_over_threshold" ||
		!slices.Equal(d.codes(), []string{"amount_over_threshold", "moto_review"}) {
		t.Errorf("moto-large: %+v, want flagged by amount_over_threshold, with moto_review", d)
	}
	var rv struct {
		Status   string `json:"status"`
		Decision struct {
			Action string `json:"action"`
		} `json:"decision"`
	}
	if code := apiGet(t, "http://"+addr+"/v1/reviews/moto-small", token, &rv); code != 200 || rv.Status != "open" || rv.Decision.Action != "review" {
		t.Errorf("the review of moto-small: %d %+v", code, rv)
	}
	svc.stop(t)
}
