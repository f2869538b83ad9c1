package main

// The container image and the docker-compose demo are checked here against what the service
// reads (configs/config.yaml, the FRAUD_* variables): no Docker engine is needed, only the files.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/shopspring/decimal"
	"gopkg.in/yaml.v3"

	"github.com/paysentry/fraud-detector/internal/api"
)

// repoRoot is the repository, seen from this package's directory (where go test runs).
const repoRoot = "../.."

// exportedMetrics is the contract between the dashboard and the service: every metric the
// service exports, by name as Prometheus stores it. The dashboard may query only these; a test
// of the service checks that it exports them.
var exportedMetrics = map[string]string{
	"fraud_payments_consumed_total":     "counter",
	"fraud_decisions_total":             "counter", // outcome="flagged"|"review"|"allowed"|"clear"
	"fraud_flags_total":                 "counter", // reason
	"fraud_dead_letters_total":          "counter", // error
	"fraud_redis_errors_total":          "counter", // op
	"fraud_redis_retries_total":         "counter", // op
	"fraud_reviews_opened_total":        "counter",
	"fraud_labels_applied_total":        "counter",
	"fraud_state_losses_total":          "counter",
	"fraud_rule_hits_total":             "counter", // rule, mode
	"fraud_rule_errors_total":           "counter", // rule
	"fraud_rules_reloads_total":         "counter", // result
	"fraud_lists_age_seconds":           "gauge",
	"fraud_stage_duration_seconds":      "histogram",
	"fraud_decision_latency_seconds":    "histogram",
	"fraud_batch_size":                  "histogram",
	"fraud_degraded":                    "gauge",
	"fraud_consumer_lag":                "gauge",     // topic, partition
	"fraud_build_info":                  "gauge",     // version, model_version, rules_version
	"fraud_model_score":                 "histogram", // model="serving"|"shadow"
	"fraud_model_verdicts_total":        "counter",   // model, predicted, label
	"fraud_shadow_model_info":           "gauge",     // model_version; absent without a shadow model
	"fraud_shadow_model_failures_total": "counter",
}

// The services docker-compose.yml must define; the detector and the generator run the image.
const (
	svcKafka     = "kafka"
	svcKafkaInit = "kafka-init"
	svcRedis     = "redis"
	svcDetector  = "fraud-detector"
	svcPaygen    = "paygen"
	svcProm      = "prometheus"
	svcGrafana   = "grafana"
)

// composeDemoToken is the analyst token docs/deploy.md and docker-compose.yml give for the demo.
const composeDemoToken = "demo-analyst-token"

func loadComposeProject(t *testing.T) *types.Project {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	// No OS environment and no .env file: the result must not depend on who runs the test.
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithEnv(nil), cli.WithResolvedPaths(true))
	if err != nil {
		t.Fatal(err)
	}
	p, err := cli.ProjectFromOptions(context.Background(), opts)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load as a Compose file: %v (fix the file; `docker compose config` shows the same)", err)
	}
	return p
}

func composeService(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("docker-compose.yml: no service %q: the demo needs %s", name,
			strings.Join([]string{svcKafka, svcKafkaInit, svcRedis, svcDetector, svcPaygen, svcProm, svcGrafana}, ", "))
	}
	return s
}

