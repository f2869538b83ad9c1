package detect

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
)

// Labeler records analysts' verdicts.
type Labeler interface {
	// Label records that a payment of card was found fraud (or not); false if the payment is
	// unknown to the state.
	Label(ctx context.Context, card, paymentID string, fraud bool) (bool, error)
}

// LabelHandler reads the labels topic (analysts' verdicts) into the merchants' fraud counts, which
// the model's features read.
type LabelHandler struct {
	state Labeler
	m     *Metrics
	log   *slog.Logger
	logs  *LogLimiter // the retries' warnings
}

// NewLabelHandler returns a handler that records each label with state, and logs its retries
// through logs.
func NewLabelHandler(state Labeler, m *Metrics, log *slog.Logger, logs *LogLimiter) *LabelHandler {
	return &LabelHandler{state: state, m: m, log: log, logs: logs}
}

var _ sarama.ConsumerGroupHandler = (*LabelHandler)(nil)

func (h *LabelHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *LabelHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim records each label, retrying while Redis fails, and marks it once recorded. A
// record that is not a label is logged and skipped: verdicts have no dead-letter topic of their own.
func (h *LabelHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		var l struct {
			PaymentID string `json:"payment_id"`
			CardID    string `json:"card_id"`
			Label     string `json:"label"`
		}
		if err := json.Unmarshal(m.Value, &l); err != nil || l.PaymentID == "" || l.CardID == "" || (l.Label != "fraud" && l.Label != "legitimate") {
			h.log.Warn("not a label; skipped", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
			s.MarkMessage(m, "")
			continue
		}
		wait := 100 * time.Millisecond
		for {
			known, err := h.state.Label(s.Context(), l.CardID, l.PaymentID, l.Label == "fraud")
			if err == nil {
				if known {
					h.m.labels.Inc()
				} else {
					h.log.Info("label for a payment the state does not hold; not counted", "payment_id", l.PaymentID)
				}
				break
			}
			h.m.pipeline.RedisErrors.WithLabelValues("labels").Inc()
			if permanentState(err) {
				h.log.Error("label not recorded; skipped", "payment_id", l.PaymentID, "err", err)
				break
			}
			h.logs.Log(s.Context(), slog.LevelWarn, "label not recorded", "label not recorded; retrying", "payment_id", l.PaymentID, "err", err)
			select {
			case <-s.Context().Done():
				return nil
			case <-time.After(wait):
			}
			h.m.pipeline.RedisRetries.WithLabelValues("labels").Inc()
			wait = min(2*wait, 5*time.Second)
		}
		s.MarkMessage(m, "")
	}
	return nil
}

// permanentState reports whether Redis answered with an error, which trying again cannot change
// (a script error, a key of the wrong type), as opposed to not answering.
func permanentState(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !redis.HasErrorPrefix(err, "LOADING") && !redis.HasErrorPrefix(err, "BUSY") &&
		!redis.HasErrorPrefix(err, "TRYAGAIN") && !redis.HasErrorPrefix(err, "CLUSTERDOWN") && !redis.HasErrorPrefix(err, "MASTERDOWN")
}
