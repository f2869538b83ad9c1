// Package e2e starts the built fraud-detector binary against the real local stack (Kafka and Redis
// from scripts/stack.sh), feeds it payments with kcat, an independent Kafka client, and asserts on
// what lands in the topics and in the group's committed offsets.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
)

var (
	brokers   = envOr("FD_E2E_BROKERS", "127.0.0.1:9092")
	redisAddr = envOr("FD_E2E_REDIS", "127.0.0.1:6379")
	// ortLibrary is ONNX Runtime for the model's tests (scripts/onnxruntime.sh fetches it).
	ortLibrary = envOr("FD_ORT_LIBRARY", "")
	binPath    string // the service, built once by TestMain
)

const hmacKey = "e2e-card-key-0123456789"

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if _, err := exec.LookPath("kcat"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: kcat is not installed: run scripts/stack.sh up (it installs kcat and starts Kafka and Redis)")
		return 1
	}
	cfg := sarama.NewConfig()
	cfg.Metadata.Retry.Max = 2
	client, err := sarama.NewClient([]string{brokers}, cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: Kafka is not reachable at %s (%v): start the stack with scripts/stack.sh up, or set FD_E2E_BROKERS\n", brokers, err)
		return 1
	}
	client.Close()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	err = rdb.Ping(context.Background()).Err()
	rdb.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: Redis is not reachable at %s (%v): start the stack with scripts/stack.sh up, or set FD_E2E_REDIS\n", redisAddr, err)
		return 1
	}
	if ortLibrary == "" {
		if abs, err := filepath.Abs("../.cache/onnxruntime/libonnxruntime.so.1.24.1"); err == nil {
			ortLibrary = abs
		}
	}
	if _, err := os.Stat(ortLibrary); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: ONNX Runtime is not at %s (%v): fetch it with scripts/onnxruntime.sh, or set FD_ORT_LIBRARY\n", ortLibrary, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "fd-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binPath = filepath.Join(dir, "fraud-detector")
	build := exec.Command("go", "build", "-o", binPath, "../cmd/fraud-detector")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build the service:", err)
		return 1
	}
	code := m.Run()
	if leaks := scanServiceLogs(); len(leaks) > 0 {
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "e2e:", l)
		}
		return 1
	}
	return code
}

// Every service log of the run, and every card number and secret the tests sent: once the tests
// are done, no log line may hold any of them.
var (
	sentMu      sync.Mutex
	serviceLogs []*syncBuffer
	sentPANs    = map[string]bool{}
	secrets     = map[string]string{hmacKey: "the card HMAC key"}
	panField    = regexp.MustCompile(`"card_number"\s*:\s*"(\d{12,19})"`)
)

// recordPANs notes the card numbers in records the tests send.
func recordPANs(b []byte) {
	sentMu.Lock()
	defer sentMu.Unlock()
	for _, m := range panField.FindAllSubmatch(b, -1) {
		sentPANs[string(m[1])] = true
	}
}

// recordSecret notes a secret a test gave the service (a password, a token), by what it is.
func recordSecret(secret, what string) {
	sentMu.Lock()
	defer sentMu.Unlock()
	secrets[secret] = what
}

// scanServiceLogs reports every card number and secret found in a service's log, masked.
func scanServiceLogs() []string {
	sentMu.Lock()
	defer sentMu.Unlock()
	var leaks []string
	for i, l := range serviceLogs {
		text := l.String()
		for pan := range sentPANs {
			if strings.Contains(text, pan) {
				leaks = append(leaks, fmt.Sprintf("service log %d holds the card number %s…%s in clear", i, pan[:6], pan[len(pan)-4:]))
			}
		}
		for secret, what := range secrets {
			if strings.Contains(text, secret) {
				leaks = append(leaks, fmt.Sprintf("service log %d holds %s", i, what))
			}
		}
	}
	return leaks
}

// topics are one test's own topics and group, so that tests neither see each other's records nor
// depend on what earlier runs left in the stack.
type topics struct {
	payments, highRisk, dlq, labels, group string
	partitions                             int32
}

func newTopics(t *testing.T, partitions int32) topics {
	t.Helper()
	suffix := fmt.Sprintf("%s-%d-%04d", strings.ToLower(t.Name()), time.Now().Unix(), rand.IntN(10000))
	suffix = strings.NewReplacer("/", "-", "_", "-").Replace(suffix)
	tp := topics{
		payments: "payments-" + suffix, highRisk: "high-risk-" + suffix, dlq: "dlq-" + suffix, labels: "labels-" + suffix,
		group: "fd-" + suffix, partitions: partitions,
	}
	admin := newAdmin(t)
	for name, n := range map[string]int32{tp.payments: partitions, tp.highRisk: 3, tp.dlq: 1, tp.labels: 1} {
		err := admin.CreateTopic(name, &sarama.TopicDetail{NumPartitions: n, ReplicationFactor: 1,
			ConfigEntries: map[string]*string{"max.message.bytes": ptr("2097152")}}, false)
		if err != nil {
			t.Fatalf("create topic %s: %v", name, err)
		}
	}
	t.Cleanup(func() {
		for _, name := range []string{tp.payments, tp.highRisk, tp.dlq, tp.labels} {
			admin.DeleteTopic(name)
		}
		// The test's card state (the service's key prefix is the group): it would live 31 days.
		rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
		defer rdb.Close()
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, tp.group+":*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Unlink(ctx, iter.Val())
		}
	})
	return tp
}

