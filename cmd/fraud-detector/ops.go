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
	"runtime/debug"
	"time"

	"github.com/IBM/sarama"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/paysentry/fraud-detector/internal/api"
	"github.com/paysentry/fraud-detector/internal/pipeline"
	"github.com/paysentry/fraud-detector/internal/window"
)

// buildVersion is the version set at link time, or else the VCS revision Go recorded.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return version
}

// buildInfo is the fraud_build_info gauge: always 1, its labels say what runs. The model's and the
// rules' versions are read at each scrape, since both can change while the service runs (the
// rules' with the lists too).
type buildInfo struct {
	desc         *prometheus.Desc
	version      string
	rules, model func() string
}

func newBuildInfo(version string, rules, model func() string) prometheus.Collector {
	return buildInfo{
		desc: prometheus.NewDesc("fraud_build_info", "What runs: the service's version, the model's and the rules'.",
			[]string{"version", "model_version", "rules_version"}, nil),
		version: version, rules: rules, model: model,
	}
}

func (b buildInfo) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc }

func (b buildInfo) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, 1, b.version, b.model(), b.rules())
}

// shadowInfo is the fraud_shadow_model_info gauge: 1, its label the challenger model's version
// (model.shadow_path), read at each scrape since it follows the file's reloads; no series without
// a challenger.
type shadowInfo struct {
	desc    *prometheus.Desc
	version func() string
}

func newShadowInfo(version func() string) prometheus.Collector {
	return shadowInfo{
		desc: prometheus.NewDesc("fraud_shadow_model_info", "The shadow (challenger) model scoring beside the serving one, by its version; absent without one.",
			[]string{"model_version"}, nil),
		version: version,
	}
}

func (s shadowInfo) Describe(ch chan<- *prometheus.Desc) { ch <- s.desc }

func (s shadowInfo) Collect(ch chan<- prometheus.Metric) {
	if v := s.version(); v != "" {
		ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, 1, v)
	}
}

// kafkaProbe asks the brokers for the payments topic's metadata, for readiness. Probes that
// arrive while one is under way share its answer, so a slow broker does not pile them up.
type kafkaProbe struct {
	client sarama.Client
	topic  string
	flight singleflight.Group
}

func newKafkaProbe(cfg Config) (*kafkaProbe, error) {
	sc, _ := cfg.saramaConfigs()
	sc.Metadata.Retry.Max = 0
	sc.Net.DialTimeout, sc.Net.ReadTimeout, sc.Net.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
	client, err := sarama.NewClient(cfg.Kafka.Brokers, sc)
	if err != nil {
		return nil, fmt.Errorf("kafka readiness client: %w", err)
	}
	return &kafkaProbe{client: client, topic: cfg.Kafka.Topics.Payments}, nil
}

func (p *kafkaProbe) Probe(ctx context.Context) error {
	ch := p.flight.DoChan("", func() (any, error) {
		if err := p.client.RefreshMetadata(p.topic); err != nil {
			return nil, fmt.Errorf("metadata of %s: %w", p.topic, err)
		}
		return nil, nil
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return fmt.Errorf("no answer from the brokers: %w", ctx.Err())
	}
}

func (p *kafkaProbe) Close() error { return p.client.Close() }

// newest is a partition's newest offset, asked of its leader: fraud_consumer_lag's measure.
func (p *kafkaProbe) newest(topic string, partition int32) (int64, error) {
	return p.client.GetOffset(topic, partition, sarama.OffsetNewest)
}

// warnInsecure logs the settings that work but weaken the connections.
func warnInsecure(cfg Config, log *slog.Logger) {
	if cfg.Kafka.TLS.InsecureSkipVerify {
		log.Warn("kafka.tls.insecure_skip_verify: the brokers' certificates are not checked")
	}
	if cfg.Redis.TLS.InsecureSkipVerify {
		log.Warn("redis.tls.insecure_skip_verify: Redis's certificate is not checked")
	}
	if cfg.Kafka.SASL.Mechanism == "PLAIN" && !cfg.Kafka.TLS.Enabled {
		log.Warn("kafka.sasl.mechanism PLAIN without kafka.tls: the password crosses the network in clear")
	}
}

// readiness is what /readyz checks: the brokers and Redis answer, the stream is not degraded, and
// Redis has not lost its data within stream.state_loss_unready.
// (A model that does not load stops the start, and a failed reload keeps the one before: a
// running service always has its model.) A degraded stream is probed with the kind of call it makes (a script
// that writes); if that works, the stream is told, so that an idle stream does not stay degraded
// until its next payment.
func readiness(cfg Config, kafka *kafkaProbe, rdb redis.UniversalClient, windows *window.Store, h *pipeline.Pipeline) []api.Check {
	checks := []api.Check{
		{Name: "kafka", Probe: kafka.Probe},
		{Name: "redis", Probe: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
		{Name: "stream", Probe: func(ctx context.Context) error {
			if !h.Degraded() {
				return nil
			}
			if err := windows.Probe(ctx); err != nil {
				return fmt.Errorf("degraded (%s): %w", cfg.Stream.StateFailurePolicy, err)
			}
			h.StateAnswered()
			return nil
		}},
		{Name: "state", Probe: func(context.Context) error {
			lost := h.StateLost()
			if lost.IsZero() || cfg.Stream.StateLossUnready == 0 || time.Since(lost) >= cfg.Stream.StateLossUnready {
				return nil
			}
			return fmt.Errorf("redis lost its data at %s: windows, aggregates and open reviews started again from nothing (see the README, \"When Redis loses its data\")",
				lost.Format(time.RFC3339))
		}},
	}
	return checks
}

// runHealthcheck asks the service on this machine for /healthz, at the port of api.listen, and
// fails unless it answers 200: the container's health check (the image has no curl).
func runHealthcheck(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	fs := flag.NewFlagSet("fraud-detector healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", configPathFrom(getenv), "the YAML configuration `file` (default: FRAUD_CONFIG, else "+defaultConfigPath+")")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*configPath, configRequired(fs, getenv), getenv)
	if err != nil {
		return err
	}
	_, port, err := net.SplitHostPort(cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("api.listen %q: %w", cfg.API.Listen, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort("127.0.0.1", port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthz: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New("healthz: " + resp.Status)
	}
	return nil
}
