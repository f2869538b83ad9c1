// Command streambench measures the service on a real broker: how fast it drains a backlog, and the
// decision latency at a fixed input rate. It needs the local stack (scripts/stack.sh up) and a
// built service; scripts/bench.sh does both.
//
// Drain: N payments are pre-loaded into a fresh topic, the service is started, and the rate is
// taken from the group's committed offsets, from the first commit seen to the last.
//
// After the drain, the Redis memory of the state it left (MEMORY USAGE of every key under the
// group, by kind) is reported, the card buckets' per active card-hour of the input: the distinct
// (card, UTC hour of the event time) pairs among the payments written.
//
// Latency: the service is started on fresh topics whose timestamps are the broker's append time,
// payments are written at a fixed rate, and each decision's append time on the high-risk topic
// minus its payment's append time on the payments topic is one sample (millisecond resolution,
// as Kafka's timestamps have). Only flagged payments have a decision there. With -burst N, one
// extra card also gets N payments, spread evenly over a minute (or what the run has left after the
// warm-up, if shorter) from the end of the warm-up on, and the other cards' decisions are reported
// apart from the burst card's.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/paygen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "streambench:", err)
		os.Exit(1)
	}
}

type options struct {
	brokers    string
	redis      string
	bin        string
	n          int
	partitions int
	rate       float64
	duration   time.Duration
	env        []string
	profile    string
	skipDrain  bool
	skipLat    bool
	warmup     time.Duration
	burst      int
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var o options
	fs := flag.NewFlagSet("streambench", flag.ContinueOnError)
	fs.StringVar(&o.brokers, "brokers", "127.0.0.1:9092", "Kafka brokers")
	fs.StringVar(&o.redis, "redis", "127.0.0.1:6379", "Redis for the card windows")
	fs.StringVar(&o.bin, "bin", ".cache/bin/fraud-detector", "the service binary")
	fs.IntVar(&o.n, "n", 1_000_000, "payments to pre-load for the drain measurement")
	fs.IntVar(&o.partitions, "partitions", 6, "partitions of the payments topic")
	fs.Float64Var(&o.rate, "rate", 5000, "payments per second for the latency measurement")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "how long to write at that rate")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "leave the decisions of payments written in the first `duration` out of the latency figures: the service's producer is still fetching the new topic's metadata")
	fs.IntVar(&o.burst, "burst", 0, "during the latency measurement, also write `N` payments on one extra card, spread evenly over a minute from the end of the warm-up (over what is left of -duration, if less), and report its decisions apart")
	fs.StringVar(&o.profile, "cpuprofile", "", "write the service's CPU profile of the drain to `file`")
	fs.BoolVar(&o.skipDrain, "skip-drain", false, "skip the drain measurement")
	fs.BoolVar(&o.skipLat, "skip-latency", false, "skip the latency measurement")
	fs.Func("env", "a FRAUD_*=value setting for the service (repeatable)", func(s string) error {
		if !strings.HasPrefix(s, "FRAUD_") || !strings.Contains(s, "=") {
			return errors.New("want FRAUD_NAME=value")
		}
		o.env = append(o.env, s)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.burst < 0 {
		return fmt.Errorf("-burst: must not be negative, got %d", o.burst)
	}
	if o.burst > 0 && o.duration <= o.warmup {
		return fmt.Errorf("-burst: needs a -duration (%s) longer than the -warmup (%s)", o.duration, o.warmup)
	}
	if _, err := os.Stat(o.bin); err != nil {
		return fmt.Errorf("service binary: %w (build it: go build -o %s ./cmd/fraud-detector)", err, o.bin)
	}
	fmt.Fprintln(stdout, machine())
	fmt.Fprintf(stdout, "settings: %d partitions, service env %v\n", o.partitions, o.env)
	if !o.skipDrain {
		if err := drain(ctx, o, stdout); err != nil {
			return fmt.Errorf("drain: %w", err)
		}
	}
	if !o.skipLat {
		if err := latency(ctx, o, stdout); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	return nil
}

// bench is one measurement's topics, clients and service.
type bench struct {
	o                       options
	payments, highRisk, dlq string
	labels                  string
	group                   string
	api                     string // the service's HTTP address, for /metrics
	client                  sarama.Client
	admin                   sarama.ClusterAdmin
}

func newBench(o options, name string) (*bench, error) {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	client, err := sarama.NewClient(strings.Split(o.brokers, ","), cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s (is the stack up? scripts/stack.sh up): %w", o.brokers, err)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		return nil, err
	}
	id := fmt.Sprintf("%s-%d", name, time.Now().UnixNano())
	l, err := net.Listen("tcp", "127.0.0.1:0") // a free port for the service's API
	if err != nil {
		return nil, err
	}
	api := l.Addr().String()
	l.Close()
	b := &bench{o: o, client: client, admin: admin, api: api,
		payments: "bench-payments-" + id, highRisk: "bench-high-risk-" + id, dlq: "bench-dlq-" + id, labels: "bench-labels-" + id, group: "bench-" + id}
	appendTime := map[string]*string{"message.timestamp.type": ptr("LogAppendTime")}
	for name, parts := range map[string]int32{b.payments: int32(o.partitions), b.highRisk: 3, b.dlq: 1, b.labels: 1} {
		if err := admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: 1, ConfigEntries: appendTime}, false); err != nil {
			return nil, fmt.Errorf("create %s: %w", name, err)
		}
	}
	return b, nil
}