func ptr[T any](v T) *T { return &v }

func newAdmin(t *testing.T) sarama.ClusterAdmin {
	t.Helper()
	admin, err := sarama.NewClusterAdminFromClient(newClient(t))
	if err != nil {
		t.Fatalf("kafka admin: %v", err)
	}
	return admin
}

func newClient(t *testing.T) sarama.Client {
	t.Helper()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	client, err := sarama.NewClient([]string{brokers}, cfg)
	if err != nil {
		t.Fatalf("kafka client at %s: %v (start the stack with scripts/stack.sh up)", brokers, err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// service is a running fraud-detector process.
type service struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{}
	err  error
}

func (tp topics) env() []string {
	return []string{
		"FRAUD_KAFKA_BROKERS=" + brokers,
		"FRAUD_KAFKA_GROUP=" + tp.group,
		"FRAUD_KAFKA_TOPICS_PAYMENTS=" + tp.payments,
		"FRAUD_KAFKA_TOPICS_HIGH_RISK=" + tp.highRisk,
		"FRAUD_KAFKA_TOPICS_DLQ=" + tp.dlq,
		"FRAUD_KAFKA_TOPICS_LABELS=" + tp.labels,
		"FRAUD_CARD_HMAC_KEY=" + hmacKey,
		"FRAUD_REDIS_ADDRS=" + redisAddr,
		"FRAUD_WINDOW_KEY_PREFIX=" + tp.group, // each test's windows apart from the others'
		"FRAUD_REVIEW_KEY_PREFIX=" + tp.group, // and its reviews
		"FRAUD_LISTS_KEY_PREFIX=" + tp.group,  // and its lists
		"FRAUD_API_LISTEN=127.0.0.1:0",        // a port of its own; a test that calls the API sets one
		"FRAUD_MODEL_PATH=none",               // the rules and windows alone, unless a test says otherwise
		"FRAUD_MODEL_ONNXRUNTIME_LIBRARY=" + ortLibrary,
	}
}

// rulesEnv writes the shipped rules file with each old string of oldNew replaced by the new one
// after it, and returns the setting that makes a service use it. Each old string must be there.
func rulesEnv(t *testing.T, oldNew ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, shippedRules(t, "", oldNew...), 0o644); err != nil {
		t.Fatal(err)
	}
	return "FRAUD_RULES_PATH=" + path
}

// shippedRules is configs/rules.yaml with each old string of oldNew replaced by the new one after
// it, and extra appended (more rules: the file ends in its rules list).
func shippedRules(t *testing.T, extra string, oldNew ...string) []byte {
	t.Helper()
	b, err := os.ReadFile("../configs/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("configs/rules.yaml has no %q", oldNew[i])
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return []byte(s + extra)
}

func startService(t *testing.T, tp topics, extra ...string) *service {
	t.Helper()
	cmd := exec.Command(binPath, "-config", "configs/config.yaml")
	cmd.Dir = ".." // the repository: the configuration's paths are relative to it
	cmd.Env = append(append(os.Environ(), tp.env()...), extra...)
	cmd.SysProcAttr = dieWithTest()
	s := &service{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	sentMu.Lock()
	serviceLogs = append(serviceLogs, s.logs)
	sentMu.Unlock()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start service: %v", err)
	}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			cmd.Process.Kill()
			<-s.done
		}
		if t.Failed() {
			full := filepath.Join(os.TempDir(), fmt.Sprintf("fd-e2e-%s-%d.log", strings.ReplaceAll(t.Name(), "/", "-"), cmd.Process.Pid))
			os.WriteFile(full, []byte(s.logs.String()), 0o644)
			t.Logf("service log (last 4 KiB; all of it in %s):\n%s", full, s.logs.tail(4096))
		}
	})
	return s
}

// dieWithTest makes a child process die with the test binary, so that a test that times out or
// panics (and so runs no cleanup) leaves no service behind.
func dieWithTest() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

func (s *service) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and requires a clean exit within 30 s.
func (s *service) stop(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("service did not stop within 30 s of SIGTERM")
	}
	if s.err != nil {
		t.Fatalf("service exited with %v", s.err)
	}
}

func (s *service) kill(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func (b *syncBuffer) tail(n int) string {
	s := b.String()
	return s[max(0, len(s)-n):]
}

// kcatProduce writes KEY<TAB>VALUE lines to topic with kcat. nullValue lines (a key and a tab
// only) become records with a null value when null is set, with an empty value otherwise.
func kcatProduce(t *testing.T, topic string, lines []string, null bool) {
	t.Helper()
	args := []string{"-P", "-b", brokers, "-t", topic, "-K", "\t", "-X", "message.max.bytes=2097152"}
	if null {
		args = append(args, "-Z")
	}
	cmd := exec.Command("kcat", args...)
	in := strings.Join(lines, "\n") + "\n"
	recordPANs([]byte(in))
	cmd.Stdin = strings.NewReader(in)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat produce to %s: %v\n%s", topic, err, out)
	}
}

