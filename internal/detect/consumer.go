package detect

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/IBM/sarama"
)

// Consume runs the consumer group until ctx is done: it joins, consumes until the session ends
// (a rebalance, or ctx), and joins again. It closes group before it returns; closing commits the
// offsets marked last.
func Consume(ctx context.Context, group sarama.ConsumerGroup, topics []string, h sarama.ConsumerGroupHandler, log *slog.Logger) error {
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		for err := range group.Errors() {
			log.Error("consumer group", "err", err)
		}
	}()
	defer func() {
		if err := group.Close(); err != nil {
			log.Error("close consumer group", "err", err)
		}
		<-errsDone
	}()
	backoff := 100 * time.Millisecond
	for {
		err := group.Consume(ctx, topics, h)
		switch {
		case ctx.Err() != nil || errors.Is(err, sarama.ErrClosedConsumerGroup):
			return nil
		case err != nil:
			log.Error("consume; joining again", "err", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil
			}
			backoff = min(2*backoff, 10*time.Second)
		default:
			backoff = 100 * time.Millisecond
		}
	}
}
