package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// retrainPAN is a card number some payments of the retrain's stream carry: it must reach no file
// and no output of the retrain.
const retrainPAN = "4000056655665556"

// make retrain on the real stack: twelve days of a simulated world go through a running service
// (its model a copy of the shipped one); an analyst decides some of its reviews over the API, and
// the rest of the world's labels are published on the labels topic as if analysts had decided
// them, but for a few legitimate payments left without a verdict. The retrain reads both topics,
// takes the analysts' verdicts as labels (the latest of a payment's), the payments without one as
// legitimate when older than the label delay, trains, and writes the model over the service's
// model path: the service swaps it in without a restart.
func TestRetrainFromVerdicts(t *testing.T) {
	began := time.Now()
	const days, cards = 12, 400
	lines, truth := worldStream(t, days, cards, 11)
	for i := range 3 { // payments that carry a card number
		at := time.Now().UTC().Add(-time.Duration(i+1) * time.Hour)
		lines = append(lines, fmt.Sprintf("pan\t"+`{"payment_id":"pan-%d","card_number":"%s","amount":"42.00","currency":"EUR","timestamp":"%s"}`,
			i, retrainPAN, at.Format(time.RFC3339)))
	}
	dir := t.TempDir()
	modelPath := filepath.Join(dir, "model.onnx")
	shipped, err := os.ReadFile("../" + shippedModel)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(modelPath, shipped, 0o644); err != nil {
		t.Fatal(err)
	}
	tp := newTopics(t, 3)
	addr := freePort(t)
	const token = "e2e-retrain-analyst-token-0123456789"
	recordSecret(token, "the analyst's API token")
	sum := sha256.Sum256([]byte(token))
	s := startService(t, tp, "FRAUD_MODEL_PATH="+modelPath, "FRAUD_MODEL_RELOAD_CHECK=100ms",
		"FRAUD_API_LISTEN="+addr, "FRAUD_API_TOKENS=eve:analyst:"+hex.EncodeToString(sum[:]))
	oldVersion := waitModelVersion(t, s, addr, func(v string) bool { return v != "" })
	kcatProduce(t, tp.payments, lines, false)

	// The analyst decides reviews of flagged payments (over 100 in their currency: the amount
	// rule flags them, late or not): two fraud, two legitimate, as the world says.
	type payLine struct {
		ID, Card, Amount string
		Time             time.Time
	}
	var world []payLine
	for _, l := range lines {
		key, v, _ := strings.Cut(l, "\t")
		var p struct {
			PaymentID string    `json:"payment_id"`
			Amount    string    `json:"amount"`
			Timestamp time.Time `json:"timestamp"`
		}
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			t.Fatal(err)
		}
		world = append(world, payLine{p.PaymentID, key, p.Amount, p.Timestamp})
	}
	byAnalyst := map[string]string{}
	want := map[string]int{"fraud": 2, "legitimate": 2}
	for _, p := range world {
		amount, _ := strconv.ParseFloat(p.Amount, 64)
		if label := truth[p.ID]; amount > 150 && want[label] > 0 {
			byAnalyst[p.ID] = label
			want[label]--
		}
	}
	if len(byAnalyst) != 4 {
		t.Fatalf("the world has too few flagged payments to decide: %v", byAnalyst)
	}
	// One of them had a verdict before, the other way, which the analyst's later one overrides.
	var overridden string
	for id, label := range byAnalyst {
		if label == "fraud" {
			overridden = id
			break
		}
	}

	// The rest of the world's labels, as analysts' verdicts an hour after each payment; every
	// 97th legitimate payment gets none.
	asOf := time.Now().UTC().Truncate(time.Second)
	const delay = 72 * time.Hour
	var labels []string
	wantAged, wantLeftOut := 0, 0
	legit := 0
	for _, p := range world {
		label := truth[p.ID]
		switch {
		case p.ID == overridden:
			labels = append(labels, labelLine(p.ID, p.Card, "legitimate", "sim", p.Time.Add(time.Hour)))
			continue
		case byAnalyst[p.ID] != "":
			continue
		case label == "legitimate":
			if legit++; legit%97 == 0 {
				if p.Time.After(asOf.Add(-delay)) {
					wantLeftOut++
				} else {
					wantAged++
				}
				continue
			}
		case label == "":
			wantLeftOut++ // the card-number payments: recent, without a verdict
			continue
		}
		labels = append(labels, labelLine(p.ID, p.Card, label, "sim", p.Time.Add(time.Hour)))
	}
	labels = append(labels, "x\tnot a label")
	kcatProduce(t, tp.labels, labels, false)

	base := "http://" + addr + "/v1"
	for id, label := range byAnalyst {
		postVerdict(t, s, base, token, id, label)
	}
	waitForOutput(t, newClient(t), tp.labels, int64(len(labels)+len(byAnalyst)))
	waitCaughtUp(t, s, tp, 120*time.Second)

	// make retrain, as an operator runs it, with the service's settings.
	work, report := filepath.Join(dir, "work"), filepath.Join(dir, "report.md")
	args := []string{"-out", modelPath, "-report", report, "-work", work, "-label-delay", delay.String(),
		"-as-of", asOf.Format(time.RFC3339), "-test-weeks", "1", "-min-payments", "1000"}
	cmd := exec.Command("make", "--no-print-directory", "retrain", "ARGS="+strings.Join(args, " "))
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), tp.env()...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	sentMu.Lock()
	serviceLogs = append(serviceLogs, &out) // scanned for card numbers and secrets at the end
	sentMu.Unlock()
	retrainBegan := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("make retrain: %v\n%s", err, out.String())
	}
	retrainTook := time.Since(retrainBegan)
	t.Logf("make retrain (%s):\n%s", retrainTook.Round(time.Millisecond), out.String())

	// The labels the retrain read: the analyst's verdicts, the latest of each payment.
	got := map[string]struct{ Label, Source, Analyst string }{}
	b, err := os.ReadFile(filepath.Join(work, "labels.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var l struct {
			PaymentID string `json:"payment_id"`
			Label     string `json:"label"`
			Source    string `json:"source"`
			Analyst   string `json:"analyst"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		got[l.PaymentID] = struct{ Label, Source, Analyst string }{l.Label, l.Source, l.Analyst}
	}
	for id, label := range byAnalyst {
		if l := got[id]; l.Label != label || l.Source != "verdict" || l.Analyst != "eve" {
			t.Errorf("%s decided %s by eve over the API; the retrain read %+v", id, label, l)
		}
	}
	aged, leftOut := 0, 0
	for _, p := range world {
		l, ok := got[p.ID]
		switch {
		case !ok:
			leftOut++
		case l.Source == "no_verdict":
			aged++
		}
	}
	if aged != wantAged || leftOut != wantLeftOut || len(got) != len(world)-wantLeftOut {
		t.Errorf("%d payments taken as legitimate for want of a verdict, %d left out, %d labelled; want %d, %d, %d",
			aged, leftOut, len(got), wantAged, wantLeftOut, len(world)-wantLeftOut)
	}
	if want := tp.labels + "/0@"; !regexp.MustCompile(regexp.QuoteMeta(want) + `\d+: not a label's JSON; skipped`).MatchString(out.String()) {
		t.Errorf("the retrain did not say it skipped the record of %s that is not a label", tp.labels)
	}
	for _, name := range []string{"payments.jsonl", "labels.jsonl", "features.csv"} {
		b, err := os.ReadFile(filepath.Join(work, name))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(retrainPAN)) {
			t.Errorf("%s holds a card number", name)
		}
	}

	// The model and its report are written, and the running service swaps the model in.
	m := regexp.MustCompile(`(?m)^(lgbm-[0-9a-f]{12})$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("make retrain printed no model version")
	}
	newVersion := m[1]
	if newVersion == oldVersion {
		t.Fatalf("the retrained model has the shipped model's version %s", oldVersion)
	}
	rep, err := os.ReadFile(report)
	if err != nil || !strings.HasPrefix(string(rep), "# Model report: "+newVersion) {
		t.Fatalf("report %s (%v):\n%s", report, err, rep)
	}
	waitModelVersion(t, s, addr, func(v string) bool { return v == newVersion })
	if !s.running() {
		t.Fatalf("the service stopped (%v)", s.err)
	}
	waitForLog(t, s, `"msg":"model reloaded"`)
	s.stop(t)
	t.Logf("%d payments, %d verdicts published, %d by the analyst; model %s -> %s; retrain %s, test %s",
		len(world), len(labels)-1, len(byAnalyst), oldVersion, newVersion, retrainTook.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// A topic the brokers do not have stops the retrain with its name, and is not created.
func TestRetrainMissingTopic(t *testing.T) {
	tp := newTopics(t, 1)
	missing := "retrain-missing-" + tp.group
	cmd := exec.Command(binPath, "retrain", "-config", "configs/config.yaml", "-out", filepath.Join(t.TempDir(), "m.onnx"))
	cmd.Dir = ".."
	cmd.Env = append(append(os.Environ(), tp.env()...), "FRAUD_KAFKA_TOPICS_PAYMENTS="+missing)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the retrain succeeded without its payments topic:\n%s", out)
	}
	if want := "have no topic " + missing + " (kafka.topics.payments)"; !strings.Contains(string(out), want) {
		t.Errorf("the error does not say %q:\n%s", want, out)
	}
	topics, err := newAdmin(t).ListTopics()
	if err != nil {
		t.Fatal(err)
	}
	if _, made := topics[missing]; made {
		newAdmin(t).DeleteTopic(missing)
		t.Errorf("the retrain created topic %s", missing)
	}
}

// labelLine is a verdict as the service publishes it (api.Label), keyed by card.
func labelLine(id, card, label, analyst string, at time.Time) string {
	b, _ := json.Marshal(map[string]any{"payment_id": id, "card_id": card, "label": label, "analyst": analyst, "note": "", "decided_at": at})
	return card + "\t" + string(b)
}

var modelVersionLabel = regexp.MustCompile(`^fraud_build_info\{model_version="([^"]*)"`)

// waitModelVersion waits until /metrics' fraud_build_info names a model version that ok accepts,
// and returns it.
func waitModelVersion(t *testing.T, s *service, addr string, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	last := ""
	for {
		if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
			resp.Body.Close()
			for key := range scrape(t, addr) {
				if m := modelVersionLabel.FindStringSubmatch(key); m != nil {
					if last = m[1]; ok(last) {
						return last
					}
				}
			}
		}
		if !s.running() {
			t.Fatalf("the service exited (%v)", s.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("fraud_build_info's model_version is %q after 60 s", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