// envOf is a service's environment as getenv sees it.
func composeEnv(s types.ServiceConfig) func(string) string {
	return func(k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
}

// effectiveConfig is what the service in docker-compose.yml runs with: configs/config.yaml (the
// image's /app/configs/config.yaml) under the service's environment.
func composeConfig(t *testing.T, s types.ServiceConfig) Config {
	t.Helper()
	cfg, err := loadConfig(filepath.Join(repoRoot, "configs/config.yaml"), true, composeEnv(s))
	if err != nil {
		t.Fatalf("docker-compose.yml: service %s: configs/config.yaml with its environment: %v (fix the variable)", s.Name, err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatalf("docker-compose.yml: service %s would refuse to start: %v (fix its environment)", s.Name, err)
	}
	return cfg
}

// settingNames are the names of every FRAUD_* variable the service reads, found the way
// loadConfig finds them.
func fraudSettingNames(t *testing.T) map[string]bool {
	t.Helper()
	cfg := defaultConfig()
	opts := env.Options{Prefix: envPrefix, FuncMap: map[reflect.Type]env.ParserFunc{
		reflect.TypeOf(decimal.Decimal{}): func(v string) (any, error) { return decimal.NewFromString(v) },
	}}
	params, err := env.GetFieldParamsWithOptions(&cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range params {
		names[p.Key] = true
	}
	if !names["FRAUD_KAFKA_BROKERS"] || !names["FRAUD_MODEL_ONNXRUNTIME_LIBRARY"] {
		t.Fatalf("the list of settings misses known ones: %v", names)
	}
	return names
}

func splitPort(t *testing.T, hostport, what string) (host string, port int) {
	t.Helper()
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("%s: %q is not host:port: %v", what, hostport, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: %q: port %q is not a number", what, hostport, p)
	}
	return h, n
}

// flagValues returns the values given to flag in args (-flag v or -flag=v), in order.
func flagValues(args []string, flag string) []string {
	var out []string
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			out = append(out, args[i+1])
		} else if v, ok := strings.CutPrefix(a, flag+"="); ok {
			out = append(out, v)
		}
	}
	return out
}

// commandWords splits a command into words as a shell would for the simple commands used here
// (no quoting).
func commandWords(cmd types.ShellCommand) []string {
	var out []string
	for _, c := range cmd {
		out = append(out, strings.Fields(c)...)
	}
	return out
}

func TestComposeImagesArePinned(t *testing.T) {
	p := loadComposeProject(t)
	for _, name := range []string{svcKafka, svcKafkaInit, svcRedis, svcDetector, svcPaygen, svcProm, svcGrafana} {
		composeService(t, p, name)
	}
	for name, s := range p.Services {
		img := s.Image
		if img == "" {
			t.Errorf("docker-compose.yml: service %s has no image: name one with a tag (for a built one, fraud-detector:dev)", name)
			continue
		}
		repo, tag, hasTag := strings.Cut(img[strings.LastIndex(img, "/")+1:], ":")
		switch {
		case strings.Contains(img, "@sha256:"):
		case !hasTag || tag == "":
			t.Errorf("docker-compose.yml: service %s: image %q has no tag: pin it (e.g. %s:<version>)", name, img, repo)
		case tag == "latest":
			t.Errorf("docker-compose.yml: service %s: image %q: pin a version instead of latest", name, img)
		}
	}
	for _, name := range []string{svcKafka, svcKafkaInit} {
		if img := p.Services[name].Image; !strings.HasPrefix(img, "apache/kafka:") {
			t.Errorf("docker-compose.yml: service %s: image %q: use the official apache/kafka image", name, img)
		}
	}
	if det, gen := p.Services[svcDetector], p.Services[svcPaygen]; det.Build == nil || det.Image != gen.Image {
		t.Errorf("docker-compose.yml: %s must be built from the Dockerfile (build: .) and %s must run the same image; images %q and %q",
			svcDetector, svcPaygen, det.Image, gen.Image)
	}
	// Bind mounts name files of this repository: a renamed file must not leave an empty mount.
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("docker-compose.yml: service %s mounts %s, which does not exist: fix the path", name, v.Source)
			}
		}
	}
}

