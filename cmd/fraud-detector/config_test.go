package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The shipped file documents the defaults: it must say exactly what defaultConfig says.
func TestShippedConfigIsTheDefaults(t *testing.T) {
	cfg, err := loadConfig("../../configs/config.yaml", true, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	// An empty map from the file and a nil one from the code mean the same.
	if len(cfg.Rules.CurrencyThresholds) == 0 {
		cfg.Rules.CurrencyThresholds = nil
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("configs/config.yaml and defaultConfig differ:\nfile: %+v\ncode: %+v", cfg, want)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	cfg, err := loadConfig("../../configs/config.yaml", true, envMap(map[string]string{
		"FRAUD_KAFKA_BROKERS":             "a:1,b:2",
		"FRAUD_KAFKA_TOPICS_HIGH_RISK":    "hr",
		"FRAUD_STREAM_BATCH_LINGER":       "7ms",
		"FRAUD_RULES_AMOUNT_THRESHOLD":    "250.50",
		"FRAUD_RULES_CURRENCY_THRESHOLDS": "JPY:15000,KRW:130000",
		"FRAUD_CARD_HMAC_KEY":             "0123456789abcdef",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Kafka.Brokers, ","); got != "a:1,b:2" {
		t.Errorf("brokers = %s", got)
	}
	if cfg.Kafka.Topics.HighRisk != "hr" || cfg.Stream.BatchLinger.String() != "7ms" {
		t.Errorf("got %+v", cfg)
	}
	if !cfg.Rules.AmountThreshold.Equal(decimal.RequireFromString("250.5")) {
		t.Errorf("threshold = %s", cfg.Rules.AmountThreshold)
	}
	if !cfg.Rules.CurrencyThresholds["KRW"].Equal(decimal.NewFromInt(130000)) {
		t.Errorf("currency thresholds = %v", cfg.Rules.CurrencyThresholds)
	}
	if err := cfg.validate(); err != nil {
		t.Errorf("validate: %v", err)
	}
}

func TestBadConfigurationNamesTheSetting(t *testing.T) {
	key := "FRAUD_CARD_HMAC_KEY"
	tests := []struct {
		name string
		env  map[string]string
		file string
		want string
	}{
		{"no key", map[string]string{}, "", "card.hmac_key"},
		{"short key", map[string]string{key: "short"}, "", "card.hmac_key"},
		{"batch size", map[string]string{key: "0123456789abcdef", "FRAUD_STREAM_BATCH_SIZE": "0"}, "", "stream.batch_size"},
		{"bad duration", map[string]string{key: "0123456789abcdef", "FRAUD_STREAM_BATCH_LINGER": "soon"}, "", "FRAUD_STREAM_BATCH_LINGER"},
		{"initial offset", map[string]string{key: "0123456789abcdef", "FRAUD_KAFKA_INITIAL_OFFSET": "middle"}, "", "kafka.initial_offset"},
		{"version", map[string]string{key: "0123456789abcdef", "FRAUD_KAFKA_VERSION": "banana"}, "", "kafka.version"},
		{"broker", map[string]string{key: "0123456789abcdef", "FRAUD_KAFKA_BROKERS": "localhost"}, "", "kafka.brokers"},
		{"threshold", map[string]string{key: "0123456789abcdef", "FRAUD_RULES_AMOUNT_THRESHOLD": "-1"}, "", "rules.amount_threshold"},
		{"same topic", map[string]string{key: "0123456789abcdef", "FRAUD_KAFKA_TOPICS_HIGH_RISK": "payments"}, "", "kafka.topics"},
		{"unknown key in file", map[string]string{key: "0123456789abcdef"}, "kafka:\n  brokerz: [x:1]\n", "brokerz"},
		{"level", map[string]string{key: "0123456789abcdef", "FRAUD_LOG_LEVEL": "loud"}, "", "log.level"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(path, []byte(tt.file), 0o600)
			cfg, err := loadConfig(path, true, envMap(tt.env))
			if err == nil {
				err = cfg.validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestKeyFromFileAndRedacted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key")
	os.WriteFile(path, []byte("super-secret-key-material\n"), 0o600)
	cfg, err := loadConfig("missing.yaml", false, envMap(map[string]string{"FRAUD_CARD_HMAC_KEY_FILE": path}))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Card.HMACKey != "super-secret-key-material" {
		t.Errorf("key = %q", string(cfg.Card.HMACKey))
	}
	var out strings.Builder
	err = run(t.Context(), []string{"-config", "../../configs/config.yaml", "-check-config"},
		envMap(map[string]string{"FRAUD_CARD_HMAC_KEY_FILE": path}), &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "super-secret") || !strings.Contains(out.String(), redacted) {
		t.Errorf("config log shows the secret or hides nothing: %s", out.String())
	}
}
