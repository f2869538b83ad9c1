//go:build unix

package window_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/paysentry/fraud-detector/internal/window"
)

// These benchmarks use the package's public API only, so that they measure any layout of the card
// state the same way. They need the real Redis of scripts/stack.sh redis (127.0.0.1:6379, or
// FD_TEST_REDIS) and read its CPU time from INFO cpu, which counts all of the server's work: run
// them on a Redis with nothing else to do (other-clients says whether it had).
//
//	go test -run '^$' -bench 'HistoryLength|BurstCard' -benchtime 20x ./internal/window/
//
// Metrics, per payment observed in the timed loop:
//   - redis-µs/payment: the Redis server's CPU time (used_cpu_sys + used_cpu_user);
//   - go-µs/payment: the caller's time, ns/op over the payments of an op (Go's work and the round
//     trip, Redis's time included);
//   - go-cpu-µs/payment: this process's CPU time (getrusage), Go's work alone;
//   - other-clients: the Redis server's other clients that sent a command while the loop ran
//     (by their idle time, in whole seconds): not 0, redis-µs/payment holds their work too.

// benchNow is the injected clock of the benchmarks: never the wall clock.
var benchNow = time.Date(2026, 3, 2, 12, 30, 0, 0, time.UTC)

const (
	benchCards     = 500   // cards of BenchmarkHistoryLength: one batch holds one payment of each
	benchBatch     = 500   // payments an Observe, as the stream sends them
	benchMerchants = 5000  // merchants, drawn uniformly, as internal/paygen draws them
	burstPayments  = 10000 // payments of BenchmarkBurstCard's card
)

func benchConfig(prefix string) window.Config {
	return window.Config{Length: time.Hour, AllowedLateness: time.Hour, KeyPrefix: prefix, Buckets: 65536, MaxPaymentsPerCard: 4096}
}

// BenchmarkHistoryLength measures what observing a payment costs against the length of its card's
// history: each of 500 cards has 1, 16, 256, 1024 or 4096 payments spread evenly over the 30 days
// before the clock (given before the timer, beside FD_BENCH_OTHER_CARDS others: see giveOthers), then
// each op observes a batch of 500 payments, one new payment at the clock's time on every card. A layout whose cost per payment does not depend
// on the history shows the same figures at every length.
func BenchmarkHistoryLength(b *testing.B) {
	for _, perCard := range []int{1, 16, 256, 1024, 4096} {
		b.Run(fmt.Sprintf("payments=%d", perCard), func(b *testing.B) {
			rdb, prefix := benchRedis(b, "benchhist")
			ctx := context.Background()
			clock := benchNow
			s := window.NewStore(rdb, benchConfig(prefix), func() time.Time { return clock })
			rng := rand.New(rand.NewPCG(uint64(perCard), 1))
			began := time.Now()
			others := giveOthers(b, s, &clock)
			given := giveHistories(b, s, rng, &clock, perCard)
			clock = benchNow
			warmMerchants(b, s, rng)
			b.Logf("%d cards x %d payments given, beside %d other cards, in %s", benchCards, given/benchCards, others, time.Since(began).Round(time.Millisecond))

			events := make([]window.Event, benchBatch)
			out := make([]window.Result, benchBatch)
			var m meter
			m.start(b, rdb)
			seq := 0
			for b.Loop() {
				for i := range events {
					events[i] = benchEvent(rng, fmt.Sprintf("now-%09d", seq), i, benchNow)
					seq++
				}
				if _, err := s.Observe(ctx, events, out); err != nil {
					b.Fatal(err)
				}
				for i := range out {
					if out[i].Late || out[i].Ahead || out[i].Count < 1 {
						b.Fatalf("payment %s: %+v, want counted", events[i].PaymentID, out[i])
					}
				}
			}
			m.report(b, rdb, seq)
		})
	}
}

// BenchmarkBurstCard measures one card that receives 10,000 payments within 50 minutes, in
// batches of 500 of that card alone; each op is the whole burst on a card of its own.
func BenchmarkBurstCard(b *testing.B) {
	rdb, prefix := benchRedis(b, "benchburst")
	ctx := context.Background()
	s := window.NewStore(rdb, benchConfig(prefix), func() time.Time { return benchNow })
	rng := rand.New(rand.NewPCG(2, 2))
	warmMerchants(b, s, rng)
	events := make([]window.Event, benchBatch)
	out := make([]window.Result, benchBatch)
	first := benchNow.Add(-50 * time.Minute)
	step := 50 * time.Minute / burstPayments
	var m meter
	m.start(b, rdb)
	n, op := 0, 0
	for b.Loop() {
		card := fmt.Sprintf("burst-%06d", op)
		for k := 0; k < burstPayments; k += benchBatch {
			for i := range events {
				e := benchEvent(rng, fmt.Sprintf("burst-%06d-%05d", op, k+i), 0, first.Add(time.Duration(k+i)*step))
				e.Card = card
				events[i] = e
			}
			if _, err := s.Observe(ctx, events, out); err != nil {
				b.Fatal(err)
			}
			if last := out[len(out)-1]; last.Late || last.Ahead || last.Count < 1 {
				b.Fatalf("payment %s: %+v, want counted", events[len(events)-1].PaymentID, last)
			}
			n += len(events)
		}
		op++
	}
	m.report(b, rdb, n)
}