func TestComposeSetsOnlyRealSettings(t *testing.T) {
	p := loadComposeProject(t)
	names := fraudSettingNames(t)
	for name, s := range p.Services {
		for k := range s.Environment {
			if strings.HasPrefix(k, envPrefix) && !names[k] {
				t.Errorf("docker-compose.yml: service %s sets %s, which no setting reads: fix the name "+
					"(FRAUD_ + the setting's path in configs/config.yaml, upper case, e.g. FRAUD_KAFKA_TOPICS_HIGH_RISK)", name, k)
			}
		}
	}
	for _, d := range dockerfile(t).all("ENV") {
		for _, kv := range d.envPairs() {
			if strings.HasPrefix(kv[0], envPrefix) && !names[kv[0]] {
				t.Errorf("Dockerfile: ENV %s is not a setting: fix the name (see configs/config.yaml)", kv[0])
			}
		}
	}
	// The demo token that docs/deploy.md gives opens the API.
	cfg := composeConfig(t, composeService(t, p, svcDetector))
	sum := sha256.Sum256([]byte(composeDemoToken))
	if !slices.ContainsFunc(cfg.API.Tokens, func(tk api.Token) bool { return strings.EqualFold(tk.SHA256, hex.EncodeToString(sum[:])) }) {
		t.Errorf("docker-compose.yml: FRAUD_API_TOKENS has no token whose sha256 is that of %q (printf %%s %s | sha256sum): "+
			"fix the hash or the token in docker-compose.yml and docs/deploy.md", composeDemoToken, composeDemoToken)
	}
	doc, err := os.ReadFile(filepath.Join(repoRoot, "docs/deploy.md"))
	if err != nil || !strings.Contains(string(doc), composeDemoToken) {
		t.Errorf("docs/deploy.md must give the demo token %q (%v)", composeDemoToken, err)
	}
}

