package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/caarlos0/env/v11"
	"github.com/redis/go-redis/v9"
	"gopkg.in/yaml.v3"

	"github.com/paysentry/fraud-detector/internal/api"
	"github.com/paysentry/fraud-detector/internal/detect"
	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/pipeline"
	"github.com/paysentry/fraud-detector/internal/review"
	"github.com/paysentry/fraud-detector/internal/score"
	"github.com/paysentry/fraud-detector/internal/window"
)

// envPrefix starts the name of every environment variable that overrides a setting: the setting
// kafka.topics.high_risk is FRAUD_KAFKA_TOPICS_HIGH_RISK.
const envPrefix = "FRAUD_"

// Config is every setting of the service. configs/config.yaml documents each one; defaultConfig
// holds the same defaults.
type Config struct {
	Kafka   KafkaConfig   `yaml:"kafka" envPrefix:"KAFKA_"`
	Stream  detect.Config `yaml:"stream" envPrefix:"STREAM_"`
	Redis   RedisConfig   `yaml:"redis" envPrefix:"REDIS_"`
	Window  window.Config `yaml:"window" envPrefix:"WINDOW_"`
	Model   model.Config  `yaml:"model" envPrefix:"MODEL_"`
	Review  review.Config `yaml:"review" envPrefix:"REVIEW_"`
	API     api.Config    `yaml:"api" envPrefix:"API_"`
	Rules   RulesConfig   `yaml:"rules" envPrefix:"RULES_"`
	Lists   ListsConfig   `yaml:"lists" envPrefix:"LISTS_"`
	Card    CardConfig    `yaml:"card" envPrefix:"CARD_"`
	Log     LogConfig     `yaml:"log" envPrefix:"LOG_"`
	Score   score.Config  `yaml:"score" envPrefix:"SCORE_"`
	Runtime RuntimeConfig `yaml:"runtime" envPrefix:"RUNTIME_"`
	Stages  StagesConfig  `yaml:"stages" envPrefix:"STAGES_"`
}

// RuntimeConfig tunes the Go runtime.
type RuntimeConfig struct {
	// HeapFloorMB lets the heap grow to this many MiB before a collection while what is live is
	// small (heapfloor.go); 0 leaves Go's default pacing (GOGC=100). Ignored when GOGC is set.
	HeapFloorMB int `yaml:"heap_floor_mb" env:"HEAP_FLOOR_MB"`
}

// RulesConfig says where the policy is: the rules file, reloaded when it changes.
type RulesConfig struct {
	// Path of the rules file (CEL expressions; see configs/rules.yaml).
	Path string `yaml:"path" env:"PATH"`
	// ReloadCheck is how often the file is checked for a change (SIGHUP checks at once); 0: never.
	ReloadCheck time.Duration `yaml:"reload_check" env:"RELOAD_CHECK"`
}

// ListsConfig says where the lists the rules use are kept in Redis and how soon a change is seen.
type ListsConfig struct {
	KeyPrefix string `yaml:"key_prefix" env:"KEY_PREFIX"`
	// Refresh is how often each instance asks Redis whether a list changed (one small request).
	Refresh time.Duration `yaml:"refresh" env:"REFRESH"`
}

// movedSettings were settings of the configuration before the policy became data; setting one
// now is an error that says where it went, never silently ignored.
func movedSettings() []struct{ yaml, env, rule string } {
	return []struct{ yaml, env, rule string }{
		{"rules.amount_threshold", "FRAUD_RULES_AMOUNT_THRESHOLD", "amount_over_threshold"},
		{"rules.currency_thresholds", "FRAUD_RULES_CURRENCY_THRESHOLDS", "amount_over_threshold"},
		{"window.threshold", "FRAUD_WINDOW_THRESHOLD", "card_velocity_1h"},
		{"model.threshold", "FRAUD_MODEL_THRESHOLD", "model_score"},
	}
}

