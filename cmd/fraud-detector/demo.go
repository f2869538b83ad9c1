package main

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"golang.org/x/sync/errgroup"

	"github.com/paysentry/fraud-detector/internal/api"
	"github.com/paysentry/fraud-detector/internal/decision"
	"github.com/paysentry/fraud-detector/internal/paygen"
)

// The demo's own secrets: fine on a laptop, never in a deployment.
const (
	demoHMACKey = "demo-only-card-key-not-a-secret"
	demoToken   = "demo-analyst-token"
)

// runDemo runs the whole pipeline in one process: an in-process Kafka-protocol cluster (kfake) and
// an in-process Redis (miniredis) stand in for the real ones, a generator writes payments, and the
// service runs on them exactly as it would in production (serve, with only the addresses
// changed). It prints flagged payments and a summary every few seconds until ctx is done.
func runDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("fraud-detector demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", configPathFrom(getenv), "the YAML configuration `file`; FRAUD_* environment variables override it (not the addresses)")
	rate := fs.Float64("rate", 200, "payments a second the generator writes")
	burst := fs.Float64("burst", 0, "if set, payments a second the generator writes for 10 s of every minute (from the 30th second)")
	listen := fs.String("listen", "127.0.0.1:8080", "the API's and the metrics' address; if it is taken, a free port")
	logPath := fs.String("log", ".cache/demo/service.log", "the service's JSON log `file`")
	every := fs.Duration("summary", 5*time.Second, "how often to print the summary")
	show := fs.Int("show", 3, "flagged payments to print a second, at most (the summary counts them all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate <= 0 {
		return errors.New("-rate: must be positive")
	}
	cfg, err := loadConfig(*configPath, configRequired(fs, getenv), getenv)
	if err != nil {
		return err
	}

	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(6, cfg.Kafka.Topics.Payments), kfake.SeedTopics(3, cfg.Kafka.Topics.HighRisk),
		kfake.SeedTopics(1, cfg.Kafka.Topics.DLQ, cfg.Kafka.Topics.Labels))
	if err != nil {
		return fmt.Errorf("in-process kafka: %w", err)
	}
	defer cluster.Close()
	redisServer := miniredis.NewMiniRedis()
	if err := redisServer.StartAddr("127.0.0.1:0"); err != nil {
		return fmt.Errorf("in-process redis: %w", err)
	}
	defer redisServer.Close()

	// Only the addresses (and the demo's secrets, where none are set) differ from production.
	cfg.Kafka.Brokers = cluster.ListenAddrs()
	cfg.Kafka.TLS, cfg.Kafka.SASL = TLSConfig{}, SASLConfig{}
	cfg.Redis = RedisConfig{Addrs: []string{redisServer.Addr()}, DialTimeout: cfg.Redis.DialTimeout,
		ReadTimeout: cfg.Redis.ReadTimeout, WriteTimeout: cfg.Redis.WriteTimeout}
	if cfg.Card.HMACKey == "" && cfg.Card.HMACKeyFile == "" {
		cfg.Card.HMACKey = demoHMACKey
	}
	token := ""
	if len(cfg.API.Tokens) == 0 {
		token = demoToken
		cfg.API.Tokens = api.Tokens{{Name: "demo", Role: api.RoleAnalyst, SHA256: sha256Hex(demoToken)}}
	}
	cfg.API.Listen = *listen
	if l, err := net.Listen("tcp", *listen); err != nil {
		cfg.API.Listen = "127.0.0.1:0"
	} else {
		l.Close()
	}
	modelNote := "; the model " + cfg.Model.Path
	if !cfg.Model.Enabled() {
		modelNote = "; no model"
	} else if _, err := os.Stat(cfg.Model.Library); err != nil {
		modelNote = fmt.Sprintf("; no model: ONNX Runtime is not at %s (scripts/onnxruntime.sh fetches it)", cfg.Model.Library)
		cfg.Model.Path = "none"
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(*logPath), 0o755); err != nil {
		return err
	}
	logFile, err := os.Create(*logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := newLogger(logFile, cfg.Log)
	log.Info("configuration", "mode", "demo", "config", cfg, "version", buildVersion())

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	reg := prometheus.NewRegistry()
	addr := make(chan net.Addr, 1)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return serve(gctx, cfg, reg, log, func(a net.Addr) { addr <- a }) })
	var apiAddr net.Addr
	select {
	case apiAddr = <-addr:
	case <-gctx.Done():
		err := g.Wait()
		if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
			fmt.Fprintln(stdout, "stopped before the service had started.")
			return nil // Ctrl-C while starting
		}
		return errors.Join(err, fmt.Errorf("the service did not start; its log is %s", *logPath))
	}

	base := "http://" + apiAddr.String()
	fmt.Fprintf(stdout, `fraud-detector demo: the whole pipeline in this process, on an in-process Kafka (%s) and Redis (%s)
  console      %s/ui   (sign in with the token %s)
  review API   %s/v1/cases?order=riskiest   (curl -H 'Authorization: Bearer %s' ...)
  metrics      %s/metrics    ready: %s/readyz
  log          %s
generating %g payments/s (bursts on one card, 1 %% malformed to %s)%s. Ctrl-C stops.

`, cfg.Kafka.Brokers[0], redisServer.Addr(), base, cmp.Or(token, "of your api.tokens"), base, cmp.Or(token, "<your token>"), base, base,
		*logPath, *rate, cfg.Kafka.Topics.DLQ, modelNote)

	out := &syncWriter{w: stdout}
	g.Go(func() error { return generate(gctx, cfg.Kafka.Brokers, cfg.Kafka.Topics.Payments, *rate, *burst) })
	g.Go(func() error { return showFlagged(gctx, cfg.Kafka.Brokers, cfg.Kafka.Topics.HighRisk, *show, out) })
	g.Go(func() error { return summarize(gctx, reg, *every, out) })
	err = g.Wait()
	printSummary(reg, out, 0, time.Time{})
	if ctx.Err() != nil && err == nil || errors.Is(err, context.Canceled) {
		fmt.Fprintln(out, "stopped.")
		return nil
	}
	return err
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// generate writes payments from paygen to topic at rate a second (burst a second for 10 s of every
// minute, if set) until ctx is done.
func generate(ctx context.Context, brokers []string, topic string, rate, burst float64) error {
	c := sarama.NewConfig()
	c.ClientID = "demo-paygen"
	c.Producer.Return.Errors = false
	c.Producer.Flush.Frequency = 10 * time.Millisecond
	p, err := sarama.NewAsyncProducer(brokers, c)
	if err != nil {
		return fmt.Errorf("generator: %w", err)
	}
	defer p.AsyncClose()
	// A small seed keeps payment ids short ("pay-123-000000042"): no run of digits in them can
	// look like a card number in the output.
	gen := paygen.New(paygen.Config{Seed: uint64(time.Now().Unix() % 1000), Cards: 20000, BurstShare: 0.003,
		CardNumberShare: 0.1, MalformedShare: 0.01, Clock: time.Now})
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	began, last, due := time.Now(), time.Now(), 0.0
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-tick.C:
			r := rate
			if s := now.Sub(began) % time.Minute; burst > 0 && s >= 30*time.Second && s < 40*time.Second {
				r = burst
			}
			due += now.Sub(last).Seconds() * r
			last = now
		}
		for ; due >= 1; due-- {
			r := gen.Next()
			select {
			case p.Input() <- &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(r.Key), Value: sarama.ByteEncoder(r.Value)}:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// showFlagged prints the decisions on the high-risk topic as they arrive, at most perSecond a
// second.
func showFlagged(ctx context.Context, brokers []string, topic string, perSecond int, out io.Writer) error {
	c := sarama.NewConfig()
	c.ClientID = "demo-viewer"
	consumer, err := sarama.NewConsumer(brokers, c)
	if err != nil {
		return fmt.Errorf("viewer: %w", err)
	}
	defer consumer.Close()
	parts, err := consumer.Partitions(topic)
	if err != nil {
		return fmt.Errorf("viewer: %w", err)
	}
	msgs := make(chan *sarama.ConsumerMessage)
	for _, p := range parts {
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("viewer: %w", err)
		}
		defer pc.AsyncClose()
		go func() {
			for m := range pc.Messages() {
				select {
				case msgs <- m:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	second, shown := time.Now().Truncate(time.Second), 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			if now := time.Now().Truncate(time.Second); now != second {
				second, shown = now, 0
			}
			if shown >= perSecond {
				continue
			}
			shown++
			fmt.Fprintln(out, flaggedLine(m.Value))
		}
	}
}

// flaggedLine is one decision in a line: when, which payment, the masked card, the amount, why.
func flaggedLine(v []byte) string {
	d, err := decision.Unmarshal(v)
	if err != nil {
		return "FLAGGED (unreadable decision: " + err.Error() + ")"
	}
	var p struct {
		Amount     json.Number `json:"amount"`
		Currency   string      `json:"currency"`
		CardNumber string      `json:"card_number"`
	}
	json.Unmarshal(d.Payment, &p)
	card := d.CardID
	if p.CardNumber != "" {
		card = p.CardNumber // masked: first 6, last 4
	}
	var why []string
	for _, r := range d.Reasons {
		why = append(why, r.Code)
	}
	score := ""
	if d.Score != nil {
		score = fmt.Sprintf(" score %.2f", *d.Score)
	}
	return fmt.Sprintf("FLAGGED %s  %-24s card %-19s %10s %s%s  %s", d.DecidedAt.Local().Format("15:04:05.000"),
		d.PaymentID, card, p.Amount, p.Currency, score, strings.Join(why, ", "))
}

// summarize prints the summary every period until ctx is done.
func summarize(ctx context.Context, reg *prometheus.Registry, period time.Duration, out io.Writer) error {
	tick := time.NewTicker(period)
	defer tick.Stop()
	var last float64
	lastAt := time.Now()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			last = printSummary(reg, out, last, lastAt)
			lastAt = time.Now()
		}
	}
}