// giveOthers gives FD_BENCH_OTHER_CARDS cards (default none) a payment each, a day before the
// clock, so that the benchmark's cards share their buckets and their Redis with others, as in a
// service's Redis (a million: 16 cards a bucket at 65,536 buckets).
func giveOthers(b *testing.B, s *window.Store, clock *time.Time) int {
	b.Helper()
	n := 0
	if v, err := strconv.Atoi(os.Getenv("FD_BENCH_OTHER_CARDS")); err == nil && v >= 0 {
		n = v
	}
	rng := rand.New(rand.NewPCG(9, 9))
	at := benchNow.Add(-24 * time.Hour)
	*clock = at
	events := make([]window.Event, 0, benchBatch)
	out := make([]window.Result, benchBatch)
	for i := range n {
		events = append(events, benchEvent(rng, fmt.Sprintf("other-%d", i), benchCards+i, at))
		if len(events) == benchBatch || i == n-1 {
			if _, err := s.Observe(context.Background(), events, out[:len(events)]); err != nil {
				b.Fatal(err)
			}
			events = events[:0]
		}
	}
	return n
}

// benchCard is the card of index i.
func benchCard(i int) string { return fmt.Sprintf("tok_%032x", i) }

// benchEvent is a payment of card i at t: an amount, one of the card's 2 countries and 3 devices,
// and a merchant of 5,000 (as internal/paygen makes them).
func benchEvent(rng *rand.Rand, id string, card int, t time.Time) window.Event {
	countries := [...]string{"DE", "FR", "NL", "ES", "IT", "GB", "US", "CH", "SE", "JP", "PL", "AT"}
	return window.Event{PaymentID: id, Card: benchCard(card), Time: t,
		Amount:   decimal.New(int64(100+rng.IntN(20000)), -2),
		Country:  countries[(card+rng.IntN(2))%len(countries)],
		Merchant: fmt.Sprintf("m-%05d", rng.IntN(benchMerchants)),
		Device:   fmt.Sprintf("dev-%07d", card*3+rng.IntN(3))}
}

