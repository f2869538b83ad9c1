package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/paysentry/fraud-detector/internal/paygen"
)

// decisionRecord is what a consumer of high-risk-payments reads; decoded here without the
// service's own types.
type decisionRecord struct {
	PaymentID string `json:"payment_id"`
	CardID    string `json:"card_id"`
	Flagged   bool   `json:"flagged"`
	Reasons   []struct {
		Code, Detail string
	} `json:"reasons"`
	Payment map[string]any `json:"payment"`
}

// overThreshold says whether a decimal amount is greater than 100, with math/big rather than the
// service's decimal code.
func overThreshold(t *testing.T, amount string) bool {
	r, ok := new(big.Rat).SetString(amount)
	if !ok {
		t.Fatalf("bad amount %q", amount)
	}
	return r.Cmp(big.NewRat(100, 1)) > 0
}

func TestStreamRoutesDecisionsAndDeadLetters(t *testing.T) {
	tp := newTopics(t, 6)
	svc := startService(t, tp)

	// Malformed records first: the service must go on to decide the valid ones after them.
	ts := time.Now().UTC().Format(time.RFC3339) // inside the open window: nothing is late
	bad := map[string]struct{ value, code string }{
		"bad-json":     {`{"payment_id":"x1","amount":`, "invalid_json"},
		"bad-missing":  {`{"payment_id":"x2","card_id":"c","currency":"EUR","timestamp":"` + ts + `"}`, "missing_field"},
		"bad-zero":     {`{"payment_id":"x3","card_id":"c","amount":0,"currency":"EUR","timestamp":"` + ts + `"}`, "invalid_field"},
		"bad-negative": {`{"payment_id":"x4","card_id":"c","amount":"-10.00","currency":"EUR","timestamp":"` + ts + `"}`, "invalid_field"},
		"bad-currency": {`{"payment_id":"x5","card_id":"c","amount":"10.00","currency":"XYZ","timestamp":"` + ts + `"}`, "invalid_field"},
		"bad-time":     {`{"payment_id":"x6","card_id":"c","amount":"10.00","currency":"EUR","timestamp":"02/03/2026"}`, "invalid_field"},
		"bad-utf8":     {"{\"payment_id\":\"x7\xc3\x28\",\"card_id\":\"c\",\"amount\":\"10.00\",\"currency\":\"EUR\",\"timestamp\":\"" + ts + "\"}", "invalid_utf8"},
		"bad-empty":    {"", "empty"},
		"bad-pan":      {`{"payment_id":"x8","card_number":"4111111111111111","amount":"oops","currency":"EUR","timestamp":"` + ts + `"}`, "invalid_field"},
	}
	var lines []string
	for key, b := range bad {
		lines = append(lines, key+"\t"+b.value)
	}
	kcatProduce(t, tp.payments, lines, false)
	kcatProduce(t, tp.payments, []string{"bad-null\t"}, true)
	blob := make([]byte, 1<<20)
	rand.NewChaCha8([32]byte{1}).Read(blob)
	blobFile := filepath.Join(t.TempDir(), "blob.bin")
	os.WriteFile(blobFile, blob, 0o600)
	kcatProduceFiles(t, tp.payments, blobFile)

	// Then valid payments, with the amounts at the edge of the threshold among them.
	edges := []string{`"100"`, `"100.00"`, `100`, `100.0`, `"100.01"`, `100.001`, `"99.99"`, `"0.01"`, `"1e2"`, `1e2`, `1.001e2`}
	want := map[string]bool{} // payment_id -> flagged
	var pans []string
	lines = lines[:0]
	for i := range 3000 {
		id := fmt.Sprintf("e2e-%05d", i)
		card := fmt.Sprintf("card-%05d", i) // one payment a card: only the amount rule can flag
		amount := fmt.Sprintf(`"%d.%02d"`, 20+rand.IntN(200), rand.IntN(100))
		if i < len(edges) {
			amount = edges[i]
		}
		if amount == `"1e2"` { // not a plain decimal string: dead-lettered
			lines = append(lines, "bad-exp\t"+`{"payment_id":"`+id+`","card_id":"`+card+`","amount":"1e2","currency":"EUR","timestamp":"`+ts+`"}`)
			continue
		}
		cardField := `"card_id":"` + card + `"`
		if i%10 == 3 {
			cardField = `"card_number":"` + paygen.PAN(i) + `"`
			pans = append(pans, paygen.PAN(i))
		}
		lines = append(lines, card+"\t"+`{"payment_id":"`+id+`",`+cardField+`,"amount":`+amount+`,"currency":"EUR","timestamp":"`+ts+`","merchant_id":"m1","note":{"kept":true}}`)
		want[id] = overThreshold(t, strings.Trim(amount, `"`))
	}
	kcatProduce(t, tp.payments, lines, false)

	waitCaughtUp(t, svc, tp, 60*time.Second)
	if !svc.running() {
		t.Fatalf("service stopped: %v", svc.err)
	}
	client := newClient(t)

	// Every payment over 100, and only those, is on high-risk-payments, once, with its reason.
	seen := map[string]int{}
	for _, m := range readAll(t, client, tp.highRisk) {
		var d decisionRecord
		if err := json.Unmarshal(m.Value, &d); err != nil {
			t.Fatalf("decision is not JSON: %v: %s", err, m.Value)
		}
		seen[d.PaymentID]++
		if !want[d.PaymentID] {
			t.Errorf("%s flagged, amount %v is not over 100", d.PaymentID, d.Payment["amount"])
		}
		if !d.Flagged || len(d.Reasons) != 1 || d.Reasons[0].Code != "amount_over_threshold" || !strings.Contains(d.Reasons[0].Detail, "threshold of 100") {
			t.Errorf("%s: decision %s", d.PaymentID, m.Value)
		}
		if string(m.Key) != d.CardID || d.CardID == "" {
			t.Errorf("%s: key %q, card %q", d.PaymentID, m.Key, d.CardID)
		}
		if kept, _ := d.Payment["note"].(map[string]any); kept["kept"] != true {
			t.Errorf("%s: unknown field not passed through: %s", d.PaymentID, m.Value)
		}
		for _, pan := range pans {
			if bytes.Contains(m.Value, []byte(pan)) {
				t.Errorf("%s: card number %s in clear", d.PaymentID, pan)
			}
		}
		if n, ok := d.Payment["card_number"].(string); ok && !strings.Contains(n, "******") {
			t.Errorf("%s: card number not masked: %s", d.PaymentID, n)
		}
	}
	flagged := 0
	for id, f := range want {
		if f {
			flagged++
			if seen[id] != 1 {
				t.Errorf("%s: on high-risk-payments %d times, want once", id, seen[id])
			}
		}
	}
	t.Logf("%d valid payments, %d flagged", len(want), flagged)

	// Every malformed record is dead-lettered as it came, with headers naming the error and source.
	dlq := readAll(t, client, tp.dlq)
	got := map[string]*sarama.ConsumerMessage{}
	for _, m := range dlq {
		key := string(m.Key)
		if key == "" && header(m, "error.code") == "too_large" {
			key = "blob"
		}
		if got[key] != nil {
			t.Errorf("%s dead-lettered twice", key)
		}
		got[key] = m
		if header(m, "source.topic") != tp.payments || header(m, "source.partition") == "" || header(m, "source.offset") == "" {
			t.Errorf("%s: source headers missing: %v", key, m.Headers)
		}
		if header(m, "error.message") == "" {
			t.Errorf("%s: no error.message", key)
		}
	}
	for key, b := range bad {
		m := got[key]
		switch {
		case m == nil:
			t.Errorf("%s not dead-lettered", key)
		case header(m, "error.code") != b.code:
			t.Errorf("%s: error.code %q, want %q (%s)", key, header(m, "error.code"), b.code, header(m, "error.message"))
		case key == "bad-pan":
			if bytes.Contains(m.Value, []byte("4111111111111111")) || !bytes.Contains(m.Value, []byte("411111******1111")) {
				t.Errorf("card number not redacted in dead letter: %s", m.Value)
			}
		case !bytes.Equal(m.Value, []byte(b.value)):
			t.Errorf("%s: dead letter %q, want the original %q", key, m.Value, b.value)
		}
	}
	if m := got["bad-null"]; m == nil || m.Value != nil || header(m, "error.code") != "empty" {
		t.Errorf("null record: %+v", m)
	}
	if m := got["bad-exp"]; m == nil || header(m, "error.code") != "invalid_field" {
		t.Errorf("exponent in a string amount: %+v", m)
	}
	if m := got["blob"]; m == nil {
		t.Error("1 MiB blob not dead-lettered")
	} else if header(m, "error.truncated") != fmt.Sprint(len(blob)) || !bytes.HasPrefix(blob, m.Value) || len(m.Value) == 0 {
		t.Errorf("blob: truncated=%q, %d bytes", header(m, "error.truncated"), len(m.Value))
	}
	if len(dlq) != len(bad)+3 {
		t.Errorf("%d dead letters, want %d", len(dlq), len(bad)+3)
	}

	svc.stop(t) // SIGTERM mid-backlog is TestStopDrainsAndCommits
}