// checkMoved refuses the settings that moved to the rules file, in the YAML file b or the environment.
func checkMoved(b []byte, getenv func(string) string) error {
	var doc map[string]any
	_ = yaml.Unmarshal(b, &doc) // a file that does not parse is reported by the real decode
	for _, m := range movedSettings() {
		section, key, _ := strings.Cut(m.yaml, ".")
		sec, _ := doc[section].(map[string]any)
		_, inFile := sec[key]
		if inFile || getenv(m.env) != "" {
			return fmt.Errorf("%s (%s): the thresholds are rules now: change the expression of rule %s in the rules file (rules.path, configs/rules.yaml by default), and remove this setting",
				m.yaml, m.env, m.rule)
		}
	}
	return nil
}

// StagesConfig turns parts of the pipeline off, for operators and benchmarks.
type StagesConfig struct {
	// Windows: the card state in Redis (window counts, velocity, aggregates). Off, the stream asks
	// Redis nothing and the model, which needs a card's state, scores nothing.
	Windows bool `yaml:"windows" env:"WINDOWS"`
	// Reviews: the review group that opens the analysts' reviews from high-risk-payments.
	Reviews bool `yaml:"reviews" env:"REVIEWS"`
}

// KafkaConfig says where the payments come from and where decisions go.
type KafkaConfig struct {
	Brokers         []string      `yaml:"brokers" env:"BROKERS"`
	ClientID        string        `yaml:"client_id" env:"CLIENT_ID"`
	Version         string        `yaml:"version" env:"VERSION"`
	Group           string        `yaml:"group" env:"GROUP"`
	GroupInstanceID string        `yaml:"group_instance_id" env:"GROUP_INSTANCE_ID"`
	Topics          TopicsConfig  `yaml:"topics" envPrefix:"TOPICS_"`
	InitialOffset   string        `yaml:"initial_offset" env:"INITIAL_OFFSET"`
	CommitInterval  time.Duration `yaml:"commit_interval" env:"COMMIT_INTERVAL"`
	SessionTimeout  time.Duration `yaml:"session_timeout" env:"SESSION_TIMEOUT"`
	FetchBytes      int32         `yaml:"fetch_bytes" env:"FETCH_BYTES"`
	Compression     string        `yaml:"compression" env:"COMPRESSION"`
	MaxMessageBytes int           `yaml:"max_message_bytes" env:"MAX_MESSAGE_BYTES"`
	ConnectTimeout  time.Duration `yaml:"connect_timeout" env:"CONNECT_TIMEOUT"`
	TLS             TLSConfig     `yaml:"tls" envPrefix:"TLS_"`
	SASL            SASLConfig    `yaml:"sasl" envPrefix:"SASL_"`
}

// TopicsConfig names the topics.
type TopicsConfig struct {
	Payments string `yaml:"payments" env:"PAYMENTS"`
	HighRisk string `yaml:"high_risk" env:"HIGH_RISK"`
	DLQ      string `yaml:"dlq" env:"DLQ"`
	Labels   string `yaml:"labels" env:"LABELS"`
}

// RedisConfig says where the per-card state lives. Several addresses mean a Redis Cluster.
type RedisConfig struct {
	Addrs        []string      `yaml:"addrs" env:"ADDRS"`
	Cluster      bool          `yaml:"cluster" env:"CLUSTER"`
	Username     string        `yaml:"username" env:"USERNAME"`
	Password     Secret        `yaml:"password" env:"PASSWORD"`
	PasswordFile string        `yaml:"password_file" env:"PASSWORD_FILE"`
	DB           int           `yaml:"db" env:"DB"`
	DialTimeout  time.Duration `yaml:"dial_timeout" env:"DIAL_TIMEOUT"`
	ReadTimeout  time.Duration `yaml:"read_timeout" env:"READ_TIMEOUT"`
	WriteTimeout time.Duration `yaml:"write_timeout" env:"WRITE_TIMEOUT"`
	TLS          TLSConfig     `yaml:"tls" envPrefix:"TLS_"`
}