func TestComposeAgreesWithConfig(t *testing.T) {
	p := loadComposeProject(t)
	det := composeService(t, p, svcDetector)
	cfg := composeConfig(t, det)

	t.Run("api port", func(t *testing.T) {
		_, port := splitPort(t, cfg.API.Listen, "api.listen")
		published := false
		for _, pc := range det.Ports {
			if int(pc.Target) == port && pc.Published != "" {
				published = true
			}
		}
		if !published {
			t.Errorf("docker-compose.yml: service %s publishes %v, but the API and /metrics listen on %d (api.listen %q): publish \"%d:%d\"",
				svcDetector, det.Ports, port, cfg.API.Listen, port, port)
		}
		var prom struct {
			ScrapeConfigs []struct {
				JobName       string `yaml:"job_name"`
				MetricsPath   string `yaml:"metrics_path"`
				StaticConfigs []struct {
					Targets []string `yaml:"targets"`
				} `yaml:"static_configs"`
			} `yaml:"scrape_configs"`
		}
		b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/prometheus/prometheus.yml"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &prom); err != nil {
			t.Fatalf("deploy/prometheus/prometheus.yml: %v", err)
		}
		want := net.JoinHostPort(svcDetector, strconv.Itoa(port))
		found := false
		for _, sc := range prom.ScrapeConfigs {
			for _, st := range sc.StaticConfigs {
				if slices.Contains(st.Targets, want) && (sc.MetricsPath == "" || sc.MetricsPath == "/metrics") {
					found = true
				}
			}
		}
		if !found {
			t.Errorf("deploy/prometheus/prometheus.yml: no scrape config targets %s at /metrics: set static_configs targets to [%q]", want, want)
		}
		if prom := composeService(t, p, svcProm); !slices.ContainsFunc(prom.Volumes, func(v types.ServiceVolumeConfig) bool {
			return strings.HasSuffix(v.Source, "deploy/prometheus/prometheus.yml") && v.Target == "/etc/prometheus/prometheus.yml"
		}) {
			t.Errorf("docker-compose.yml: service %s must mount ./deploy/prometheus/prometheus.yml at /etc/prometheus/prometheus.yml", svcProm)
		}
	})

	t.Run("topics", func(t *testing.T) {
		tp := cfg.Kafka.Topics
		want := []string{tp.Payments, tp.HighRisk, tp.DLQ, tp.Labels}
		init := composeService(t, p, svcKafkaInit)
		args := commandWords(append(slices.Clone(init.Entrypoint), init.Command...))
		got := flagValues(args, "--topic")
		if !slices.Contains(args, "--if-not-exists") {
			t.Errorf("docker-compose.yml: service %s must create topics with --if-not-exists (it runs again on every up)", svcKafkaInit)
		}
		if n := len(flagValues(args, "--partitions")); n != len(got) {
			t.Errorf("docker-compose.yml: service %s: give every --topic its --partitions (%d topics, %d --partitions)", svcKafkaInit, len(got), n)
		}
		if !sameSet(got, want) {
			t.Errorf("docker-compose.yml: service %s creates topics %v, the service uses %v (kafka.topics in configs/config.yaml and FRAUD_KAFKA_TOPICS_*): make the --topic arguments equal",
				svcKafkaInit, got, want)
		}
		if dep, ok := init.DependsOn[svcKafka]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("docker-compose.yml: service %s must depend on %s with condition service_healthy", svcKafkaInit, svcKafka)
		}
		for _, name := range []string{svcDetector, svcPaygen} {
			if dep, ok := p.Services[name].DependsOn[svcKafkaInit]; !ok || dep.Condition != types.ServiceConditionCompletedSuccessfully {
				t.Errorf("docker-compose.yml: service %s must depend on %s with condition service_completed_successfully (auto-creation is off)", name, svcKafkaInit)
			}
		}
		gen := composeService(t, p, svcPaygen)
		genArgs := commandWords(append(slices.Clone(gen.Entrypoint), gen.Command...))
		if len(genArgs) == 0 || path.Base(genArgs[0]) != "paygen" {
			t.Errorf("docker-compose.yml: service %s must run /usr/local/bin/paygen (entrypoint), runs %v", svcPaygen, genArgs)
		}
		topic := "payments" // paygen's default
		if ts := flagValues(genArgs, "-topic"); len(ts) > 0 {
			topic = ts[len(ts)-1]
		}
		if topic != tp.Payments {
			t.Errorf("docker-compose.yml: service %s writes to topic %q, the service reads %q: set -topic %s", svcPaygen, topic, tp.Payments, tp.Payments)
		}
	})

	t.Run("brokers", func(t *testing.T) {
		k := composeService(t, p, svcKafka)
		adv := composeEnv(k)("KAFKA_ADVERTISED_LISTENERS")
		var advertised []string
		for _, l := range strings.Split(adv, ",") {
			if _, hp, ok := strings.Cut(strings.TrimSpace(l), "://"); ok {
				advertised = append(advertised, hp)
			}
		}
		for _, b := range cfg.Kafka.Brokers {
			if !slices.Contains(advertised, b) {
				t.Errorf("docker-compose.yml: FRAUD_KAFKA_BROKERS names %s, but service %s advertises %q (KAFKA_ADVERTISED_LISTENERS): make them agree", b, svcKafka, adv)
			}
			if h, _ := splitPort(t, b, "kafka.brokers"); h != svcKafka && h != k.Hostname {
				t.Errorf("docker-compose.yml: FRAUD_KAFKA_BROKERS names host %s, not the service %s", h, svcKafka)
			}
		}
		gen := p.Services[svcPaygen]
		genBrokers := flagValues(commandWords(append(slices.Clone(gen.Entrypoint), gen.Command...)), "-brokers")
		if len(genBrokers) == 0 || !sameSet(strings.Split(genBrokers[len(genBrokers)-1], ","), cfg.Kafka.Brokers) {
			t.Errorf("docker-compose.yml: service %s -brokers %v, the service uses %v: make them equal", svcPaygen, genBrokers, cfg.Kafka.Brokers)
		}
		if mb, err := strconv.Atoi(composeEnv(k)("KAFKA_MESSAGE_MAX_BYTES")); err != nil || mb < cfg.Kafka.MaxMessageBytes {
			t.Errorf("docker-compose.yml: service %s KAFKA_MESSAGE_MAX_BYTES=%q must be at least kafka.max_message_bytes (%d), or the broker refuses large dead letters",
				svcKafka, composeEnv(k)("KAFKA_MESSAGE_MAX_BYTES"), cfg.Kafka.MaxMessageBytes)
		}
		if v := composeEnv(k)("KAFKA_AUTO_CREATE_TOPICS_ENABLE"); v != "false" {
			t.Errorf("docker-compose.yml: service %s KAFKA_AUTO_CREATE_TOPICS_ENABLE=%q: set \"false\" (kafka-init creates the topics)", svcKafka, v)
		}
	})

	t.Run("redis", func(t *testing.T) {
		r := composeService(t, p, svcRedis)
		args := commandWords(append(slices.Clone(r.Entrypoint), r.Command...))
		if aof := flagValues(args, "--appendonly"); len(aof) == 0 || aof[len(aof)-1] != "yes" {
			t.Errorf("docker-compose.yml: service %s runs %v: add --appendonly yes, or a restart forgets windows, dedupe markers and reviews", svcRedis, args)
		}
		port := 6379
		if ps := flagValues(args, "--port"); len(ps) > 0 {
			port, _ = strconv.Atoi(ps[len(ps)-1])
		}
		for _, a := range cfg.Redis.Addrs {
			if h, n := splitPort(t, a, "redis.addrs"); (h != svcRedis && h != r.Hostname) || n != port {
				t.Errorf("docker-compose.yml: FRAUD_REDIS_ADDRS names %s, but Redis is %s:%d: set FRAUD_REDIS_ADDRS=%s:%d", a, svcRedis, port, svcRedis, port)
			}
		}
		// The same memory layout as the development stack, whose figures the README reports.
		stack, err := os.ReadFile(filepath.Join(repoRoot, "scripts/stack.sh"))
		if err != nil {
			t.Fatal(err)
		}
		if m := regexp.MustCompile(`--hash-max-listpack-value\s+(\d+)`).FindSubmatch(stack); m != nil {
			if got := flagValues(args, "--hash-max-listpack-value"); len(got) == 0 || got[len(got)-1] != string(m[1]) {
				t.Errorf("docker-compose.yml: service %s --hash-max-listpack-value %v, scripts/stack.sh uses %s: make them equal", svcRedis, got, m[1])
			}
		}
		if dep, ok := det.DependsOn[svcRedis]; !ok || dep.Condition != types.ServiceConditionHealthy {
			t.Errorf("docker-compose.yml: service %s must depend on %s with condition service_healthy", svcDetector, svcRedis)
		}
	})
}

