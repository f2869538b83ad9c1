package detect

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// Outputs sends the records a batch produces through one async producer and tells each batch
// when all of its records are acknowledged.
type Outputs struct {
	p    sarama.AsyncProducer
	acks sync.WaitGroup
}

// NewOutputs takes over p, which must return successes and errors.
func NewOutputs(p sarama.AsyncProducer) *Outputs {
	o := &Outputs{p: p}
	o.acks.Add(2)
	go func() {
		defer o.acks.Done()
		for m := range p.Successes() {
			m.Metadata.(*acks).ack(m, nil)
		}
	}()
	go func() {
		defer o.acks.Done()
		for e := range p.Errors() {
			e.Msg.Metadata.(*acks).ack(e.Msg, e.Err)
		}
	}()
	return o
}

// send hands msgs to the producer and returns what tracks their acknowledgements. Once ctx ends
// it keeps handing them over for up to patience, so that a batch is not cut in two (its first
// records produced, its offsets never marked) just because the session ended; if the producer
// takes nothing for that long, the rest count as failed and the batch is not marked.
func (o *Outputs) send(ctx context.Context, msgs []*sarama.ProducerMessage, patience time.Duration) *acks {
	a := &acks{done: make(chan struct{})}
	a.left.Store(int64(len(msgs)))
	if len(msgs) == 0 {
		a.doneAt = time.Now()
		close(a.done)
		return a
	}
	var giveUp <-chan time.Time
	for i, m := range msgs {
		m.Metadata = a
		select {
		case o.p.Input() <- m:
			continue
		case <-ctx.Done():
		}
		if giveUp == nil {
			t := time.NewTimer(patience)
			defer t.Stop()
			giveUp = t.C
		}
		select {
		case o.p.Input() <- m:
		case <-giveUp:
			for _, m := range msgs[i:] {
				a.ack(m, fmt.Errorf("not sent: the session ended and the producer took nothing for %s", patience))
			}
			return a
		}
	}
	return a
}

// Close flushes what is buffered, waits up to timeout for the last acknowledgements and closes
// the producer.
func (o *Outputs) Close(timeout time.Duration) error {
	o.p.AsyncClose()
	done := make(chan struct{})
	go func() { o.acks.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(timeout):
		return errors.New("producer did not flush within " + timeout.String())
	}
}

// acks counts down the acknowledgements of one batch's records.
type acks struct {
	left   atomic.Int64
	done   chan struct{} // closed when every record is acknowledged or has failed
	doneAt time.Time     // when done was closed; read it after done

	mu     sync.Mutex
	failed []failure
}

// failure is a record the producer gave up on, and why.
type failure struct {
	msg *sarama.ProducerMessage
	err error
}

func (a *acks) ack(m *sarama.ProducerMessage, err error) {
	if err != nil {
		a.mu.Lock()
		a.failed = append(a.failed, failure{m, err})
		a.mu.Unlock()
	}
	if a.left.Add(-1) == 0 {
		a.doneAt = time.Now()
		close(a.done)
	}
}

// result is valid once done is closed: the records that failed.
func (a *acks) result() []failure {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failed
}