// printSummary prints what the metrics say and returns the payments consumed so far; with a
// previous count and time, also the rate since.
func printSummary(reg *prometheus.Registry, out io.Writer, before float64, since time.Time) float64 {
	families, err := reg.Gather()
	if err != nil {
		fmt.Fprintln(out, "summary:", err)
		return before
	}
	sums := map[string]map[string]float64{}
	for _, f := range families {
		by := map[string]float64{}
		for _, m := range f.GetMetric() {
			label := ""
			if ls := m.GetLabel(); len(ls) == 1 {
				label = ls[0].GetValue()
			}
			by[label] += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		sums[f.GetName()] = by
	}
	consumed := sums["fraud_payments_consumed_total"][""]
	var b strings.Builder
	fmt.Fprintf(&b, "── %s  ", time.Now().Format("15:04:05"))
	if !since.IsZero() {
		fmt.Fprintf(&b, "%.0f payments/s · ", (consumed-before)/time.Since(since).Seconds())
	}
	flags := sums["fraud_flags_total"]
	reasons := slices.Sorted(maps.Keys(flags))
	var parts []string
	for _, r := range reasons {
		parts = append(parts, fmt.Sprintf("%s %.0f", r, flags[r]))
	}
	var dead float64
	for _, n := range sums["fraud_dead_letters_total"] {
		dead += n
	}
	fmt.Fprintf(&b, "%.0f decided, %.0f flagged (%s) · %.0f dead-lettered · %.0f reviews opened",
		consumed-dead, sums["fraud_decisions_total"]["flagged"], strings.Join(parts, ", "), dead,
		sums["fraud_reviews_opened_total"][""])
	if sums["fraud_degraded"][""] > 0 {
		b.WriteString(" · DEGRADED: redis unavailable")
	}
	fmt.Fprintln(out, b.String())
	return consumed
}
