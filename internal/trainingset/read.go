package trainingset

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/IBM/sarama"
)

// ErrNoTopic is returned for a topic the brokers do not have.
var ErrNoTopic = errors.New("no such topic")

// Topic is what to read of a topic: each partition from its oldest kept record up to its
// high-water mark when Ends was called.
type Topic struct {
	Name  string
	Parts []Part
}

// Part is one partition's range of offsets, [From, To).
type Part struct {
	ID       int32
	From, To int64
}

// Records is how many offsets the topic's ranges span (compaction may have left fewer records).
func (t Topic) Records() int64 {
	var n int64
	for _, p := range t.Parts {
		n += p.To - p.From
	}
	return n
}

// Ends takes the ranges of every partition of topic. client must not create topics on a
// metadata request (sarama's Metadata.AllowAutoTopicCreation false), or a missing topic is made.
func Ends(client sarama.Client, topic string) (Topic, error) {
	if err := client.RefreshMetadata(topic); err != nil {
		if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return Topic{}, fmt.Errorf("%w: %s", ErrNoTopic, topic)
		}
		return Topic{}, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	ids, err := client.Partitions(topic)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) || err == nil && len(ids) == 0 {
		return Topic{}, fmt.Errorf("%w: %s", ErrNoTopic, topic)
	}
	if err != nil {
		return Topic{}, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	t := Topic{Name: topic}
	for _, id := range ids {
		to, err := client.GetOffset(topic, id, sarama.OffsetNewest)
		if err != nil {
			return Topic{}, fmt.Errorf("high-water mark of %s/%d: %w", topic, id, err)
		}
		from, err := client.GetOffset(topic, id, sarama.OffsetOldest)
		if err != nil {
			return Topic{}, fmt.Errorf("oldest offset of %s/%d: %w", topic, id, err)
		}
		t.Parts = append(t.Parts, Part{ID: id, From: from, To: to})
	}
	return t, nil
}

// Read calls each with every record of t's ranges, a partition after the other in offset order,
// and where it is (topic/partition@offset). A partition that sends nothing for idle before its
// range is read fails the read.
func Read(ctx context.Context, client sarama.Client, t Topic, idle time.Duration, each func(where string, value []byte)) error {
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("consumer of %s: %w", t.Name, err)
	}
	defer consumer.Close()
	for _, p := range t.Parts {
		if p.From >= p.To {
			continue
		}
		if err := readPart(ctx, consumer, t.Name, p, idle, each); err != nil {
			return err
		}
	}
	return nil
}

func readPart(ctx context.Context, consumer sarama.Consumer, topic string, p Part, idle time.Duration, each func(string, []byte)) error {
	pc, err := consumer.ConsumePartition(topic, p.ID, p.From)
	if errors.Is(err, sarama.ErrOffsetOutOfRange) {
		// Retention deleted the oldest records since Ends: read what is left.
		pc, err = consumer.ConsumePartition(topic, p.ID, sarama.OffsetOldest)
	}
	if err != nil {
		return fmt.Errorf("read %s/%d: %w", topic, p.ID, err)
	}
	defer pc.Close()
	timer := time.NewTimer(idle)
	defer timer.Stop()
	at := p.From
	for {
		select {
		case m := <-pc.Messages():
			if m.Offset >= p.To {
				return nil // past the high-water mark taken at the start: a later record
			}
			each(fmt.Sprintf("%s/%d@%d", topic, p.ID, m.Offset), m.Value)
			if m.Offset >= p.To-1 {
				return nil
			}
			at = m.Offset + 1
			timer.Reset(idle)
		case err := <-pc.Errors():
			return fmt.Errorf("read %s/%d at offset %d: %w", topic, p.ID, at, err)
		case <-timer.C:
			return fmt.Errorf("read %s/%d: nothing for %s at offset %d, before its high-water mark %d", topic, p.ID, idle, at, p.To)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ReadFile calls each with every non-empty line of the file at path and where it is (path:line).
func ReadFile(path string, each func(where string, value []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for n := 1; sc.Scan(); n++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		each(fmt.Sprintf("%s:%d", path, n), sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}
