package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis losing its data mid-stream (FLUSHALL) is noticed by the next batch: one ERROR line,
// fraud_state_losses_total 1, /readyz failing its state check, and the windows start again.
func TestRedisDataLossIsReported(t *testing.T) {
	r := startPrivateRedis(t)
	tp := newTopics(t, 1)
	s := startService(t, tp, "FRAUD_REDIS_ADDRS="+r.addr)
	addr := s.apiAddr(t)
	at := time.Now().UTC().Truncate(time.Second)
	send := func(from, to int, amount string) {
		t.Helper()
		var lines []string
		for i := from; i < to; i++ {
			lines = append(lines, payment(fmt.Sprintf("l-%02d", i), "card-x", amount, at))
		}
		kcatProduce(t, tp.payments, lines, false)
		waitCaughtUp(t, s, tp, 60*time.Second)
	}
	send(0, 5, "10.00")
	if status, body := readyz(t, addr); status != 200 {
		t.Fatalf("readyz %d %v before the loss", status, body)
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.addr})
	defer rdb.Close()
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	send(5, 6, "500.00")
	send(6, 8, "500.00")

	ds := windowDecisions(t, newClient(t), tp.highRisk)
	if len(ds) != 3 || ds[0].WindowCount == nil || *ds[0].WindowCount != 1 {
		t.Fatalf("decisions %+v; want 3, the first after the loss counted 1 in its window", ds)
	}
	if got := scrape(t, addr)["fraud_state_losses_total"]; got != 1 {
		t.Errorf("fraud_state_losses_total = %v, want 1", got)
	}
	status, body := readyz(t, addr)
	checks, _ := body["checks"].(map[string]any)
	if state, _ := checks["state"].(string); status != 503 || !strings.Contains(state, "redis lost its data") {
		t.Errorf("readyz %d %v after the loss; want 503 with the state check saying so", status, body)
	}
	if n := strings.Count(s.logs.String(), `"msg":"redis lost its data`); n != 1 {
		t.Errorf("%d log lines about the loss, want 1", n)
	}
	s.stop(t)
}