// CardConfig holds the key that turns card numbers into card ids.
type CardConfig struct {
	HMACKey     Secret `yaml:"hmac_key" env:"HMAC_KEY"`
	HMACKeyFile string `yaml:"hmac_key_file" env:"HMAC_KEY_FILE"`
}

// LogConfig sets the log level: debug, info, warn or error.
type LogConfig struct {
	Level string `yaml:"level" env:"LEVEL"`
}

// Secret is a string that never shows itself in logs or JSON.
type Secret string

const redacted = "[redacted]"

func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// LogValue keeps the secret out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON keeps the secret out of JSON output.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalYAML keeps the secret out of YAML output.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// LogValue logs the configuration as the file writes it: its settings' names, durations such as
// 720h0m0s, and every secret as [redacted].
func (c Config) LogValue() slog.Value {
	b, err := yaml.Marshal(c)
	if err != nil {
		return slog.StringValue("unprintable: " + err.Error())
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return slog.StringValue("unprintable: " + err.Error())
	}
	return slog.AnyValue(m)
}

func defaultConfig() Config {
	return Config{
		Stages: StagesConfig{Windows: true, Reviews: true},
		Kafka: KafkaConfig{
			Brokers:         []string{"localhost:9092"},
			ClientID:        "fraud-detector",
			Version:         "2.8.0",
			Group:           "fraud-detector",
			Topics:          TopicsConfig{Payments: "payments", HighRisk: "high-risk-payments", DLQ: "payments-dlq", Labels: "fraud-labels"},
			InitialOffset:   "oldest",
			CommitInterval:  200 * time.Millisecond,
			SessionTimeout:  10 * time.Second,
			FetchBytes:      4 << 20,
			Compression:     "none",
			MaxMessageBytes: 1 << 20,
			ConnectTimeout:  30 * time.Second,
		},
		Stream: detect.Config{
			BatchSize:          500,
			BatchLinger:        0,
			MaxInFlightBatches: 4,
			MaxPaymentBytes:    64 << 10,
			DLQMaxValueBytes:   900_000,
			RetryBackoff:       250 * time.Millisecond,
			DrainTimeout:       10 * time.Second,
			StateRetryBudget:   2 * time.Second,
			StateFailurePolicy: pipeline.FailOpen,
			StateLossUnready:   5 * time.Minute,
		},
		Redis: RedisConfig{
			Addrs:        []string{"localhost:6379"},
			DialTimeout:  2 * time.Second,
			ReadTimeout:  time.Second,
			WriteTimeout: time.Second,
		},
		Window: window.Config{Length: time.Hour, AllowedLateness: time.Hour, KeyPrefix: "fd", Buckets: 65536, MaxPaymentsPerCard: 4096, CacheMB: 256},
		Review: review.Config{KeyPrefix: "fd", Retention: 30 * 24 * time.Hour, CaseWindow: 24 * time.Hour},
		API: api.Config{Listen: ":8080", Tokens: api.Tokens{}, MaxBodyBytes: 16 << 10, ReadTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second,
			SessionTTL: 12 * time.Hour},
		Model:   model.Config{Path: "configs/model.onnx", Library: ".cache/onnxruntime/libonnxruntime.so.1.24.1", ReloadCheck: 5 * time.Second},
		Rules:   RulesConfig{Path: "configs/rules.yaml", ReloadCheck: 2 * time.Second},
		Lists:   ListsConfig{KeyPrefix: "fd", Refresh: time.Second},
		Log:     LogConfig{Level: "info"},
		Score:   score.Config{Timeout: 50 * time.Millisecond, Linger: 300 * time.Microsecond, MaxBatch: 500, MaxQueued: 5000, Workers: 4},
		Runtime: RuntimeConfig{HeapFloorMB: 128},
	}
}

