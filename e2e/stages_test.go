package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// With stages.windows and stages.reviews off, the stream asks Redis nothing and opens no review:
// the amount rule alone decides, and decisions carry no window count.
func TestStagesOff(t *testing.T) {
	tp := newTopics(t, 3)
	svc := startService(t, tp, "FRAUD_STAGES_WINDOWS=false", "FRAUD_STAGES_REVIEWS=false", "FRAUD_MODEL_PATH="+shippedModel)
	hour := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var lines []string
	for i := range 12 { // twelve on one card within the hour: velocity would flag two
		lines = append(lines, payment(fmt.Sprintf("s-%02d", i+1), "card-busy", "10.00", hour.Add(time.Duration(i)*time.Second)))
	}
	lines = append(lines, payment("s-large", "card-other", "100.01", hour))
	kcatProduce(t, tp.payments, lines, false)
	waitCaughtUp(t, svc, tp, 60*time.Second)
	svc.stop(t)

	ds := windowDecisions(t, newClient(t), tp.highRisk)
	if len(ds) != 1 || ds[0].PaymentID != "s-large" || ds[0].WindowCount != nil || len(ds[0].Reasons) != 1 ||
		ds[0].Reasons[0].Code != "amount_over_threshold" {
		t.Fatalf("decisions %+v, want s-large alone, for its amount, without a window count", ds)
	}
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	keys, err := rdb.Keys(context.Background(), tp.group+":*").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("keys written under the stream's prefix: %v, %v", keys, err)
	}
}
