package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// The shipped file documents the defaults: it must say exactly what defaultConfig says.
func TestShippedConfigIsTheDefaults(t *testing.T) {
	cfg, err := loadConfig("../../configs/config.yaml", true, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := defaultConfig()
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("configs/config.yaml and defaultConfig differ:\nfile: %+v\ncode: %+v", cfg, want)
	}
}

func TestEnvironmentOverridesFile(t *testing.T) {
	cfg, err := loadConfig("../../configs/config.yaml", true, envMap(map[string]string{
		"FRAUD_KAFKA_BROKERS":           "a:1,b:2",
		"FRAUD_KAFKA_TOPICS_HIGH_RISK":  "hr",
		"FRAUD_STREAM_BATCH_LINGER":     "7ms",
		"FRAUD_RULES_PATH":              "/etc/fraud/rules.yaml",
		"FRAUD_LISTS_REFRESH":           "3s",
		"FRAUD_CARD_HMAC_KEY":           "0123456789abcdef",
		"FRAUD_KAFKA_GROUP_INSTANCE_ID": "fraud-detector-0",
		"FRAUD_MODEL_SHADOW_PATH":       "configs/challenger.onnx",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Kafka.Brokers, ","); got != "a:1,b:2" {
		t.Errorf("brokers = %s", got)
	}
	if cfg.Kafka.GroupInstanceID != "fraud-detector-0" {
		t.Errorf("group instance id = %q", cfg.Kafka.GroupInstanceID)
	}
	if cfg.Kafka.Topics.HighRisk != "hr" || cfg.Stream.BatchLinger.String() != "7ms" {
		t.Errorf("got %+v", cfg)
	}
	if cfg.Rules.Path != "/etc/fraud/rules.yaml" || cfg.Lists.Refresh.String() != "3s" {
		t.Errorf("rules %+v, lists %+v", cfg.Rules, cfg.Lists)
	}
	if cfg.Model.ShadowPath != "configs/challenger.onnx" || cfg.Model.Path != "configs/model.onnx" {
		t.Errorf("model %+v", cfg.Model)
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
		// The thresholds became rules: setting one says where it went, in the file or the environment.
		{"amount threshold moved", map[string]string{key: "0123456789abcdef", "FRAUD_RULES_AMOUNT_THRESHOLD": "250"}, "", "rule amount_over_threshold"},
		{"window threshold moved", map[string]string{key: "0123456789abcdef"}, "window:\n  threshold: 5\n", "rule card_velocity_1h"},
		{"model threshold moved", map[string]string{key: "0123456789abcdef"}, "model:\n  threshold: 0.7\n", "rule model_score"},
		{"no rules file", map[string]string{key: "0123456789abcdef", "FRAUD_RULES_PATH": ""}, "rules:\n  path: \"\"\n", "rules.path"},
		{"lists refresh", map[string]string{key: "0123456789abcdef", "FRAUD_LISTS_REFRESH": "10ms"}, "", "lists.refresh"},
		{"same topic", map[string]string{key: "0123456789abcdef", "FRAUD_KAFKA_TOPICS_HIGH_RISK": "payments"}, "", "kafka.topics"},
		{"unknown key in file", map[string]string{key: "0123456789abcdef"}, "kafka:\n  brokerz: [x:1]\n", "brokerz"},
		{"level", map[string]string{key: "0123456789abcdef", "FRAUD_LOG_LEVEL": "loud"}, "", "log.level"},
		{"instance id character", map[string]string{key: "0123456789abcdef", "FRAUD_KAFKA_GROUP_INSTANCE_ID": "pod/0"}, "", "kafka.group_instance_id"},
		// A challenger needs a serving model to stand beside, and must be another file.
		{"shadow without a model", map[string]string{key: "0123456789abcdef", "FRAUD_MODEL_PATH": "none", "FRAUD_MODEL_SHADOW_PATH": "challenger.onnx"}, "", "model.shadow_path"},
		{"shadow is the model", map[string]string{key: "0123456789abcdef", "FRAUD_MODEL_SHADOW_PATH": "./configs/model.onnx"}, "", "model.shadow_path"},
		{"shadow without a library", map[string]string{key: "0123456789abcdef", "FRAUD_MODEL_SHADOW_PATH": "challenger.onnx"}, "model:\n  onnxruntime_library: \"\"\n", "model.onnxruntime_library"},
		{"instance id dots", map[string]string{key: "0123456789abcdef", "FRAUD_KAFKA_GROUP_INSTANCE_ID": ".."}, "", "kafka.group_instance_id"},
		// 241 is the longest: the reviews' group adds "-reviews", and Kafka allows 249.
		{"instance id length", map[string]string{key: "0123456789abcdef", "FRAUD_KAFKA_GROUP_INSTANCE_ID": strings.Repeat("a", 242)}, "", "kafka.group_instance_id"},
		{"instance id version", map[string]string{key: "0123456789abcdef", "FRAUD_KAFKA_GROUP_INSTANCE_ID": "a", "FRAUD_KAFKA_VERSION": "2.2.0"}, "", "kafka.group_instance_id"},
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

// Each of the service's consumer groups gets a static member id of its own, derived from
// kafka.group_instance_id, which sarama accepts; without one every member is dynamic.
func TestConsumerGroupsGetInstanceIDs(t *testing.T) {
	for _, id := range []string{"", "fraud-detector-0", strings.Repeat("a", 241)} {
		cfg, err := loadConfig("../../configs/config.yaml", true, envMap(map[string]string{
			"FRAUD_CARD_HMAC_KEY": "0123456789abcdef", "FRAUD_KAFKA_GROUP_INSTANCE_ID": id,
		}))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.validate(); err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		consumer, _ := cfg.saramaConfigs()
		seen := map[string]bool{}
		for suffix, group := range map[string]string{"": "fraud-detector", labelsGroupSuffix: "fraud-detector-labels", reviewsGroupSuffix: "fraud-detector-reviews"} {
			name, sc := cfg.Kafka.consumerGroup(consumer, suffix)
			want := ""
			if id != "" {
				want = id + suffix
			}
			if name != group || sc.Consumer.Group.InstanceId != want {
				t.Errorf("id %q, group %q: got group %q, instance id %q, want %q", id, suffix, name, sc.Consumer.Group.InstanceId, want)
			}
			if err := sc.Validate(); err != nil {
				t.Errorf("id %q, group %q: sarama refuses the configuration: %v", id, suffix, err)
			}
			seen[sc.Consumer.Group.InstanceId] = true
		}
		if id != "" && len(seen) != 3 {
			t.Errorf("id %q: instance ids %v are not distinct", id, seen)
		}
		if consumer.Consumer.Group.InstanceId != "" {
			t.Errorf("the shared configuration was changed: %q", consumer.Consumer.Group.InstanceId)
		}
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
		envMap(map[string]string{"FRAUD_CARD_HMAC_KEY_FILE": path, "FRAUD_RULES_PATH": "../../configs/rules.yaml"}), &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "super-secret") || !strings.Contains(out.String(), redacted) {
		t.Errorf("config log shows the secret or hides nothing: %s", out.String())
	}
}

// -check-config compiles the rules file too: a broken one fails it, naming the setting and the rule.
func TestCheckConfigChecksTheRules(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "rules.yaml")
	os.WriteFile(bad, []byte("rules:\n  - {id: big, description: big, expression: payment.amount > \"x\", action: flag}\n"), 0o644)
	var out strings.Builder
	err := run(t.Context(), []string{"-config", "../../configs/config.yaml", "-check-config"},
		envMap(map[string]string{"FRAUD_CARD_HMAC_KEY": "0123456789abcdef", "FRAUD_RULES_PATH": bad}), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "rules.path") || !strings.Contains(err.Error(), "rule big") {
		t.Errorf("err = %v, want one naming rules.path and rule big", err)
	}
}