// The dashboard queries only metrics the service exports, through the provisioned data source.
func TestComposeDashboardMetrics(t *testing.T) {
	var ds struct {
		Datasources []struct {
			Name, UID, Type, URL string
		} `yaml:"datasources"`
	}
	readRepoYAML(t, "deploy/grafana/provisioning/datasources/prometheus.yml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].UID == "" {
		t.Fatalf("deploy/grafana/provisioning/datasources/prometheus.yml: want one prometheus data source with a uid, got %+v", ds.Datasources)
	}
	uid := ds.Datasources[0].UID
	if want := "http://" + svcProm + ":9090"; ds.Datasources[0].URL != want {
		t.Errorf("deploy/grafana/provisioning/datasources/prometheus.yml: url %q: set %q (the prometheus service)", ds.Datasources[0].URL, want)
	}

	const file = "deploy/grafana/dashboards/fraud-detector.json"
	b, err := os.ReadFile(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID           string      `json:"uid"`
		Title         string      `json:"title"`
		SchemaVersion int         `json:"schemaVersion"`
		Panels        []dashPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s is not JSON: %v (fix it, or export it again from Grafana)", file, err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion < 36 {
		t.Errorf("%s: want a uid, a title and schemaVersion >= 36 (a current Grafana dashboard), got %q %q %d", file, dash.UID, dash.Title, dash.SchemaVersion)
	}
	used := map[string]bool{}
	var walk func([]dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", file, p.Title)
			}
			for _, d := range append([]*dashDatasource{p.Datasource}, dashTargetDatasources(p.Targets)...) {
				if d != nil && d.UID != uid {
					t.Errorf("%s: panel %q uses data source uid %q; the provisioned one is %q: set it", file, p.Title, d.UID, uid)
				}
			}
			for _, tg := range p.Targets {
				names := promqlMetrics(tg.Expr)
				if len(names) == 0 {
					t.Errorf("%s: panel %q query %q names no metric", file, p.Title, tg.Expr)
				}
				for _, n := range names {
					used[n] = true
					if !exportedMetric(n) {
						t.Errorf("%s: panel %q queries %s, which the service does not export: use one of exportedMetrics in cmd/fraud-detector/compose_test.go "+
							"(or export it and add it there)", file, p.Title, n)
					}
				}
			}
		}
	}
	walk(dash.Panels)
	for name := range exportedMetrics {
		if !used[name] && !used[name+"_bucket"] {
			t.Errorf("%s: no panel shows %s: add one", file, name)
		}
	}

	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readRepoYAML(t, "deploy/grafana/provisioning/dashboards/fraud-detector.yml", &prov)
	g := composeService(t, loadComposeProject(t), svcGrafana)
	for _, pr := range prov.Providers {
		if !slices.ContainsFunc(g.Volumes, func(v types.ServiceVolumeConfig) bool {
			return v.Target == pr.Options.Path && strings.HasSuffix(v.Source, filepath.Dir(file))
		}) {
			t.Errorf("docker-compose.yml: service %s must mount ./%s at %s, where deploy/grafana/provisioning/dashboards/fraud-detector.yml reads dashboards",
				svcGrafana, filepath.Dir(file), pr.Options.Path)
		}
	}
	if len(prov.Providers) == 0 {
		t.Errorf("deploy/grafana/provisioning/dashboards/fraud-detector.yml: no dashboard provider")
	}
}

type dashDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashPanel struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource *dashDatasource `json:"datasource"`
	Targets    []dashTarget    `json:"targets"`
	Panels     []dashPanel     `json:"panels"` // a collapsed row's
}

type dashTarget struct {
	Expr       string          `json:"expr"`
	Datasource *dashDatasource `json:"datasource"`
}

func dashTargetDatasources(ts []dashTarget) []*dashDatasource {
	var out []*dashDatasource
	for _, t := range ts {
		out = append(out, t.Datasource)
	}
	return out
}

func exportedMetric(name string) bool {
	if _, ok := exportedMetrics[name]; ok {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && exportedMetrics[base] == "histogram" {
			return true
		}
	}
	return false
}

var (
	promqlStrings  = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	promqlBraces   = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promqlGrouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlVars     = regexp.MustCompile(`\$\{?\w+\}?`)
	promqlNumbers  = regexp.MustCompile(`\b[0-9][0-9A-Za-z_.]*`)
	promqlIdent    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?`)
	promqlKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true}
)

// promqlMetrics returns the metric names a PromQL expression selects: identifiers that are not
// functions, keywords, label names in matchers or groupings, numbers, durations or strings.
func promqlMetrics(expr string) []string {
	e := promqlStrings.ReplaceAllString(expr, `""`)
	e = promqlVars.ReplaceAllString(e, " ")
	e = promqlBraces.ReplaceAllString(e, " ")
	e = promqlGrouping.ReplaceAllString(e, " ")
	e = promqlNumbers.ReplaceAllString(e, " ")
	var out []string
	for _, m := range promqlIdent.FindAllStringSubmatch(e, -1) {
		if m[1] != "" || promqlKeywords[m[0]] { // a function call, or a keyword
			continue
		}
		out = append(out, m[0])
	}
	return out
}

func TestComposePromQLMetricNames(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (reason) (rate(fraud_flags_total[1m]))`:                                                {"fraud_flags_total"},
		`histogram_quantile(0.99, sum by (stage, le) (rate(fraud_stage_duration_seconds_bucket[5m])))`: {"fraud_stage_duration_seconds_bucket"},
		`fraud_build_info{version=~"v1.*"} * on (instance) group_left (x) up`:                          {"fraud_build_info", "up"},
		`rate(process_cpu_seconds_total{job="a"}[$__rate_interval]) > bool 1e3`:                        {"process_cpu_seconds_total"},
	} {
		if got := promqlMetrics(expr); !slices.Equal(got, want) {
			t.Errorf("promqlMetrics(%q) = %v, want %v", expr, got, want)
		}
	}
}