// loadConfig reads the YAML file at path over the defaults (a missing file is an error only if
// required), then applies the environment. It does not validate.
func loadConfig(path string, required bool, getenv func(string) string) (Config, error) {
	cfg := defaultConfig()
	b, err := os.ReadFile(path)
	if err := checkMoved(b, getenv); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	switch {
	case err == nil:
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist) && !required:
	default:
		return Config{}, fmt.Errorf("config file: %w", err)
	}
	opts := env.Options{Prefix: envPrefix}
	params, err := env.GetFieldParamsWithOptions(&cfg, opts)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	opts.Environment = map[string]string{}
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			opts.Environment[p.Key] = v
		}
	}
	if err := env.ParseWithOptions(&cfg, opts); err != nil {
		// The library names the Go field; name the variable the operator set instead.
		for _, key := range slices.Sorted(maps.Keys(opts.Environment)) {
			one, probe := opts, cfg
			one.Environment = map[string]string{key: opts.Environment[key]}
			if err := env.ParseWithOptions(&probe, one); err != nil {
				var pe env.ParseError
				if errors.As(err, &pe) {
					err = pe.Err
				}
				return Config{}, fmt.Errorf("environment: %s=%q: %w", key, opts.Environment[key], err)
			}
		}
		return Config{}, fmt.Errorf("environment: %w", err)
	}
	return cfg, nil
}

func (c RulesConfig) validate() error {
	switch {
	case c.Path == "":
		return errors.New("rules.path: must name the rules file (configs/rules.yaml ships with the service)")
	case c.ReloadCheck < 0:
		return fmt.Errorf("rules.reload_check: must not be negative, got %s", c.ReloadCheck)
	}
	return nil
}

func (c ListsConfig) validate() error {
	switch {
	case c.KeyPrefix == "":
		return errors.New("lists.key_prefix: must not be empty")
	case c.Refresh < 100*time.Millisecond || c.Refresh > time.Minute:
		return fmt.Errorf("lists.refresh: must be from 100ms to 1m, got %s", c.Refresh)
	}
	return nil
}

