package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const shippedModel = "configs/model.onnx" // relative to the repository, where the service runs

// worldStream simulates days of labelled payments (paygen -world) and returns them as
// KEY<TAB>VALUE lines, with the label of every payment id. The world is the same in every run:
// it starts on a fixed Sunday (paygen draws fewer payments on a weekend, so the weekday it starts
// on decides every later draw). Its payments are then moved by whole days to end at the last UTC
// midnight: they keep their times of day and are less than a week old whatever the hour; only
// day_of_week follows the calendar.
func worldStream(t *testing.T, days, cards int, seed int) ([]string, map[string]string) {
	t.Helper()
	sunday := time.Date(2026, 1, 4, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	cmd := exec.Command("go", "run", "../cmd/paygen", "-world", "-start", sunday.Format(time.RFC3339), "-days", fmt.Sprint(days), "-cards", fmt.Sprint(cards),
		"-merchants", "300", "-fraud-scale", "30", "-seed", fmt.Sprint(seed), "-keyed",
		"-out", filepath.Join(dir, "payments.tsv"), "-labels", filepath.Join(dir, "labels.jsonl"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("paygen: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "payments.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	now := time.Now().UTC()
	shift := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).Sub(sunday.AddDate(0, 0, days))
	field := regexp.MustCompile(`"timestamp":"([^"]*)"`)
	for i, l := range lines {
		n := 0
		lines[i] = field.ReplaceAllStringFunc(l, func(f string) string {
			n++
			at, err := time.Parse(time.RFC3339, field.FindStringSubmatch(f)[1])
			if err != nil {
				t.Fatalf("paygen wrote %s: %v", l, err)
			}
			return `"timestamp":"` + at.Add(shift).Format(time.RFC3339) + `"`
		})
		if n != 1 {
			t.Fatalf("paygen wrote %d timestamps in %s", n, l)
		}
	}
	labels := map[string]string{}
	f, err := os.Open(filepath.Join(dir, "labels.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			PaymentID string `json:"payment_id"`
			Label     string `json:"label"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		labels[l.PaymentID] = l.Label
	}
	return lines, labels
}

type modelDecision struct {
	PaymentID    string   `json:"payment_id"`
	Score        *float64 `json:"score"`
	ModelVersion string   `json:"model_version"`
	Reasons      []struct {
		Code string `json:"code"`
	} `json:"reasons"`
}

func modelDecisions(t *testing.T, topic string) []modelDecision {
	t.Helper()
	var out []modelDecision
	for _, m := range readAll(t, newClient(t), topic) {
		var d modelDecision
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// Six days of a simulated population with fraud scenarios, streamed through the service with the
// shipped model: the fraud is flagged with model_score, and model_score flags mostly fraud.
func TestModelFlagsFraudScenarios(t *testing.T) {
	lines, labels := worldStream(t, 6, 1000, 11)
	tp := newTopics(t, 6)
	// The stream covers the six days before the last midnight, all of which the windows must
	// count: lateness of a week (its first hour's payments count until 01:00 tomorrow).
	s := startService(t, tp, "FRAUD_MODEL_PATH="+shippedModel, "FRAUD_WINDOW_ALLOWED_LATENESS=168h")
	// A day at a time, each decided and folded into the merchants' counts before the next
	// begins, as days pass in production: a day's merchant snapshots then hold the days before.
	for from := 0; from < len(lines); {
		day := eventTime(t, lines[from]).Truncate(24 * time.Hour)
		to := from
		for to < len(lines) && eventTime(t, lines[to]).Truncate(24*time.Hour).Equal(day) {
			to++
		}
		kcatProduce(t, tp.payments, lines[from:to], false)
		waitCommitted(t, s, tp, int64(to))
		waitFolded(t, tp.group)
		from = to
	}
	waitCaughtUp(t, s, tp, 120*time.Second)
	s.stop(t)
	if !strings.Contains(s.logs.String(), `"msg":"model loaded"`) {
		t.Fatal("the service did not log the model it loaded")
	}
	fraud, caught, byModel, byModelFraud := 0, 0, 0, 0
	for _, l := range labels {
		if l == "fraud" {
			fraud++
		}
	}
	for _, d := range modelDecisions(t, tp.highRisk) {
		if d.Score == nil || d.ModelVersion == "" {
			t.Fatalf("decision %s without a score or model version", d.PaymentID)
		}
		if slices.ContainsFunc(d.Reasons, func(r struct {
			Code string `json:"code"`
		}) bool {
			return r.Code == "model_score"
		}) {
			byModel++
			if labels[d.PaymentID] == "fraud" {
				byModelFraud++
				caught++
			}
		}
	}
	t.Logf("%d payments, %d fraud; model_score flagged %d, %d of them fraud", len(lines), fraud, byModel, byModelFraud)
	if fraud < 50 {
		t.Fatalf("only %d fraudulent payments in the stream", fraud)
	}
	if caught*2 < fraud {
		t.Errorf("model_score flagged %d of %d fraudulent payments", caught, fraud)
	}
	if byModelFraud*2 < byModel {
		t.Errorf("of %d payments flagged with model_score, %d are fraud", byModel, byModelFraud)
	}
}

// A model whose features are not the service's stops the start with an error naming them.
func TestMismatchedModelIsRefused(t *testing.T) {
	data, err := os.ReadFile("../" + shippedModel)
	if err != nil {
		t.Fatal(err)
	}
	// The same model, claiming a feature the service does not compute (same length, in place).
	wrong := bytes.Replace(data, []byte("amount_eur,"), []byte("amount_usd,"), 1)
	path := filepath.Join(t.TempDir(), "wrong.onnx")
	if err := os.WriteFile(path, wrong, 0o644); err != nil {
		t.Fatal(err)
	}
	tp := newTopics(t, 1)
	s := startService(t, tp, "FRAUD_MODEL_PATH="+path)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatal("the service runs with a mismatched model")
	}
	if s.err == nil {
		t.Error("the service exited 0 with a mismatched model")
	}
	if want := "the model lacks [amount_eur] and has [amount_usd] that the service does not compute"; !strings.Contains(s.logs.String(), want) {
		t.Errorf("the error does not say %q:\n%s", want, s.logs.tail(2048))
	}
}

// A model swapped while payments stream in takes effect without losing or double-scoring one:
// every payment is over the amount threshold, so each has a decision that carries its score and
// model version; each has exactly one, scored by the old model until the swap and by the new one
// after, in each card's order.
func TestModelSwapMidStream(t *testing.T) {
	data, err := os.ReadFile("../" + shippedModel)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tp := newTopics(t, 3)
	s := startService(t, tp, "FRAUD_MODEL_PATH="+path, "FRAUD_MODEL_RELOAD_CHECK=100ms", "FRAUD_STREAM_BATCH_SIZE=50")
	w, done := kcatPipe(t, tp.payments)
	now := time.Now().UTC()
	const total = 6000
	client := newClient(t)
	var oldVersion, newVersion string
	for i := range total {
		card := fmt.Sprintf("card-%03d", i%200)
		fmt.Fprintln(w, payment(fmt.Sprintf("s-%05d", i), card, fmt.Sprintf("%d.25", 101+i%90), now.Add(-time.Duration(total-i)*100*time.Millisecond)))
		if i == total/2 {
			w.Flush()
			waitForOutput(t, client, tp.highRisk, 1000)
			// The same model under another version, written beside it and renamed over it.
			first := modelDecisions(t, tp.highRisk)[0]
			oldVersion = first.ModelVersion
			newVersion = "swap-" + oldVersion[5:]
			other := bytes.ReplaceAll(data, []byte(oldVersion), []byte(newVersion))
			if err := os.WriteFile(path+".new", other, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
			waitForLog(t, s, `"msg":"model reloaded"`)
		}
	}
	done()
	waitCaughtUp(t, s, tp, 60*time.Second)
	s.stop(t)

	seen := map[string]string{}
	for _, m := range readAll(t, client, tp.highRisk) {
		var d modelDecision
		json.Unmarshal(m.Value, &d)
		if v, dup := seen[d.PaymentID]; dup {
			t.Fatalf("%s decided twice (%s, %s)", d.PaymentID, v, d.ModelVersion)
		}
		seen[d.PaymentID] = d.ModelVersion
	}
	if len(seen) != total {
		t.Fatalf("%d of %d payments decided", len(seen), total)
	}
	counts := map[string]int{}
	for _, v := range seen {
		counts[v]++
	}
	for card := range 200 { // each card's payments: the old model's, then the new one's
		swapped := false
		for i := card; i < total; i += 200 {
			v := seen[fmt.Sprintf("s-%05d", i)]
			if swapped && v == oldVersion {
				t.Fatalf("card-%03d: payment %d scored by the old model after the new one", card, i)
			}
			swapped = swapped || v == newVersion
		}
	}
	if counts[oldVersion] == 0 || counts[newVersion] == 0 || len(counts) != 2 {
		t.Errorf("decisions by model version: %v", counts)
	}
	t.Logf("decisions by model version: %v", counts)
}

// An analyst's verdict on fraud-labels reaches the merchant's fraud counts in Redis, which the
// model's features read (layout re-derived here: <prefix>:mf:{<FNV-1a of the merchant, hex>},
// field <day of the payment>:<first 6 bytes of SHA-256 of the payment id, hex>).
func TestLabelsReachMerchantFraudCounts(t *testing.T) {
	tp := newTopics(t, 1)
	at := time.Now().UTC().Add(-time.Minute)
	kcatProduce(t, tp.payments, []string{`card-l1	{"payment_id":"lab-1","card_id":"card-l1","amount":"12.00","currency":"EUR","timestamp":"` +
		at.Format(time.RFC3339) + `","merchant_id":"m-labelled"}`}, false)
	s := startService(t, tp)
	waitCaughtUp(t, s, tp, 30*time.Second)
	kcatProduce(t, tp.labels, []string{`card-l1	{"payment_id":"lab-1","card_id":"card-l1","label":"fraud","analyst":"a1","note":"confirmed","decided_at":"` +
		time.Now().UTC().Format(time.RFC3339) + `"}`, `x	not a label`}, false)

	h := uint32(2166136261)
	for _, c := range []byte("m-labelled") {
		h = (h ^ uint32(c)) * 16777619
	}
	pid := sha256.Sum256([]byte("lab-1"))
	key := fmt.Sprintf("%s:mf:{%08x}", tp.group, h)
	field := fmt.Sprintf("%d:%x", at.Unix()/86400, pid[:6])
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	deadline := time.Now().Add(30 * time.Second)
	for !rdb.HExists(context.Background(), key, field).Val() {
		if time.Now().After(deadline) {
			t.Fatalf("no field %s in %s after 30 s", field, key)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ttl := rdb.PTTL(context.Background(), key).Val(); ttl <= 0 {
		t.Errorf("fraud counts without a TTL (%s)", ttl)
	}
	waitForLog(t, s, `"msg":"not a label; skipped"`)
	s.stop(t)
}

// waitFolded waits until the merchants' pending list under the key prefix is empty: every
// payment counted so far is in its merchant's day counts.
func waitFolded(t *testing.T, prefix string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := rdb.LLen(context.Background(), prefix+":pending").Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d payments still to fold into the merchants' counts after 30 s", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