func ptr[T any](v T) *T { return &v }

// close deletes the topics and the window state: a benchmark leaves nothing behind.
func (b *bench) close() {
	for _, t := range []string{b.payments, b.highRisk, b.dlq, b.labels} {
		b.admin.DeleteTopic(t)
	}
	b.admin.Close()
	rdb := redis.NewClient(&redis.Options{Addr: b.o.redis})
	defer rdb.Close()
	ctx := context.Background()
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, b.group+":*", 10000).Result()
		if err != nil {
			return
		}
		if len(keys) > 0 {
			rdb.Unlink(ctx, keys...)
		}
		if cursor = next; cursor == 0 {
			return
		}
	}
}

type service struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

func (b *bench) start(extraArgs ...string) (*service, error) {
	log := filepath.Join(os.TempDir(), b.group+".log")
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(b.o.bin, append([]string{"-config", "configs/config.yaml"}, extraArgs...)...)
	cmd.Env = append(os.Environ(),
		"FRAUD_KAFKA_BROKERS="+b.o.brokers,
		"FRAUD_KAFKA_GROUP="+b.group,
		"FRAUD_KAFKA_TOPICS_PAYMENTS="+b.payments,
		"FRAUD_KAFKA_TOPICS_HIGH_RISK="+b.highRisk,
		"FRAUD_KAFKA_TOPICS_DLQ="+b.dlq,
		"FRAUD_KAFKA_TOPICS_LABELS="+b.labels,
		"FRAUD_REVIEW_KEY_PREFIX="+b.group,
		"FRAUD_API_LISTEN="+b.api,
		"FRAUD_KAFKA_COMMIT_INTERVAL=100ms",
		"FRAUD_CARD_HMAC_KEY=bench-card-key-0123456789",
		"FRAUD_REDIS_ADDRS="+b.o.redis,
		"FRAUD_WINDOW_KEY_PREFIX="+b.group,
		"FRAUD_LOG_LEVEL=warn",
	)
	cmd.Env = append(cmd.Env, b.o.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &service{cmd: cmd, log: log, done: make(chan error, 1)}
	go func() { s.done <- cmd.Wait(); f.Close() }()
	return s, nil
}

// stop ends the service with SIGTERM and returns the CPU time it used.
func (s *service) stop() (time.Duration, error) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		if err != nil {
			return 0, fmt.Errorf("service exited with %v; log %s", err, s.log)
		}
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		return 0, fmt.Errorf("service did not stop; log %s", s.log)
	}
	st := s.cmd.ProcessState
	return st.UserTime() + st.SystemTime(), nil
}

// committed is the sum of the group's committed offsets and of the log-end offsets.
func (b *bench) committed() (committed, end int64, err error) {
	parts, err := b.client.Partitions(b.payments)
	if err != nil {
		return 0, 0, err
	}
	res, err := b.admin.ListConsumerGroupOffsets(b.group, map[string][]int32{b.payments: parts})
	if err != nil {
		return 0, 0, err
	}
	for _, p := range parts {
		e, err := b.client.GetOffset(b.payments, p, sarama.OffsetNewest)
		if err != nil {
			return 0, 0, err
		}
		end += e
		if blk := res.GetBlock(b.payments, p); blk != nil && blk.Offset > 0 {
			committed += blk.Offset
		}
	}
	return committed, end, nil
}