// validate reports the first setting that is wrong, by its name in the file, and resolves the
// settings that are read from elsewhere (the key and password files, the TLS certificates).
func (c *Config) validate() error {
	k := c.Kafka
	switch {
	case len(k.Brokers) == 0:
		return errors.New("kafka.brokers: must list at least one host:port")
	case k.Group == "":
		return errors.New("kafka.group: must not be empty")
	case k.Topics.Payments == "" || k.Topics.HighRisk == "" || k.Topics.DLQ == "" || k.Topics.Labels == "":
		return errors.New("kafka.topics: payments, high_risk, dlq and labels must all be named")
	case k.Topics.Payments == k.Topics.HighRisk || k.Topics.Payments == k.Topics.DLQ:
		return errors.New("kafka.topics: the service must not write to the topic it reads")
	case k.InitialOffset != "oldest" && k.InitialOffset != "newest":
		return fmt.Errorf("kafka.initial_offset: must be oldest or newest, got %q", k.InitialOffset)
	case k.CommitInterval <= 0:
		return fmt.Errorf("kafka.commit_interval: must be positive, got %s", k.CommitInterval)
	case k.SessionTimeout < 6*time.Second:
		// Brokers refuse less than group.min.session.timeout.ms, 6 s by default.
		return fmt.Errorf("kafka.session_timeout: must be at least 6s, got %s", k.SessionTimeout)
	case k.FetchBytes < 64<<10:
		return fmt.Errorf("kafka.fetch_bytes: must be at least 65536, got %d", k.FetchBytes)
	case k.MaxMessageBytes < c.Stream.DLQMaxValueBytes+64<<10:
		return fmt.Errorf("kafka.max_message_bytes: must exceed stream.dlq_max_value_bytes by at least 64 KiB, got %d", k.MaxMessageBytes)
	case k.ConnectTimeout <= 0:
		return fmt.Errorf("kafka.connect_timeout: must be positive, got %s", k.ConnectTimeout)
	}
	for _, b := range k.Brokers {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("kafka.brokers: %q is not host:port", b)
		}
	}
	version, err := sarama.ParseKafkaVersion(k.Version)
	if err != nil {
		return fmt.Errorf("kafka.version: %q is not a Kafka version such as 3.6.0", k.Version)
	}
	if err := k.validateInstanceID(version); err != nil {
		return err
	}
	var codec sarama.CompressionCodec
	if err := codec.UnmarshalText([]byte(k.Compression)); err != nil {
		return fmt.Errorf("kafka.compression: must be none, gzip, snappy, lz4 or zstd, got %q", k.Compression)
	}
	if err := c.Kafka.TLS.load("kafka.tls"); err != nil {
		return err
	}
	if err := c.Kafka.SASL.validate(); err != nil {
		return err
	}
	if err := c.Stream.Validate(); err != nil {
		return err
	}
	if err := c.Rules.validate(); err != nil {
		return err
	}
	if err := c.Lists.validate(); err != nil {
		return err
	}
	if err := c.Window.Validate(); err != nil {
		return err
	}
	if err := c.Model.Validate(); err != nil {
		return err
	}
	if err := c.Review.Validate(); err != nil {
		return err
	}
	if err := c.API.Validate(); err != nil {
		return err
	}
	switch r := c.Redis; {
	case len(r.Addrs) == 0:
		return errors.New("redis.addrs: must list at least one host:port")
	case r.DialTimeout <= 0 || r.ReadTimeout <= 0 || r.WriteTimeout <= 0:
		return errors.New("redis: dial_timeout, read_timeout and write_timeout must be positive")
	case r.DB != 0 && len(r.Addrs) > 1:
		return errors.New("redis.db: a Redis Cluster has only database 0")
	}
	if err := readPassword(&c.Redis.Password, c.Redis.PasswordFile, "redis"); err != nil {
		return err
	}
	if err := c.Redis.TLS.load("redis.tls"); err != nil {
		return err
	}
	if c.Card.HMACKeyFile != "" {
		b, err := os.ReadFile(c.Card.HMACKeyFile)
		if err != nil {
			return fmt.Errorf("card.hmac_key_file: %w", err)
		}
		c.Card.HMACKey = Secret(strings.TrimRight(string(b), "\r\n"))
	}
	if len(c.Card.HMACKey) < 16 {
		return errors.New("card.hmac_key: must be set, at least 16 bytes: it turns card numbers into card ids " +
			"(set FRAUD_CARD_HMAC_KEY or FRAUD_CARD_HMAC_KEY_FILE; keep it secret and keep it stable)")
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		return err
	}
	if err := c.Score.Validate(); err != nil {
		return err
	}
	if h := c.Runtime.HeapFloorMB; h < 0 || h > 1<<16 {
		return fmt.Errorf("runtime.heap_floor_mb: must be from 0 (Go's default pacing) to 65536, got %d", h)
	}
	return nil
}

// The service's consumer groups are kafka.group (payments), <group>-labels (analysts' verdicts)
// and <group>-reviews (the decisions, for the review queue).
const (
	labelsGroupSuffix  = "-labels"
	reviewsGroupSuffix = "-reviews"
)

// validateInstanceID checks kafka.group_instance_id, and the ids made from it for the other
// groups, by Kafka's rules: at most 249 characters of a-z, A-Z, 0-9, '.', '_' and '-', and a
// protocol version that has static membership (2.3.0).
func (k KafkaConfig) validateInstanceID(version sarama.KafkaVersion) error {
	id := k.GroupInstanceID
	if id == "" {
		return nil
	}
	if longest := 249 - len(reviewsGroupSuffix); len(id) > longest {
		return fmt.Errorf("kafka.group_instance_id: at most %d characters (%q is added for the reviews' group), got %d", longest, reviewsGroupSuffix, len(id))
	}
	if id == "." || id == ".." || strings.IndexFunc(id, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) >= 0 {
		return fmt.Errorf("kafka.group_instance_id: only letters, digits, '.', '_' and '-' (and not . or ..), got %q", id)
	}
	if !version.IsAtLeast(sarama.V2_3_0_0) {
		return fmt.Errorf("kafka.group_instance_id: needs kafka.version 2.3.0 or later, got %s", k.Version)
	}
	return nil
}

