package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// saslBrokers is the broker's SASL_PLAINTEXT listener, which scripts/stack.sh starts on
// KAFKA_SASL_PORT (9094) beside the plaintext one that kcat and the other tests use.
var saslBrokers = envOr("FD_E2E_SASL_BROKERS", "127.0.0.1:9094")

// The test-only user that scripts/stack.sh gives the SASL listener: SCRAM credentials created
// with Kafka's ConfigCommand, PLAIN in the listener's JAAS configuration.
const (
	saslUser     = "fraud-e2e"
	saslPassword = "fraud-e2e-test-only-Zq7w"
)

// requireSASLListener fails the test, saying why and what to do, unless the SASL listener
// answers and accepts the test user with mechanism, as seen by kcat, a client independent of the
// service.
func requireSASLListener(t *testing.T, mechanism string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", saslBrokers, 2*time.Second)
	if err != nil {
		t.Fatalf("no SASL listener at %s (%v). scripts/stack.sh up starts Kafka with a SASL_PLAINTEXT listener on "+
			"KAFKA_SASL_PORT (default 9094), but it reuses a broker that already answers on KAFKA_PORT, and a broker "+
			"started before the listener was added to stack.sh (or not by stack.sh) has none: restart it with "+
			"scripts/stack.sh down && scripts/stack.sh up, or set FD_E2E_SASL_BROKERS to a SASL_PLAINTEXT listener "+
			"that knows user %s", saslBrokers, err, saslUser)
	}
	conn.Close()
	out, err := exec.Command("kcat", "-L", "-m", "10", "-b", saslBrokers,
		"-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms="+mechanism,
		"-X", "sasl.username="+saslUser, "-X", "sasl.password="+saslPassword).CombinedOutput()
	if err != nil {
		t.Fatalf("the SASL listener at %s does not let user %s in with %s (kcat: %v): scripts/stack.sh up creates "+
			"the user (SCRAM with Kafka's ConfigCommand, PLAIN in the listener's JAAS line): run it again\n%s",
			saslBrokers, saslUser, mechanism, err, out)
	}
}

// saslEnv points the service at the SASL listener with mechanism and password.
func saslEnv(mechanism, password string) []string {
	return []string{
		"FRAUD_KAFKA_BROKERS=" + saslBrokers,
		"FRAUD_KAFKA_SASL_MECHANISM=" + mechanism,
		"FRAUD_KAFKA_SASL_USERNAME=" + saslUser,
		"FRAUD_KAFKA_SASL_PASSWORD=" + password,
	}
}

// The service reads, decides, writes and commits through the SASL listener with each mechanism;
// the payments go in and the decisions come out through the plaintext one.
func TestSASLServiceAuthenticates(t *testing.T) {
	recordSecret(saslPassword, "the SASL password")
	for _, mechanism := range []string{"SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"} {
		t.Run(mechanism, func(t *testing.T) {
			requireSASLListener(t, mechanism)
			tp := newTopics(t, 3)
			svc := startService(t, tp, saslEnv(mechanism, saslPassword)...)

			ts := time.Now().UTC().Format(time.RFC3339)
			amounts := []string{"12.50", "99.99", "250.00", "100.00", "3.10"}
			var lines []string
			for i, a := range amounts {
				lines = append(lines, fmt.Sprintf("card-%d\t{\"payment_id\":\"sasl-%d\",\"card_id\":\"card-%d\",\"amount\":\"%s\",\"currency\":\"EUR\",\"timestamp\":\"%s\"}",
					i, i, i, a, ts))
			}
			kcatProduce(t, tp.payments, lines, false)

			waitCaughtUp(t, svc, tp, 60*time.Second) // the group's offsets, committed over SASL
			decisions := readAll(t, newClient(t), tp.highRisk)
			if len(decisions) != 1 {
				t.Fatalf("%d decisions on %s, want 1 (payment sasl-2, 250.00)", len(decisions), tp.highRisk)
			}
			var d decisionRecord
			if err := json.Unmarshal(decisions[0].Value, &d); err != nil {
				t.Fatalf("decision is not JSON: %v: %s", err, decisions[0].Value)
			}
			if d.PaymentID != "sasl-2" || !d.Flagged || len(d.Reasons) != 1 || d.Reasons[0].Code != "amount_over_threshold" {
				t.Errorf("decision %s, want sasl-2 flagged amount_over_threshold", decisions[0].Value)
			}
			svc.stop(t)
			if logs := svc.logs.String(); strings.Contains(logs, saslPassword) {
				t.Errorf("the service's output shows the SASL password:\n%s", logs)
			}
		})
	}
}

// A wrong password, or none, stops the service with an error that says so, and the password
// is not in its output.
func TestSASLWrongCredentialsStopTheService(t *testing.T) {
	requireSASLListener(t, "SCRAM-SHA-512")
	const wrong = "not-the-password-Vb55"
	recordSecret(wrong, "a wrong SASL password")
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"wrong password", saslEnv("SCRAM-SHA-512", wrong), "authentication failed"},
		{"wrong password PLAIN", saslEnv("PLAIN", wrong), "authentication failed"},
		// A client without SASL gets its connection closed by the listener.
		// It looks like a broker that is not up yet, so it is tried until kafka.connect_timeout.
		{"no mechanism", []string{"FRAUD_KAFKA_BROKERS=" + saslBrokers, "FRAUD_KAFKA_CONNECT_TIMEOUT=3s"}, "connect to kafka"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tp := newTopics(t, 1)
			svc := startService(t, tp, tt.env...)
			// A refused password is not retried: the default connect timeout (30 s) does not apply.
			select {
			case <-svc.done:
			case <-time.After(15 * time.Second):
				t.Fatalf("the service still runs 15 s after start with bad credentials")
			}
			var exit *exec.ExitError
			if !errors.As(svc.err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("service exited with %v, want a non-zero exit status", svc.err)
			}
			logs := svc.logs.String()
			if !strings.Contains(strings.ToLower(logs), tt.want) {
				t.Errorf("the service's output does not say %q:\n%s", tt.want, logs)
			}
			if strings.Contains(logs, wrong) || strings.Contains(logs, saslPassword) {
				t.Errorf("the service's output shows the password:\n%s", logs)
			}
		})
	}
}
