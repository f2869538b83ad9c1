package detect

import (
	"sync"
	"sync/atomic"

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

// send hands msgs to the producer and returns what tracks their acknowledgements.
func (o *Outputs) send(msgs []*sarama.ProducerMessage) *acks {
	a := &acks{done: make(chan struct{})}
	a.left.Store(int64(len(msgs)))
	if len(msgs) == 0 {
		close(a.done)
		return a
	}
	for _, m := range msgs {
		m.Metadata = a
		o.p.Input() <- m
	}
	return a
}

// Close flushes what is buffered, waits for the last acknowledgements and closes the producer.
func (o *Outputs) Close() error {
	o.p.AsyncClose()
	o.acks.Wait()
	return nil
}

// acks counts down the acknowledgements of one batch's records.
type acks struct {
	left atomic.Int64
	done chan struct{} // closed when every record is acknowledged or has failed

	mu     sync.Mutex
	failed []*sarama.ProducerMessage
	err    error
}

func (a *acks) ack(m *sarama.ProducerMessage, err error) {
	if err != nil {
		a.mu.Lock()
		a.failed = append(a.failed, m)
		if a.err == nil {
			a.err = err // the first says enough; the count of failed records says the rest
		}
		a.mu.Unlock()
	}
	if a.left.Add(-1) == 0 {
		close(a.done)
	}
}

// result is valid once done is closed: the records that failed, and why.
func (a *acks) result() ([]*sarama.ProducerMessage, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.failed, a.err
}
