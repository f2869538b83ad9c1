package detect

import (
	"context"
	"log/slog"
	"time"

	"github.com/IBM/sarama"

	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/rules"
)

// Reviews is the analysts' review queue.
type Reviews interface {
	// OpenAll opens a review for each flagged decision, once however often it is redelivered,
	// and says how many it opened (those not open already).
	OpenAll(ctx context.Context, ds []decision.Decision) (int, error)
}

// ReviewHandler reads the decisions topic (high-risk-payments) into the review queue: a review
// for every flagged payment, opened once. It runs in a consumer group of its own, so that the
// stream keeps deciding while Redis is away (fail_open) and the queue catches up after: a
// decision is marked only once its review exists.
type ReviewHandler struct {
	reviews Reviews
	m       *Metrics
	log     *slog.Logger
	logs    *LogLimiter // the retries' warnings
}

// NewReviewHandler returns a handler that opens reviews in reviews, and logs its retries through
// logs.
func NewReviewHandler(reviews Reviews, m *Metrics, log *slog.Logger, logs *LogLimiter) *ReviewHandler {
	return &ReviewHandler{reviews: reviews, m: m, log: log, logs: logs}
}

var _ sarama.ConsumerGroupHandler = (*ReviewHandler)(nil)

func (h *ReviewHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *ReviewHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// maxReviewsPerCall bounds the decisions of one round trip to the review store: a call of 100 is
// one script that holds Redis about 1.5 ms (internal/review's BenchmarkOpenAll), far from
// redis.read_timeout even on a loaded machine; the stream's own calls get in between the calls.
const maxReviewsPerCall = 100

// ConsumeClaim opens the reviews of what has arrived, up to maxReviewsPerCall decisions a round trip, retrying
// while Redis fails, and marks the last one once they are open. A record that is not a decision
// is logged and skipped.
func (h *ReviewHandler) ConsumeClaim(s sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	var batch []decision.Decision
	var last *sarama.ConsumerMessage
	for {
		select {
		case m, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			batch, last = batch[:0], m
			h.add(&batch, m)
		more:
			for len(batch) < maxReviewsPerCall {
				select {
				case m, ok := <-claim.Messages():
					if !ok {
						break more
					}
					last = m
					h.add(&batch, m)
				default:
					break more
				}
			}
			if !h.open(s.Context(), batch) {
				return nil
			}
			s.MarkMessage(last, "")
		case <-s.Context().Done():
			return nil
		}
	}
}

func (h *ReviewHandler) add(batch *[]decision.Decision, m *sarama.ConsumerMessage) {
	d, err := decision.Unmarshal(m.Value)
	// A flagged payment opens a review, and so does one a review rule sent to the analysts.
	if err != nil || d.PaymentID == "" || d.CardID == "" || (!d.Flagged && d.Action != rules.ActionReview) {
		h.log.Warn("not a decision; no review opened", "topic", m.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
		return
	}
	*batch = append(*batch, d)
}

// open opens the reviews, retrying with backoff until it works or the session ends.
func (h *ReviewHandler) open(ctx context.Context, ds []decision.Decision) bool {
	wait := 100 * time.Millisecond
	for {
		opened, err := h.reviews.OpenAll(ctx, ds)
		if err == nil {
			h.m.reviews.Add(float64(opened))
			return true
		}
		h.m.pipeline.RedisErrors.WithLabelValues("reviews").Inc()
		h.logs.Log(ctx, slog.LevelWarn, "reviews not opened", "reviews not opened; retrying", "decisions", len(ds), "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		h.m.pipeline.RedisRetries.WithLabelValues("reviews").Inc()
		wait = min(2*wait, 5*time.Second)
	}
}
