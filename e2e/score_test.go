package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// scoreDecision is what the tests compare of a decision.
type scoreDecision struct {
	PaymentID   string   `json:"payment_id"`
	Flagged     bool     `json:"flagged"`
	Action      string   `json:"action"`
	Rule        string   `json:"rule"`
	Score       *float64 `json:"score"`
	WindowCount *int64   `json:"window_count"`
	Reasons     []struct {
		Code string `json:"code"`
	} `json:"reasons"`
}

func (d scoreDecision) codes() []string {
	var out []string
	for _, r := range d.Reasons {
		out = append(out, r.Code)
	}
	return out
}

// A payment scored over HTTP and then read from the payments topic is counted once in its card's
// state and decided the same both ways; a request whose card state does not answer in its budget
// gets a degraded answer in time; bad JSON, an invalid payment, a wrong role and an oversized
// batch get their 4xx.
func TestScoreThenStream(t *testing.T) {
	tp := newTopics(t, 3)
	addr := freePort(t)
	tokens := map[string]string{"sam": "e2e-scorer-token-0123456789", "vic": "e2e-viewer-token-0123456789"}
	var env []string
	for name, tok := range tokens {
		recordSecret(tok, "a token")
		sum := sha256.Sum256([]byte(tok))
		env = append(env, name+":"+map[string]string{"sam": "scorer", "vic": "viewer"}[name]+":"+hex.EncodeToString(sum[:]))
	}
	s := startService(t, tp, "FRAUD_API_LISTEN="+addr, "FRAUD_API_TOKENS="+strings.Join(env, ","), "FRAUD_SCORE_TIMEOUT=100ms",
		"FRAUD_MODEL_PATH="+shippedModel) // the model scores both ways
	base := "http://" + addr + "/v1"
	s.apiAddr(t) // the API listens
	now := time.Now().UTC()
	line := payment("score-1", "card-score", "150.00", now)
	body := line[strings.Index(line, "\t")+1:]

	code, b := postJSON(t, base+"/score", tokens["sam"], body)
	var overHTTP scoreDecision
	if err := json.Unmarshal(b, &overHTTP); code != 200 || err != nil {
		t.Fatalf("score: %d %s", code, b)
	}
	if !overHTTP.Flagged || overHTTP.WindowCount == nil || *overHTTP.WindowCount != 1 || overHTTP.Score == nil {
		t.Fatalf("scored %+v: want flagged (amount over 100), the card's first payment of the hour, and a model score", overHTTP)
	}
	// The same payment on the topic: decided the same, counted once.
	kcatProduce(t, tp.payments, []string{line}, false)
	client := newClient(t)
	waitForOutput(t, client, tp.highRisk, 1)
	var onTopic scoreDecision
	if err := json.Unmarshal(readAll(t, client, tp.highRisk)[0].Value, &onTopic); err != nil {
		t.Fatal(err)
	}
	same := overHTTP.PaymentID == onTopic.PaymentID && overHTTP.Flagged == onTopic.Flagged && overHTTP.Action == onTopic.Action &&
		overHTTP.Rule == onTopic.Rule && slices.Equal(overHTTP.codes(), onTopic.codes()) && *overHTTP.WindowCount == *onTopic.WindowCount &&
		onTopic.Score != nil && *overHTTP.Score == *onTopic.Score
	if !same {
		t.Errorf("over HTTP %+v, on the topic %+v: want the same decision", overHTTP, onTopic)
	}
	next := payment("score-2", "card-score", "20.00", now.Add(time.Second))
	code, b = postJSON(t, base+"/score", tokens["sam"], next[strings.Index(next, "\t")+1:])
	var second scoreDecision
	if json.Unmarshal(b, &second); code != 200 || second.WindowCount == nil || *second.WindowCount != 2 {
		t.Errorf("the card's next payment: %d %s; want window_count 2 (the first counted once)", code, b)
	}

	// Redis held still: the answer comes within the budget, without the card state.
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	if err := rdb.Do(context.Background(), "CLIENT", "PAUSE", 1500, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	late := payment("score-3", "card-score-late", "20.00", now)
	began := time.Now()
	code, b = postJSON(t, base+"/score", tokens["sam"], late[strings.Index(late, "\t")+1:])
	took := time.Since(began)
	rdb.Do(context.Background(), "CLIENT", "UNPAUSE")
	var degraded scoreDecision
	if json.Unmarshal(b, &degraded); code != 200 || !slices.Contains(degraded.codes(), "degraded_state") {
		t.Errorf("with Redis held: %d %s; want a degraded_state answer", code, b)
	}
	if took > 500*time.Millisecond { // the budget and the HTTP round trip, on a busy machine
		t.Errorf("with Redis held the answer took %s; the budget is 100ms", took)
	}

	big := "[" + strings.TrimSuffix(strings.Repeat(body+",", 501), ",") + "]"
	for _, c := range []struct {
		path, token, body, code string
		want                    int
	}{
		{"/score", tokens["sam"], `{"payment_id":`, "invalid_json", 400},
		{"/score", tokens["sam"], `{"payment_id":"x","card_id":"c","currency":"EUR","timestamp":"2026-11-30T10:00:00Z"}`, "missing_field", 422},
		{"/score", tokens["vic"], body, "forbidden", 403},
		{"/score:batch", tokens["sam"], big, "batch_too_large", 422},
	} {
		code, b := postJSON(t, base+c.path, c.token, c.body)
		var e struct{ Error struct{ Code string } }
		json.Unmarshal(b, &e)
		if code != c.want || e.Error.Code != c.code {
			t.Errorf("POST %s %.40s: %d %s, want %d %s", c.path, c.body, code, b, c.want, c.code)
		}
	}
	s.stop(t)
}