// produce writes n generated payments, at rate per second (0: as fast as possible), and bu's
// payments beside them (nil: none). It counts the payments' active card-hours into hours (nil:
// not counted).
func (b *bench) produce(ctx context.Context, n int, rate float64, hours *cardHours, bu *burst) (time.Duration, error) {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForLocal
	cfg.Producer.Return.Errors = true
	cfg.Producer.Flush.Frequency = time.Millisecond
	cfg.ChannelBufferSize = 4096
	p, err := sarama.NewAsyncProducer(strings.Split(b.o.brokers, ","), cfg)
	if err != nil {
		return 0, err
	}
	errc := make(chan error, 1)
	go func() {
		var first error
		for e := range p.Errors() {
			if first == nil {
				first = e
			}
		}
		errc <- first
	}()
	// Event times are the wall clock, so that every payment falls in an open window and the
	// windows stage does its full work. The generator reads the clock once a payment: the last
	// reading is the event time of the payment it made.
	var eventTime time.Time
	clock := func() time.Time { eventTime = time.Now(); return eventTime }
	gc := paygen.Config{Seed: 7, Cards: 200_000, BurstShare: 0.002, CardNumberShare: 0.1, Clock: clock}
	gen := paygen.New(gc)
	began := time.Now()
	var extra sync.WaitGroup
	if bu != nil && bu.n > 0 {
		extra.Go(func() { bu.write(ctx, p, b.payments, began) })
	}
	for i := range n {
		if rate > 0 && i%16 == 0 {
			if d := time.Until(began.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		if i%1024 == 0 && ctx.Err() != nil {
			break
		}
		r := gen.Next()
		if hours != nil {
			hours.add(r, eventTime)
		}
		p.Input() <- &sarama.ProducerMessage{Topic: b.payments, Key: sarama.StringEncoder(r.Key), Value: sarama.ByteEncoder(r.Value)}
	}
	extra.Wait()
	p.AsyncClose()
	if err := <-errc; err != nil {
		return 0, err
	}
	return time.Since(began), ctx.Err()
}

func drain(ctx context.Context, o options, stdout io.Writer) error {
	b, err := newBench(o, "drain")
	if err != nil {
		return err
	}
	defer b.close()
	hours := newCardHours()
	took, err := b.produce(ctx, o.n, 0, hours, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "drain: pre-loaded %d payments in %s (%.0f/s)\n", o.n, took.Round(time.Millisecond), float64(o.n)/took.Seconds())

	var args []string
	if o.profile != "" {
		args = append(args, "-cpuprofile", o.profile)
	}
	rdb := redis.NewClient(&redis.Options{Addr: o.redis})
	defer rdb.Close()
	redisBefore, err := redisCPU(ctx, rdb)
	if err != nil {
		return err
	}
	started := time.Now()
	svc, err := b.start(args...)
	if err != nil {
		return err
	}
	var firstAt, lastAt time.Time
	var first int64
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for lastAt.IsZero() {
		select {
		case <-ctx.Done():
			svc.stop()
			return ctx.Err()
		case err := <-svc.done:
			return fmt.Errorf("service exited early (%v); log %s", err, svc.log)
		case <-tick.C:
		}
		c, end, err := b.committed()
		if err != nil {
			return err
		}
		now := time.Now()
		if c > 0 && firstAt.IsZero() {
			firstAt, first = now, c
		}
		if c >= end && end > 0 {
			lastAt = now
		}
		if now.Sub(started) > 10*time.Minute {
			return fmt.Errorf("not drained after 10 minutes: %d of %d", c, end)
		}
	}
	redisAfter, err := redisCPU(ctx, rdb)
	if err != nil {
		return err
	}
	reviews := !slices.Contains(o.env, "FRAUD_STAGES_REVIEWS=false")
	var reviewsBehind time.Duration
	if reviews {
		if reviewsBehind, err = b.waitReviews(ctx, svc); err != nil {
			return err
		}
	}
	m, err := b.metrics()
	if err != nil {
		return err
	}
	cpu, err := svc.stop()
	if err != nil {
		return err
	}
	rate := float64(int64(o.n)-first) / lastAt.Sub(firstAt).Seconds()
	fmt.Fprintf(stdout, "drain: %d payments committed; %.0f payments/s from the first commit (%d) to the last (%s); %s from start to the last commit\n",
		o.n, rate, first, lastAt.Sub(firstAt).Round(time.Millisecond), lastAt.Sub(started).Round(time.Millisecond))
	fmt.Fprintf(stdout, "drain: service CPU %s, %.2f µs per payment\n", cpu.Round(time.Millisecond), float64(cpu.Microseconds())/float64(o.n))
	fmt.Fprintf(stdout, "drain: Redis CPU %s, %.2f µs per payment (all of Redis's work while the service ran)\n",
		(redisAfter - redisBefore).Round(time.Millisecond), float64((redisAfter-redisBefore).Microseconds())/float64(o.n))
	if reviews {
		fmt.Fprintf(stdout, "drain: reviews: %.0f opened, caught up %s after the stream; %.0f Redis errors, %.0f retries (fraud_redis_*_total{op=\"reviews\"})\n",
			m[`fraud_reviews_opened_total`], reviewsBehind.Round(time.Millisecond),
			m[`fraud_redis_errors_total{op="reviews"}`], m[`fraud_redis_retries_total{op="reviews"}`])
	}
	// The state the drain left, before close deletes it.
	state, err := stateMemory(ctx, rdb, b.group)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, state.describe(hours.count(), m[`fraud_reviews_opened_total`]))
	if o.profile != "" {
		fmt.Fprintf(stdout, "drain: CPU profile in %s (go tool pprof -top %s %s)\n", o.profile, o.bin, o.profile)
	}
	return nil
}

func latency(ctx context.Context, o options, stdout io.Writer) error {
	b, err := newBench(o, "latency")
	if err != nil {
		return err
	}
	defer b.close()
	svc, err := b.start()
	if err != nil {
		return err
	}
	if err := b.waitAssigned(ctx, svc); err != nil {
		return err
	}
	n := int(o.rate * o.duration.Seconds())
	var bu *burst
	if o.burst > 0 {
		bu = &burst{n: o.burst, card: "card-burst", begin: o.warmup, span: min(time.Minute, o.duration-o.warmup)}
	}
	took, err := b.produce(ctx, n, o.rate, nil, bu)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "latency: wrote %d payments in %s (%.0f/s)\n", n, took.Round(time.Millisecond), float64(n)/took.Seconds())
	if bu != nil {
		fmt.Fprintf(stdout, "latency: and %d payments on card %s, from %s after the start over %s (%.0f/s)\n",
			bu.n, bu.card, bu.begin, bu.span, float64(bu.n)/bu.span.Seconds())
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		c, end, err := b.committed()
		if err != nil {
			return err
		}
		if c >= end {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not caught up: %d of %d", c, end)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := svc.stop(); err != nil {
		return err
	}

	type payment struct {
		at    time.Time // append time
		burst bool      // of the burst's card
	}
	appended := map[[2]int64]payment{} // (partition, offset) -> the payment
	burstPart := int32(-1)             // the burst card's partition
	for _, m := range b.readAll(b.payments) {
		burst := bu != nil && string(m.Key) == bu.card
		if burst {
			burstPart = m.Partition
		}
		appended[[2]int64{int64(m.Partition), m.Offset}] = payment{m.Timestamp, burst}
	}
	var samples latencies                     // every decision's, or with a burst the other cards'
	var burstSamples, samePartition latencies // the burst card's; the other cards' on its partition
	slow := map[int64]int{}                   // second of the run -> decisions over 10 ms
	var warm time.Time                        // payments appended before this are the warm-up, not counted
	for _, p := range appended {
		if warm.IsZero() || p.at.Before(warm) {
			warm = p.at
		}
	}
	warm = warm.Add(o.warmup)
	skipped := 0
	for _, m := range b.readAll(b.highRisk) {
		var part, off int64 = -1, -1
		for _, h := range m.Headers {
			switch string(h.Key) {
			case "source.partition":
				part, _ = strconv.ParseInt(string(h.Value), 10, 32)
			case "source.offset":
				off, _ = strconv.ParseInt(string(h.Value), 10, 64)
			}
		}
		if p, ok := appended[[2]int64{part, off}]; ok {
			if p.at.Before(warm) {
				skipped++
				continue
			}
			took := m.Timestamp.Sub(p.at)
			switch {
			case p.burst:
				burstSamples = append(burstSamples, took)
			case int32(part) == burstPart:
				samePartition = append(samePartition, took)
				samples = append(samples, took)
			default:
				samples = append(samples, took)
			}
			if took > 10*time.Millisecond {
				slow[p.at.Unix()]++
			}
		}
	}
	if len(samples) == 0 {
		return errors.New("no decisions to measure")
	}
	if os.Getenv("STREAMBENCH_DEBUG") != "" {
		fmt.Fprintf(stdout, "latency: decisions over 10 ms by second: %v\n", slow)
	}
	if bu != nil {
		fmt.Fprintf(stdout, "latency: other cards: %s (append time to append time, ms resolution; %d decisions of the first %s not counted)\n",
			samples.describe(), skipped, o.warmup)
		fmt.Fprintf(stdout, "latency: other cards on the burst card's partition %d: %s\n", burstPart, samePartition.describe())
		fmt.Fprintf(stdout, "latency: burst card %s: %s, of %d payments written\n", bu.card, burstSamples.describe(), bu.n)
		return nil
	}
	slices.Sort(samples)
	q := func(p float64) time.Duration { return samples[min(len(samples)-1, int(p*float64(len(samples))))] }
	fmt.Fprintf(stdout, "latency: %d decisions at %.0f payments/s: p50 %s, p90 %s, p99 %s, max %s (append time to append time, ms resolution; %d decisions of the first %s not counted)\n",
		len(samples), o.rate, q(0.50), q(0.90), q(0.99), samples[len(samples)-1], skipped, o.warmup)
	return nil
}

// waitAssigned waits until the service's group is stable, so that the latency run does not count
// the time it takes to join.
// waitReviews waits until the review group has opened the reviews of every decision written, and
// says how long that took.
func (b *bench) waitReviews(ctx context.Context, svc *service) (time.Duration, error) {
	began := time.Now()
	group := b.group + "-reviews"
	for {
		parts, err := b.client.Partitions(b.highRisk)
		if err != nil {
			return 0, err
		}
		res, err := b.admin.ListConsumerGroupOffsets(group, map[string][]int32{b.highRisk: parts})
		if err != nil {
			return 0, err
		}
		behind := int64(0)
		for _, p := range parts {
			end, err := b.client.GetOffset(b.highRisk, p, sarama.OffsetNewest)
			if err != nil {
				return 0, err
			}
			done := int64(0)
			if blk := res.GetBlock(b.highRisk, p); blk != nil && blk.Offset > 0 {
				done = blk.Offset
			}
			behind += end - done
		}
		if behind == 0 {
			return time.Since(began), nil
		}
		if time.Since(began) > 5*time.Minute {
			return 0, fmt.Errorf("the review group is %d decisions behind 5 minutes after the stream", behind)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case err := <-svc.done:
			return 0, fmt.Errorf("service exited early (%v); log %s", err, svc.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// metrics reads the service's counters and gauges from /metrics, by name and labels as the text
// format writes them (fraud_redis_retries_total{op="reviews"}).
func (b *bench) metrics() (map[string]float64, error) {
	resp, err := http.Get("http://" + b.api + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

func (b *bench) waitAssigned(ctx context.Context, svc *service) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		groups, err := b.admin.DescribeConsumerGroups([]string{b.group})
		if err == nil && len(groups) == 1 && groups[0].State == "Stable" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-svc.done:
			return fmt.Errorf("service exited (%v); log %s", err, svc.log)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("group %s not stable after 60 s; log %s", b.group, svc.log)
}

func (b *bench) readAll(topic string) []*sarama.ConsumerMessage {
	consumer, err := sarama.NewConsumerFromClient(b.client)
	if err != nil {
		return nil
	}
	defer consumer.Close()
	parts, _ := b.client.Partitions(topic)
	var all []*sarama.ConsumerMessage
	for _, p := range parts {
		end, err := b.client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil || end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			continue
		}
		for m := range pc.Messages() {
			all = append(all, m)
			if m.Offset >= end-1 {
				break
			}
		}
		pc.Close()
	}
	return all
}

// machine describes where the figures come from.
func machine() string {
	model := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	return fmt.Sprintf("machine: %d cores (%s), %s, %s/%s; Kafka broker on the same machine",
		runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// redisCPU is the CPU time the Redis server has used, from INFO cpu.
func redisCPU(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("redis at %s (is the stack up? scripts/stack.sh up): %w", rdb.Options().Addr, err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if v, ok := strings.CutPrefix(line, k); ok {
				f, _ := strconv.ParseFloat(v, 64)
				total += f
			}
		}
	}
	return time.Duration(total * float64(time.Second)), nil
}