// consumerGroup returns the name and the configuration of the consumer group kafka.group+suffix:
// consumer's, with the member's group instance id kafka.group_instance_id+suffix if that is set,
// so that each of the service's groups has a static member of its own. A static member that stops
// does not leave its groups: its partitions wait for it to come back, up to the session timeout.
func (k KafkaConfig) consumerGroup(consumer *sarama.Config, suffix string) (string, *sarama.Config) {
	c := *consumer
	if k.GroupInstanceID != "" {
		c.Consumer.Group.InstanceId = k.GroupInstanceID + suffix
	}
	return k.Group + suffix, &c
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("log.level: must be debug, info, warn or error, got %q", s)
	}
	return l, nil
}

// saramaConfigs returns the configurations of the consumer group and of the idempotent producer.
// validate must have passed: it reads the TLS files.
func (c *Config) saramaConfigs() (consumer, producer *sarama.Config) {
	version, _ := sarama.ParseKafkaVersion(c.Kafka.Version)
	base := func() *sarama.Config {
		s := sarama.NewConfig()
		s.ClientID = c.Kafka.ClientID
		s.Version = version
		s.Metadata.Retry.Max = 5
		if c.Kafka.TLS.Enabled {
			s.Net.TLS.Enable = true
			s.Net.TLS.Config = c.Kafka.TLS.client
		}
		c.Kafka.SASL.apply(s)
		return s
	}
	consumer = base()
	consumer.Consumer.Return.Errors = true
	consumer.Consumer.Offsets.Initial = sarama.OffsetOldest
	if c.Kafka.InitialOffset == "newest" {
		consumer.Consumer.Offsets.Initial = sarama.OffsetNewest
	}
	consumer.Consumer.Offsets.AutoCommit.Enable = true
	consumer.Consumer.Offsets.AutoCommit.Interval = c.Kafka.CommitInterval
	consumer.Consumer.Group.Session.Timeout = c.Kafka.SessionTimeout
	consumer.Consumer.Group.Heartbeat.Interval = c.Kafka.SessionTimeout / 3
	consumer.Consumer.Fetch.Default = c.Kafka.FetchBytes
	consumer.Consumer.Fetch.Max = max(c.Kafka.FetchBytes, int32(c.Stream.MaxPaymentBytes)*2)
	consumer.Consumer.MaxWaitTime = 100 * time.Millisecond
	consumer.ChannelBufferSize = 2 * c.Stream.BatchSize

	producer = base()
	producer.Producer.Idempotent = true
	producer.Producer.RequiredAcks = sarama.WaitForAll
	producer.Net.MaxOpenRequests = 1
	producer.Producer.Retry.Max = 10
	producer.Producer.Retry.Backoff = 100 * time.Millisecond
	producer.Producer.Return.Successes = true
	producer.Producer.Return.Errors = true
	producer.Producer.MaxMessageBytes = c.Kafka.MaxMessageBytes
	_ = producer.Producer.Compression.UnmarshalText([]byte(c.Kafka.Compression))
	producer.ChannelBufferSize = 2 * c.Stream.BatchSize
	return consumer, producer
}

// redisOptions are the client options for the state store. validate must have passed: it reads
// the password and TLS files.
func (c *Config) redisOptions() *redis.UniversalOptions {
	r := c.Redis
	return &redis.UniversalOptions{
		Addrs:        r.Addrs,
		Username:     r.Username,
		Password:     string(r.Password),
		DB:           r.DB,
		DialTimeout:  r.DialTimeout,
		ReadTimeout:  r.ReadTimeout,
		WriteTimeout: r.WriteTimeout,
		MaxRetries:   1, // the stream retries with backoff itself (stream.state_retry_budget)
		// A call's context deadline bounds its reads and writes too (else only read_timeout
		// does): a try of the card state, and a score request's budget, end when they say.
		ContextTimeoutEnabled: true,
		IsClusterMode:         r.Cluster,
		TLSConfig:             r.TLS.client, // nil: no TLS
	}
}