// giveHistories gives each of the benchmark's cards perCard payments spread evenly over the 30
// days before benchNow, as the stream would have delivered them: in order of event time, in
// batches of up to 500, each observed with the clock at its last payment's time (so that every
// payment is in a window still open). Cards go in groups of about 500 payments an hour, so that a
// long history is written some 720 times rather than once per payment; merchant counts are folded
// every 50 batches, as the service folds them every second. It returns the payments given.
func giveHistories(b *testing.B, s *window.Store, rng *rand.Rand, clock *time.Time, perCard int) int {
	b.Helper()
	ctx := context.Background()
	cfg := benchConfig("")
	group := min(benchCards, max(1, benchBatch*720/perCard))
	span := 30 * 24 * time.Hour
	events := make([]window.Event, 0, benchBatch)
	out := make([]window.Result, benchBatch)
	given, batches := 0, 0
	flush := func() {
		if len(events) == 0 {
			return
		}
		*clock = events[len(events)-1].Time
		res := out[:len(events)]
		if _, err := s.Observe(ctx, events, res); err != nil {
			b.Fatal(err)
		}
		for i := range res {
			if res[i].Late || res[i].Ahead {
				b.Fatalf("history payment %s at %s with the clock at %s: %+v", events[i].PaymentID, events[i].Time, *clock, res[i])
			}
		}
		given += len(events)
		events = events[:0]
		if batches++; batches%50 == 0 {
			if _, err := s.Fold(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	for from := 0; from < benchCards; from += group {
		cards := min(group, benchCards-from)
		var open time.Time // the end of the batch's first window, lateness included
		for k := range perCard {
			for j := range cards {
				// Card j's k-th payment; the cards of a group are staggered within a gap.
				t := benchNow.Add(-span + time.Duration((float64(k)+(float64(j)+0.5)/float64(cards))*float64(span)/float64(perCard)))
				if len(events) == benchBatch || (len(events) > 0 && !t.Before(open)) {
					flush()
				}
				if len(events) == 0 {
					open = t.Truncate(cfg.Length).Add(cfg.Length + cfg.AllowedLateness)
				}
				events = append(events, benchEvent(rng, fmt.Sprintf("hist-%d-%d", from+j, k), from+j, t))
			}
		}
		flush()
	}
	if _, err := s.Fold(ctx); err != nil {
		b.Fatal(err)
	}
	return given
}

// warmMerchants observes one payment at every merchant on cards of their own at benchNow, so that
// the timed loop finds the merchants' snapshots of the day taken, as a running service does for
// all but a merchant's first payment of the day.
func warmMerchants(b *testing.B, s *window.Store, rng *rand.Rand) {
	b.Helper()
	events := make([]window.Event, 0, benchBatch)
	out := make([]window.Result, benchBatch)
	for m := range benchMerchants {
		e := benchEvent(rng, fmt.Sprintf("warm-%05d", m), 0, benchNow)
		e.Card, e.Merchant = fmt.Sprintf("warm-%05d", m), fmt.Sprintf("m-%05d", m)
		events = append(events, e)
		if len(events) == benchBatch || m == benchMerchants-1 {
			if _, err := s.Observe(context.Background(), events, out[:len(events)]); err != nil {
				b.Fatal(err)
			}
			events = events[:0]
		}
	}
}

// benchClient names the benchmarks' connections, to tell them from the server's other clients.
const benchClient = "fd-window-bench"

// benchRedis returns a client of the Redis at FD_TEST_REDIS (127.0.0.1:6379 if unset), failing
// with how to start it when it cannot reach it, and a key prefix of the benchmark's own, whose
// keys are unlinked when the benchmark ends.
func benchRedis(b *testing.B, name string) (*redis.Client, string) {
	b.Helper()
	addr := os.Getenv("FD_TEST_REDIS")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, ClientName: benchClient})
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		b.Fatalf("redis at %s: %v (start it with scripts/stack.sh redis, or set FD_TEST_REDIS)", addr, err)
	}
	prefix := fmt.Sprintf("%s%d", name, rand.Int64())
	b.Cleanup(func() {
		defer rdb.Close()
		var cursor uint64
		for {
			keys, next, err := rdb.Scan(ctx, cursor, prefix+":*", 10000).Result()
			if err != nil {
				b.Errorf("delete the keys of %s: %v", prefix, err)
				return
			}
			if len(keys) > 0 {
				if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
					b.Errorf("delete the keys of %s: %v", prefix, err)
					return
				}
			}
			if cursor = next; cursor == 0 {
				return
			}
		}
	})
	return rdb, prefix
}

// meter takes the Redis server's and this process's CPU time just before the timed loop (b.Loop
// starts the timer on its first call), and reports them per payment at its end.
type meter struct {
	redis, self time.Duration
	began       time.Time
}

func (m *meter) start(b *testing.B, rdb *redis.Client) {
	m.redis, m.self, m.began = redisCPU(b, rdb), selfCPU(), time.Now()
}

func (m *meter) report(b *testing.B, rdb *redis.Client, payments int) {
	self, red := selfCPU()-m.self, redisCPU(b, rdb)-m.redis
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(payments) }
	b.ReportMetric(us(red), "redis-µs/payment")
	b.ReportMetric(us(b.Elapsed()), "go-µs/payment")
	b.ReportMetric(us(self), "go-cpu-µs/payment")
	if n := otherClients(b, rdb, time.Since(m.began)); n > 0 {
		b.ReportMetric(float64(n), "other-clients")
		b.Logf("%d other clients of the Redis server sent commands while the loop ran: redis-µs/payment holds their work too", n)
	}
}

// otherClients counts the Redis server's clients other than the benchmarks' that sent a command
// within the last d, by CLIENT LIST's idle time (whole seconds).
func otherClients(b *testing.B, rdb *redis.Client, d time.Duration) int {
	b.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		b.Fatalf("CLIENT LIST: %v", err)
	}
	within := int64(math.Ceil(d.Seconds()))
	n := 0
	for _, line := range strings.Split(list, "\n") {
		var name string
		idle := int64(-1)
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "name="); ok {
				name = v
			} else if v, ok := strings.CutPrefix(f, "idle="); ok {
				idle, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		if idle >= 0 && idle <= within && name != benchClient {
			n++
		}
	}
	return n
}

// redisCPU is the CPU time the Redis server has used, from INFO cpu.
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	b.Helper()
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatalf("INFO cpu: %v", err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					b.Fatalf("INFO cpu: %s: %v", line, err)
				}
				total += f
			}
		}
	}
	return time.Duration(total * float64(time.Second))
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
