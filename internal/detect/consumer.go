package detect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// Consume runs the consumer group until ctx is done: it joins, consumes until the session ends
// (a rebalance, or ctx), and joins again. It closes group before it returns; closing commits the
// offsets marked last (and, with a group instance id, does not leave the group: the member's
// partitions wait for it until the session timeout).
//
// The group's errors and failed joins go through logs, which writes a few lines a minute of each
// cause: a broker outage fails every partition every retry. A member fenced by another that joined
// with the same group instance id stops: Consume returns the error rather than take the
// partitions back, which would fence the other in turn.
func Consume(ctx context.Context, group sarama.ConsumerGroup, topics []string, h sarama.ConsumerGroupHandler, logs *LogLimiter) error {
	var fenced atomic.Bool
	errsDone := make(chan struct{})
	go func() {
		defer close(errsDone)
		flush := time.NewTicker(5 * time.Second)
		defer flush.Stop()
		for {
			select {
			case err, ok := <-group.Errors():
				if !ok {
					return
				}
				if errors.Is(err, sarama.ErrFencedInstancedId) {
					fenced.Store(true)
				}
				logError(ctx, logs, "consumer group", err)
			case <-flush.C:
				logs.Flush(ctx)
			}
		}
	}()
	defer func() {
		if err := group.Close(); err != nil {
			logError(ctx, logs, "close consumer group", err)
		}
		<-errsDone
	}()
	backoff := 100 * time.Millisecond
	for {
		err := group.Consume(ctx, topics, h)
		switch {
		case ctx.Err() != nil || errors.Is(err, sarama.ErrClosedConsumerGroup):
			return nil
		case errors.Is(err, sarama.ErrFencedInstancedId) || fenced.Load():
			return fmt.Errorf("consume %s: %w: another member joined the group with this member's "+
				"group instance id (kafka.group_instance_id must differ between instances)", strings.Join(topics, ","), sarama.ErrFencedInstancedId)
		case err != nil:
			logError(ctx, logs, "consume; joining again", err, "topics", topics, "backoff", backoff.String())
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

// logError logs err at level error through logs, naming the partition of a partition's error.
func logError(ctx context.Context, logs *LogLimiter, msg string, err error, args ...any) {
	var ce *sarama.ConsumerError
	if errors.As(err, &ce) {
		args = append(args, "topic", ce.Topic, "partition", ce.Partition)
	}
	logs.Log(ctx, slog.LevelError, logCause(msg, err), msg, append(args, "err", err)...)
}

// logCause is what the lines about err have in common whatever the topic, partition, broker
// address or port: the message and the error's text without the partition and without digits.
// An outage then makes a few causes (connection refused, EOF, broker not connected), not one for
// each partition and connection.
func logCause(msg string, err error) string {
	var ce *sarama.ConsumerError
	if errors.As(err, &ce) && ce.Err != nil {
		err = ce.Err
	}
	text := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return -1
		}
		return r
	}, err.Error())
	if len(text) > 256 {
		text = text[:256]
	}
	return msg + ": " + text
}