// kcatProduceFiles writes each file as one record, without a key.
func kcatProduceFiles(t *testing.T, topic string, files ...string) {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		recordPANs(b)
	}
	args := append([]string{"-P", "-b", brokers, "-t", topic, "-X", "message.max.bytes=2097152"}, files...)
	if out, err := exec.Command("kcat", args...).CombinedOutput(); err != nil {
		t.Fatalf("kcat produce files to %s: %v\n%s", topic, err, out)
	}
}

// kcatPipe starts kcat reading KEY<TAB>VALUE lines from the returned writer.
func kcatPipe(t *testing.T, topic string) (*bufio.Writer, func()) {
	t.Helper()
	cmd := exec.Command("kcat", "-P", "-b", brokers, "-t", topic, "-K", "\t")
	cmd.SysProcAttr = dieWithTest()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rec := &panRecorder{}
	w := bufio.NewWriterSize(io.MultiWriter(stdin, rec), 1<<16)
	return w, func() {
		t.Helper()
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
		recordPANs(rec.rest)
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("kcat: %v\n%s", err, out.String())
		}
	}
}

// panRecorder records the card numbers of what is written, a line at a time.
type panRecorder struct{ rest []byte }

func (r *panRecorder) Write(p []byte) (int, error) {
	r.rest = append(r.rest, p...)
	if i := bytes.LastIndexByte(r.rest, '\n'); i >= 0 {
		recordPANs(r.rest[:i])
		r.rest = append(r.rest[:0], r.rest[i+1:]...)
	}
	return len(p), nil
}

// readAll returns every record of topic up to its end offsets at the time of the call.
func readAll(t *testing.T, client sarama.Client, topic string) []*sarama.ConsumerMessage {
	t.Helper()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatalf("partitions of %s: %v", topic, err)
	}
	var all []*sarama.ConsumerMessage
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(topic, p, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		timeout := time.After(60 * time.Second)
		for done := false; !done; {
			select {
			case m := <-pc.Messages():
				all = append(all, m)
				done = m.Offset >= end-1
			case err := <-pc.Errors():
				t.Fatalf("read %s/%d: %v", topic, p, err)
			case <-timeout:
				t.Fatalf("read %s/%d: timed out before offset %d", topic, p, end)
			}
		}
		pc.Close()
	}
	return all
}

// lag is the sum over the partitions of topic of the log-end offset minus the group's committed
// offset.
func lag(t *testing.T, client sarama.Client, admin sarama.ClusterAdmin, group, topic string) (lag, end int64) {
	t.Helper()
	parts, err := client.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.RefreshMetadata(topic); err != nil {
		t.Fatal(err)
	}
	return partitionLag(t, client, admin, group, topic, parts)
}

// partitionLag is lag over some partitions of topic.
func partitionLag(t *testing.T, client sarama.Client, admin sarama.ClusterAdmin, group, topic string, parts []int32) (lag, end int64) {
	t.Helper()
	res, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: parts})
	if err != nil {
		t.Fatalf("committed offsets of %s: %v", group, err)
	}
	for _, p := range parts {
		e, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			t.Fatal(err)
		}
		c := int64(0)
		if b := res.GetBlock(topic, p); b != nil && b.Offset >= 0 {
			c = b.Offset
		}
		end += e
		lag += e - c
	}
	return lag, end
}

// waitCaughtUp waits until the group's committed offsets equal the log-end offsets of topic.
func waitCaughtUp(t *testing.T, s *service, tp topics, within time.Duration) {
	t.Helper()
	client, admin := newClient(t), newAdmin(t)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		l, end := lag(t, client, admin, tp.group, tp.payments)
		if l == 0 && end > 0 {
			return
		}
		if !s.running() {
			t.Fatalf("service exited (%v) with lag %d", s.err, l)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s did not catch up within %s: lag %d of %d", tp.group, within, l, end)
		case <-tick.C:
		}
	}
}

func header(m *sarama.ConsumerMessage, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

// postJSON posts a JSON body to url with a bearer token and returns the status and the body.
func postJSON(t *testing.T, url, token, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// postVerdict records an analyst's verdict on a payment's review (base: the API's /v1), once the
// review is open.
func postVerdict(t *testing.T, s *service, base, token, id, label string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := postJSON(t, base+"/reviews/"+id+"/verdict", token, `{"label":"`+label+`","note":"decided in e2e"}`)
		switch {
		case code == http.StatusOK:
			return
		case code != http.StatusNotFound:
			t.Fatalf("verdict on %s: %d %s", id, code, body)
		case time.Now().After(deadline) || !s.running():
			t.Fatalf("no review of %s to decide after 60 s", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
