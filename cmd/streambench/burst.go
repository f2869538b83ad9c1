package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/IBM/sarama"

	"github.com/paysentry/fraud-detector/internal/paygen"
)

// burst is one extra card that receives n payments, evenly spread over span, from begin after the
// stream's start, while the stream writes its other cards at the set rate.
type burst struct {
	n     int
	card  string
	begin time.Duration
	span  time.Duration
}

// write sends the burst's payments to p's input from began+begin on, and returns when all are
// handed over or ctx ends.
func (bu burst) write(ctx context.Context, p sarama.AsyncProducer, topic string, began time.Time) {
	rng := rand.New(rand.NewPCG(11, 11))
	for i := range bu.n {
		at := began.Add(bu.begin + time.Duration(float64(i)*float64(bu.span)/float64(bu.n)))
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		w := paygen.Wire{
			PaymentID:        fmt.Sprintf("%s-%06d", bu.card, i),
			CardID:           bu.card,
			Amount:           strconv.FormatFloat(5+rng.Float64()*95, 'f', 2, 64),
			Currency:         "EUR",
			Timestamp:        time.Now().UTC().Format(time.RFC3339Nano),
			MerchantID:       fmt.Sprintf("m-%05d", rng.IntN(5000)),
			MerchantCategory: "5999",
			Country:          "DE",
			Channel:          "ecom",
			DeviceID:         "dev-" + bu.card,
		}
		b, _ := json.Marshal(w)
		select {
		case p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(bu.card), Value: sarama.ByteEncoder(b)}:
		case <-ctx.Done():
			return
		}
	}
}

// latencies are the decision latencies of a group of payments.
type latencies []time.Duration

func (s latencies) describe() string {
	if len(s) == 0 {
		return "no decisions"
	}
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("%d decisions: p50 %s, p90 %s, p99 %s, max %s", len(s), q(0.50), q(0.90), q(0.99), s[len(s)-1])
}
