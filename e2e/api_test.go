package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func apiGet(t *testing.T, url, token string, v any) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, v)
	return resp.StatusCode
}

// Payments the stream flags are listed by the API within a second of their decisions reaching
// high-risk-payments (the group <group>-reviews opens them from there), and a verdict posted over
// HTTP appears on the labels topic.
func TestReviewsListedAndVerdictPublished(t *testing.T) {
	tp := newTopics(t, 3)
	addr := freePort(t)
	const token = "e2e-analyst-token-0123456789"
	recordSecret(token, "the analyst's API token")
	sum := sha256.Sum256([]byte(token))
	s := startService(t, tp, "FRAUD_API_LISTEN="+addr, "FRAUD_API_TOKENS=eve:analyst:"+hex.EncodeToString(sum[:]))
	base := "http://" + addr + "/v1"
	deadline := time.Now().Add(20 * time.Second)
	for apiGet(t, base+"/openapi.json", "", &map[string]any{}) != 200 {
		if time.Now().After(deadline) || !s.running() {
			t.Fatalf("the API did not come up at %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	now := time.Now().UTC()
	var lines []string
	for i := range 20 {
		lines = append(lines, payment(fmt.Sprintf("api-%02d", i), fmt.Sprintf("card-a%d", i%4), "150.00", now.Add(-time.Duration(i)*time.Second)))
	}
	kcatProduce(t, tp.payments, lines, false)
	client := newClient(t)
	waitForOutput(t, client, tp.highRisk, 20)
	// The decisions are out: their reviews must be there already (allowing a second).
	var page struct {
		Reviews []struct {
			PaymentID string `json:"payment_id"`
			Status    string `json:"status"`
		} `json:"reviews"`
	}
	listedBy := time.Now().Add(time.Second)
	for {
		if code := apiGet(t, base+"/reviews?limit=100", token, &page); code != 200 {
			t.Fatalf("list: %d", code)
		}
		if len(page.Reviews) == 20 {
			break
		}
		if time.Now().After(listedBy) {
			t.Fatalf("%d of 20 reviews listed a second after their decisions", len(page.Reviews))
		}
		time.Sleep(20 * time.Millisecond)
	}

	if code, body := postJSON(t, base+"/reviews/api-07/verdict", token, `{"label":"fraud","note":"confirmed by phone"}`); code != 200 {
		t.Fatalf("verdict: %d %s", code, body)
	}
	waitForOutput(t, client, tp.labels, 1)
	msgs := readAll(t, client, tp.labels)
	var l struct {
		PaymentID string `json:"payment_id"`
		CardID    string `json:"card_id"`
		Label     string `json:"label"`
		Analyst   string `json:"analyst"`
		Note      string `json:"note"`
	}
	if err := json.Unmarshal(msgs[0].Value, &l); err != nil {
		t.Fatal(err)
	}
	if l.PaymentID != "api-07" || l.CardID != "card-a3" || l.Label != "fraud" || l.Analyst != "eve" || l.Note != "confirmed by phone" || string(msgs[0].Key) != "card-a3" {
		t.Errorf("label %+v (key %s)", l, msgs[0].Key)
	}
	s.stop(t)
}
