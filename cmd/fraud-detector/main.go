// Command fraud-detector reads payments from Kafka, decides whether each looks fraudulent, and
// writes the decisions of flagged payments to the high-risk topic. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/go-json-experiment/json"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/paysentry/fraud-detector/internal/api"
	"github.com/paysentry/fraud-detector/internal/detect"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/review"
	"github.com/paysentry/fraud-detector/internal/rules"
	"github.com/paysentry/fraud-detector/internal/score"
)

const defaultConfigPath = "configs/config.yaml"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fraud-detector:", err)
		os.Exit(1)
	}
}

// version is the build's version, set with -ldflags "-X main.version=..." (the Dockerfile does).
var version = "dev"

// run starts the service and returns when ctx is done and everything in flight is drained.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "replay":
			return runReplay(ctx, args[1:], getenv, stdout, stderr)
		case "retrain":
			return runRetrain(ctx, args[1:], getenv, stdout, stderr)
		case "healthcheck":
			return runHealthcheck(ctx, args[1:], getenv, stderr)
		case "demo":
			return runDemo(ctx, args[1:], getenv, stdout, stderr)
		case "rules":
			return runRules(args[1:], stdout, stderr)
		}
	}
	fs := flag.NewFlagSet("fraud-detector", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: fraud-detector [flags]            run the service
       fraud-detector demo [flags]       the whole pipeline in one process (in-process Kafka and Redis)
       fraud-detector replay [flags]     decide on a file of payments as the stream would; backtest rules
       fraud-detector retrain [flags]    train a model on the topics' payments and analysts' verdicts
       fraud-detector rules check FILE   compile and type-check a rules file
       fraud-detector healthcheck        exit 0 if the service on this machine answers /healthz

flags:
`)
		fs.PrintDefaults()
	}
	configPath := fs.String("config", configPathFrom(getenv), "the YAML configuration `file` (default: FRAUD_CONFIG, else "+defaultConfigPath+"); FRAUD_* environment variables override it")
	checkOnly := fs.Bool("check-config", false, "validate the configuration and the rules file, print the configuration with secrets redacted, and exit")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to `file` (for benchmarks)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, configRequired(fs, getenv), getenv)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	// The rules file is checked with the configuration: a broken one stops the start at once,
	// before any broker is waited for, and fails -check-config.
	if _, err := rules.Load(cfg.Rules.Path); err != nil {
		return fmt.Errorf("rules.path: %w", err)
	}
	log := newLogger(stdout, cfg.Log)
	log.Info("configuration", "file", *configPath, "config", cfg, "version", buildVersion())
	if *checkOnly {
		return nil
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer pprof.StopCPUProfile()
	}
	if getenv("GOGC") == "" { // an operator's GOGC is theirs
		defer startHeapFloor(cfg.Runtime.HeapFloorMB)()
	}
	reg := prometheus.NewRegistry()
	return serve(ctx, cfg, reg, log, nil)
}

// configPathFrom is the configuration file when -config is not given: FRAUD_CONFIG, else the
// shipped one. The health check reads it too, so a container that moves the file keeps one answer.
func configPathFrom(getenv func(string) string) string {
	if p := getenv("FRAUD_CONFIG"); p != "" {
		return p
	}
	return defaultConfigPath
}

// configRequired reports whether the file was named (-config or FRAUD_CONFIG): then it must exist.
func configRequired(fs *flag.FlagSet, getenv func(string) string) bool {
	named := getenv("FRAUD_CONFIG") != ""
	fs.Visit(func(f *flag.Flag) { named = named || f.Name == "config" })
	return named
}

func newLogger(w io.Writer, c LogConfig) *slog.Logger {
	level, _ := parseLevel(c.Level)
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

// serve runs the service on a validated configuration until ctx is done, with its metrics in reg.
// listening, when set, is told the API's address once it listens.
func serve(ctx context.Context, cfg Config, reg *prometheus.Registry, log *slog.Logger, listening func(net.Addr)) error {
	// SIGHUP checks the rules file and the model files (the model's, the challenger's) at once;
	// each has a channel of its own.
	// Taken from the start: a SIGHUP while the service waits for its broker must not kill it
	// (the default action); one that comes then is acted on once the watchers run.
	rulesHup, modelHup, shadowHup := make(chan os.Signal, 1), make(chan os.Signal, 1), make(chan os.Signal, 1)
	for _, hup := range []chan os.Signal{rulesHup, modelHup, shadowHup} {
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	dec := payment.NewDecoder([]byte(cfg.Card.HMACKey), cfg.Stream.MaxPaymentBytes)
	consumerCfg, producerCfg := cfg.saramaConfigs()
	metrics := detect.NewMetrics(reg)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	warnInsecure(cfg, log)

	// The port first: taken, it fails the start at once, before any broker is waited for.
	ln, err := net.Listen("tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("api.listen: %w", err)
	}
	defer ln.Close()

	producer, err := connect(ctx, cfg.Kafka, log, func() (sarama.AsyncProducer, error) {
		return sarama.NewAsyncProducer(cfg.Kafka.Brokers, producerCfg)
	})
	if err != nil {
		return err
	}
	out := detect.NewOutputs(producer)
	defer func() {
		if err := out.Close(cfg.Stream.DrainTimeout); err != nil {
			log.Error("close producer", "err", err)
		}
	}()
	// The consumer groups are closed by detect.Consume once it runs; until then, here.
	var groups []sarama.ConsumerGroup
	consuming := false
	defer func() {
		if !consuming {
			for _, g := range groups {
				g.Close()
			}
		}
	}()
	newGroup := func(suffix string) func() (sarama.ConsumerGroup, error) {
		return func() (sarama.ConsumerGroup, error) {
			name, sc := cfg.Kafka.consumerGroup(consumerCfg, suffix)
			return sarama.NewConsumerGroup(cfg.Kafka.Brokers, name, sc)
		}
	}
	group, err := connect(ctx, cfg.Kafka, log, newGroup(""))
	if err != nil {
		return err
	}
	groups = append(groups, group)
	rdb := redis.NewUniversalClient(cfg.redisOptions())
	defer rdb.Close()
	pingCtx, cancel := context.WithTimeout(ctx, cfg.Redis.DialTimeout)
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		log.Warn("redis not reachable at start; the stream retries it", "addrs", cfg.Redis.Addrs,
			"policy", cfg.Stream.StateFailurePolicy, "err", err)
	}
	cancel()
	d, err := newDecider(cfg, rdb, time.Now, metrics.Pipeline(), log, false)
	if err != nil {
		return err
	}
	defer d.Close()
	windows, pipe := d.windows, d.pipe
	metrics.KnowRules(pipe.Rules())
	if _, err := d.lists.Refresh(ctx); err != nil {
		log.Warn("lists not read at start; batches wait for them as for the card state (stream.state_failure_policy)",
			"policy", cfg.Stream.StateFailurePolicy, "err", err)
	}
	reg.MustRegister(newBuildInfo(buildVersion(), pipe.RulesVersion, d.modelVersion), newShadowInfo(d.shadowVersion))
	reviews := review.NewStore(rdb, cfg.Review, time.Now)
	if !cfg.Stages.Windows {
		log.Warn("stages.windows is off: no card state, so no window counts and no model score; the rules decide on the payment and the lists")
	}
	handler := detect.NewHandler(cfg.Stream,
		detect.Topics{HighRisk: cfg.Kafka.Topics.HighRisk, DLQ: cfg.Kafka.Topics.DLQ},
		dec, pipe, out, metrics, log)
	labelProducer, err := connect(ctx, cfg.Kafka, log, func() (sarama.SyncProducer, error) {
		return sarama.NewSyncProducer(cfg.Kafka.Brokers, producerCfg)
	})
	if err != nil {
		return err
	}
	defer labelProducer.Close()
	probe, err := connect(ctx, cfg.Kafka, log, func() (*kafkaProbe, error) { return newKafkaProbe(cfg) })
	if err != nil {
		return err
	}
	defer probe.Close()
	metrics.SetNewestOffsets(probe.newest)
	if len(cfg.API.Tokens) == 0 {
		log.Warn("no api.tokens configured: every API request gets 401")
	}
	ops := api.Ops{
		Metrics:  promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}),
		Checks:   readiness(cfg, probe, rdb, windows, pipe),
		Verdicts: review.NewVerdicts(reg),
	}
	apiServer := api.New(cfg.API, reviews, windows, kafkaLabels{labelProducer, cfg.Kafka.Topics.Labels}, d.lists, ops, log)
	ui, err := newConsole(cfg, apiServer, reviews, windows, d.lists, reg, log)
	if err != nil {
		return err
	}
	apiServer.SetConsole(ui)
	scorer := score.New(cfg.Score, dec, pipe, cfg.Stream.StateFailurePolicy)
	apiServer.SetScoring(scorer)
	httpServer := apiServer.HTTPServer()

	// Every group is joined before anything runs: a failure here leaves nothing behind.
	var labels sarama.ConsumerGroup
	if cfg.Stages.Windows {
		labels, err = connect(ctx, cfg.Kafka, log, newGroup(labelsGroupSuffix))
		if err != nil {
			return err
		}
		groups = append(groups, labels)
	}
	var reviewGroup sarama.ConsumerGroup
	if cfg.Stages.Reviews {
		reviewGroup, err = connect(ctx, cfg.Kafka, log, newGroup(reviewsGroupSuffix))
		if err != nil {
			return err
		}
		groups = append(groups, reviewGroup)
	} else {
		log.Warn("stages.reviews is off: no review is opened for flagged payments")
	}
	consuming = true

	log.Info("consuming", "topic", cfg.Kafka.Topics.Payments, "group", cfg.Kafka.Group,
		"group_instance_id", cfg.Kafka.GroupInstanceID, "rules_version", pipe.RulesVersion())
	// The groups' errors and failed joins and the stream's retries: a few lines a minute of each cause.
	kafkaLogs := handler.Logs()
	g, gctx := errgroup.WithContext(ctx)
	foldCtx, stopFold := context.WithCancel(gctx)
	g.Go(func() error {
		defer stopFold()
		return detect.Consume(gctx, group, []string{cfg.Kafka.Topics.Payments}, handler, kafkaLogs)
	})
	if labels != nil {
		g.Go(func() error {
			return detect.Consume(foldCtx, labels, []string{cfg.Kafka.Topics.Labels}, detect.NewLabelHandler(windows, metrics, log, kafkaLogs), kafkaLogs)
		})
	}
	if reviewGroup != nil {
		g.Go(func() error {
			return detect.Consume(foldCtx, reviewGroup, []string{cfg.Kafka.Topics.HighRisk}, detect.NewReviewHandler(reviews, metrics, log, kafkaLogs), kafkaLogs)
		})
	}
	if cfg.Stages.Windows {
		g.Go(func() error { return windows.RunFold(foldCtx, time.Second, log) })
	}
	// The scorer stops once the API has: requests keep being scored while the stream drains.
	scoreCtx, stopScoring := context.WithCancel(context.Background())
	g.Go(func() error { return scorer.Run(scoreCtx) })
	g.Go(func() error {
		log.Info("api listening", "addr", ln.Addr().String())
		if listening != nil {
			listening(ln.Addr())
		}
		if err := httpServer.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("api: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-foldCtx.Done() // the stream stopped: stop the API too, with a fresh context for its requests
		shutdown, cancel := context.WithTimeout(context.Background(), cfg.API.WriteTimeout)
		defer cancel()
		defer stopScoring()
		return httpServer.Shutdown(shutdown)
	})
	g.Go(func() error { return d.lists.Run(foldCtx, cfg.Lists.Refresh, log) })
	g.Go(func() error {
		return pipe.WatchRules(foldCtx, cfg.Rules.Path, cfg.Rules.ReloadCheck, rulesHup, func(set *rules.Set) {
			d.lists.SetSpecs(set.Lists())
			metrics.KnowRules(set)
		})
	})
	if d.scorer != nil {
		g.Go(func() error { return d.scorer.Watch(foldCtx, modelHup) })
	}
	if d.shadow != nil { // reloaded as the model is, on its own: one file may change without the other
		g.Go(func() error { return d.shadow.Watch(foldCtx, shadowHup) })
	}
	err = g.Wait()
	kafkaLogs.FlushAll(context.Background()) // what the last minute held back
	log.Info("stopped")
	return err
}

// connect calls dial until it succeeds, ctx is done, or the connect timeout passes, so that the
// service can start before its broker is up.
func connect[T any](ctx context.Context, k KafkaConfig, log *slog.Logger, dial func() (T, error)) (T, error) {
	deadline := time.Now().Add(k.ConnectTimeout)
	wait := 250 * time.Millisecond
	for {
		v, err := dial()
		if err == nil {
			return v, nil
		}
		if errors.Is(err, sarama.ErrSASLAuthenticationFailed) || errors.Is(err, sarama.ErrUnsupportedSASLMechanism) {
			return v, fmt.Errorf("connect to kafka at %v: %w (check kafka.sasl)", k.Brokers, err) // trying again cannot help
		}
		if time.Now().Add(wait).After(deadline) {
			return v, fmt.Errorf("connect to kafka at %v within %s: %w", k.Brokers, k.ConnectTimeout, err)
		}
		log.Warn("kafka not reachable yet", "brokers", k.Brokers, "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return v, errors.Join(ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// kafkaLabels publishes analysts' verdicts to the labels topic, keyed by card.
type kafkaLabels struct {
	p     sarama.SyncProducer
	topic string
}

func (k kafkaLabels) Publish(_ context.Context, l api.Label) error {
	v, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, _, err = k.p.SendMessage(&sarama.ProducerMessage{Topic: k.topic, Key: sarama.StringEncoder(l.CardID), Value: sarama.ByteEncoder(v)})
	return err
}