// dockerInstr is one instruction of the Dockerfile.
type dockerInstr struct {
	cmd   string // upper case
	args  string
	stage int // index of the FROM it belongs to
}

type dockerFile []dockerInstr

func (d dockerFile) all(cmd string) dockerFile {
	var out dockerFile
	for _, in := range d {
		if in.cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// envPairs reads ENV k=v k2=v2 (and the old ENV k v).
func (in dockerInstr) envPairs() [][2]string {
	f := strings.Fields(in.args)
	if len(f) >= 2 && !strings.Contains(f[0], "=") {
		return [][2]string{{f[0], strings.Join(f[1:], " ")}}
	}
	var out [][2]string
	for _, kv := range f {
		k, v, _ := strings.Cut(kv, "=")
		out = append(out, [2]string{k, strings.Trim(v, `"`)})
	}
	return out
}

func dockerfile(t *testing.T) dockerFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	var out dockerFile
	stage, cur := -1, ""
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur == "" && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if c, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur += c + " "
			continue
		}
		cur += trimmed
		cmd, args, _ := strings.Cut(cur, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, dockerInstr{cmd: cmd, args: strings.TrimSpace(args), stage: stage})
		cur = ""
	}
	return out
}

func TestComposeDockerfile(t *testing.T) {
	d := dockerfile(t)
	froms := d.all("FROM")
	if len(froms) < 3 {
		t.Fatalf("Dockerfile: want stages for ONNX Runtime, the Go build and the runtime, got %d FROM", len(froms))
	}
	final := froms[len(froms)-1].stage
	var goImage, ortStage string
	for _, f := range froms {
		fs := strings.Fields(f.args)
		if strings.HasPrefix(fs[0], "golang:") {
			goImage = fs[0]
		}
		for _, r := range d {
			if r.stage == f.stage && r.cmd == "RUN" && strings.Contains(r.args, "scripts/onnxruntime.sh") && len(fs) == 3 {
				ortStage = fs[2]
			}
		}
	}

	// Go: the image's version is go.mod's.
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("go.mod has no go line")
	}
	if tag, _ := strings.CutPrefix(goImage, "golang:"); !strings.HasPrefix(tag, string(m[1])+"-") && tag != string(m[1]) && !strings.HasPrefix(tag, string(m[1])+".") {
		t.Errorf("Dockerfile: the build stage is %q, go.mod says go %s: use FROM golang:%s-bookworm", goImage, m[1], m[1])
	}

	// ONNX Runtime: the script's file, copied from its stage to the path the service is given.
	script, err := os.ReadFile(filepath.Join(repoRoot, "scripts/onnxruntime.sh"))
	if err != nil {
		t.Fatal(err)
	}
	v := regexp.MustCompile(`(?m)^version=([0-9.]+)`).FindSubmatch(script)
	if v == nil {
		t.Fatal("scripts/onnxruntime.sh: no version=… line")
	}
	libName := "libonnxruntime.so." + string(v[1])
	if ortStage == "" {
		t.Errorf("Dockerfile: no named stage runs scripts/onnxruntime.sh: add one (FROM node:22-bookworm-slim AS onnxruntime)")
	}
	var libEnv string
	for _, e := range d.all("ENV") {
		for _, kv := range e.envPairs() {
			if kv[0] == "FRAUD_MODEL_ONNXRUNTIME_LIBRARY" && e.stage == final {
				libEnv = kv[1]
			}
		}
	}
	if path.Base(libEnv) != libName {
		t.Errorf("Dockerfile: the final stage sets FRAUD_MODEL_ONNXRUNTIME_LIBRARY=%q; scripts/onnxruntime.sh fetches %s: set ENV FRAUD_MODEL_ONNXRUNTIME_LIBRARY=/usr/local/lib/onnxruntime/%s",
			libEnv, libName, libName)
	}
	copied := map[string]string{} // destination in the final image → source
	workdir := "/"
	for _, in := range d {
		if in.stage != final {
			continue
		}
		switch in.cmd {
		case "WORKDIR":
			workdir = path.Join(workdir, in.args)
		case "COPY":
			f := strings.Fields(in.args)
			from := ""
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				if s, ok := strings.CutPrefix(f[0], "--from="); ok {
					from = s
				}
				f = f[1:]
			}
			if len(f) < 2 {
				continue
			}
			dst := f[len(f)-1]
			for _, src := range f[:len(f)-1] {
				to := dst
				if strings.HasSuffix(dst, "/") || len(f) > 2 {
					to = path.Join(dst, path.Base(src))
				}
				copied[path.Join(workdir, to)] = from + ":" + src
			}
		}
	}
	src, ok := copied[libEnv]
	from, file, _ := strings.Cut(src, ":")
	switch {
	case !ok:
		t.Errorf("Dockerfile: FRAUD_MODEL_ONNXRUNTIME_LIBRARY=%s, but the final stage copies nothing there: COPY --from=%s <the script's %s> %s",
			libEnv, ortStage, libName, libEnv)
	case from != ortStage || path.Base(file) != libName:
		t.Errorf("Dockerfile: the final stage copies %q to %s; scripts/onnxruntime.sh writes %s in stage %s: COPY --from=%s that file",
			src, libEnv, libName, ortStage, ortStage)
	}

	// The working directory holds the configuration and the model where the service looks.
	cfg, err := loadConfig(filepath.Join(repoRoot, defaultConfigPath), true, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{defaultConfigPath, cfg.Model.Path} {
		if _, ok := copied[path.Join(workdir, f)]; !ok {
			t.Errorf("Dockerfile: the service reads %s from its working directory %s, but nothing is copied to %s: COPY it",
				f, workdir, path.Join(workdir, f))
		}
	}
	for _, bin := range []string{"/usr/local/bin/fraud-detector", "/usr/local/bin/paygen"} {
		if _, ok := copied[bin]; !ok {
			t.Errorf("Dockerfile: the final stage does not copy %s", bin)
		}
	}

	// The port the image exposes is the API's.
	_, port := splitPort(t, cfg.API.Listen, "api.listen")
	if ex := d.all("EXPOSE"); len(ex) == 0 || strings.TrimSuffix(ex[len(ex)-1].args, "/tcp") != strconv.Itoa(port) {
		t.Errorf("Dockerfile: EXPOSE %v, api.listen is %q: EXPOSE %d", ex, cfg.API.Listen, port)
	}
	var user string
	for _, u := range d.all("USER") {
		if u.stage == final {
			user = u.args
		}
	}
	if name, _, _ := strings.Cut(user, ":"); name == "" || name == "root" || name == "0" {
		t.Errorf("Dockerfile: the final stage runs as %q: set USER nonroot:nonroot", user)
	}
	if ep := d.all("ENTRYPOINT"); len(ep) == 0 || !strings.Contains(ep[len(ep)-1].args, "/usr/local/bin/fraud-detector") {
		t.Errorf("Dockerfile: ENTRYPOINT must be [\"/usr/local/bin/fraud-detector\"]")
	}
}

func readRepoYAML(t *testing.T, file string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, file))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
