package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/paygen"
)

// cardHours counts the active card-hours of the payments written: distinct (card, UTC hour of the
// event time) pairs. A card is what the service keys its state by: the card_id, or the card_number
// (which the service turns into one card id of its own), so paygen's card written once with each
// counts twice.
type cardHours struct {
	seen map[cardHour]struct{}
}

type cardHour struct {
	card   string
	number bool  // carried as card_number
	hour   int64 // Unix hours
}

func newCardHours() *cardHours { return &cardHours{seen: map[cardHour]struct{}{}} }

// add counts record r, whose event time is t.
func (c *cardHours) add(r paygen.Record, t time.Time) {
	if !r.Valid {
		return
	}
	// paygen keys every record by its card id and puts either the id or the number in the payment.
	number := bytes.Contains(r.Value, []byte(`"card_number":`))
	c.seen[cardHour{card: r.Key, number: number, hour: t.Unix() / 3600}] = struct{}{}
}

func (c *cardHours) count() int { return len(c.seen) }

// usage is the memory of one kind of key.
type usage struct {
	keys, bytes int64
}

// stateUsage is the Redis memory of the bench's state, by kind of key.
type stateUsage struct {
	cards, merchants, reviews, other usage
	otherKinds                       map[string]int64 // keys of other, by name less the group
}

// stateMemory sums MEMORY USAGE <key> SAMPLES 0 over the keys under the group, which is the
// service's window and review key prefix here: card buckets <group>:{<bucket>}…, merchants
// <group>:m:… and <group>:mf:…, reviews <group>:{rv}:…, and the rest (the pending merchant items,
// the epoch).
func stateMemory(ctx context.Context, rdb *redis.Client, group string) (stateUsage, error) {
	u := stateUsage{otherKinds: map[string]int64{}}
	prefix := group + ":"
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+"*", 10000).Result()
		if err != nil {
			return u, fmt.Errorf("scan %s*: %w", prefix, err)
		}
		pipe := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(keys))
		for i, k := range keys {
			cmds[i] = pipe.MemoryUsage(ctx, k, 0)
		}
		if len(keys) > 0 {
			if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
				return u, fmt.Errorf("memory usage: %w", err)
			}
		}
		for i, k := range keys {
			n, err := cmds[i].Result()
			if errors.Is(err, redis.Nil) {
				continue // gone since the scan
			}
			if err != nil {
				return u, fmt.Errorf("memory usage %s: %w", k, err)
			}
			rest := strings.TrimPrefix(k, prefix)
			var to *usage
			switch {
			case strings.HasPrefix(rest, "{rv}:"):
				to = &u.reviews
			case strings.HasPrefix(rest, "m:") || strings.HasPrefix(rest, "mf:"):
				to = &u.merchants
			case isBucket(rest):
				to = &u.cards
			default:
				to = &u.other
				u.otherKinds[rest]++
			}
			to.keys++
			to.bytes += n
		}
		if cursor = next; cursor == 0 {
			return u, nil
		}
	}
}

// isBucket reports whether a key, less the group, is a card bucket's: {<digits>}, and whatever the
// store may add after it.
func isBucket(rest string) bool {
	tag, ok := strings.CutPrefix(rest, "{")
	if !ok {
		return false
	}
	end := strings.IndexByte(tag, '}')
	if end <= 0 {
		return false
	}
	for _, c := range tag[:end] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// describe is the state's line of the drain's report.
func (u stateUsage) describe(cardHours int, reviewsOpened float64) string {
	per := func(n int64, of float64) string {
		if of <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f", float64(n)/of)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state: card buckets %d bytes in %d keys over %d active card-hours = %s bytes/card-hour",
		u.cards.bytes, u.cards.keys, cardHours, per(u.cards.bytes, float64(cardHours)))
	fmt.Fprintf(&b, "; merchants %d bytes in %d keys", u.merchants.bytes, u.merchants.keys)
	fmt.Fprintf(&b, "; reviews %d bytes in %d keys = %s bytes/review (%.0f opened)",
		u.reviews.bytes, u.reviews.keys, per(u.reviews.bytes, reviewsOpened), reviewsOpened)
	fmt.Fprintf(&b, "; other %d bytes in %d keys", u.other.bytes, u.other.keys)
	if len(u.otherKinds) > 0 && len(u.otherKinds) <= 5 {
		names := make([]string, 0, len(u.otherKinds))
		for k := range u.otherKinds {
			names = append(names, k)
		}
		slices.Sort(names)
		fmt.Fprintf(&b, " (%s)", strings.Join(names, ", "))
	}
	b.WriteString(" (MEMORY USAGE SAMPLES 0 after the drain)")
	return b.String()
}
