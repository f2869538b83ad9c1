package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"
	"github.com/xdg-go/scram"

	"github.com/paysentry/fraud-detector/internal/redistest"
)

const testKey = "0123456789abcdef"

// pki is a throw-away certificate authority with a server and a client certificate, as PEM files.
type pki struct {
	ca, serverCert, serverKey, clientCert, clientKey string
}

// newPKI makes the certificates: the server's is for 127.0.0.1 and redis.test.
func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fraud-detector test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	leaf := func(name string, serial int64, usage x509.ExtKeyUsage) (cert, key string) {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{"redis.test"}
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		p8, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "PRIVATE KEY", p8)
	}
	p := pki{ca: write("ca.crt", "CERTIFICATE", caDER)}
	p.serverCert, p.serverKey = leaf("server", 2, x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf("client", 3, x509.ExtKeyUsageClientAuth)
	return p
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// validated loads the shipped file with env over it and validates.
func validated(t *testing.T, env map[string]string) (Config, error) {
	t.Helper()
	cfg, err := loadConfig("../../configs/config.yaml", true, envMap(env))
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.validate()
}

func TestSecuritySettingsNameTheSettingWhenWrong(t *testing.T) {
	p := newPKI(t)
	notPEM := writeFile(t, "ca.txt", "not a certificate\n")
	missing := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"unknown mechanism", map[string]string{"FRAUD_KAFKA_SASL_MECHANISM": "GSSAPI", "FRAUD_KAFKA_SASL_USERNAME": "u", "FRAUD_KAFKA_SASL_PASSWORD": "p"}, "kafka.sasl.mechanism"},
		{"lower-case mechanism", map[string]string{"FRAUD_KAFKA_SASL_MECHANISM": "scram-sha-512", "FRAUD_KAFKA_SASL_USERNAME": "u", "FRAUD_KAFKA_SASL_PASSWORD": "p"}, "kafka.sasl.mechanism"},
		{"missing password", map[string]string{"FRAUD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "FRAUD_KAFKA_SASL_USERNAME": "u"}, "kafka.sasl.password"},
		{"missing username", map[string]string{"FRAUD_KAFKA_SASL_MECHANISM": "PLAIN", "FRAUD_KAFKA_SASL_PASSWORD": "p"}, "kafka.sasl.username"},
		{"credentials without mechanism", map[string]string{"FRAUD_KAFKA_SASL_USERNAME": "u", "FRAUD_KAFKA_SASL_PASSWORD": "p"}, "kafka.sasl.mechanism"},
		{"password and file", map[string]string{"FRAUD_KAFKA_SASL_MECHANISM": "PLAIN", "FRAUD_KAFKA_SASL_USERNAME": "u", "FRAUD_KAFKA_SASL_PASSWORD": "p", "FRAUD_KAFKA_SASL_PASSWORD_FILE": notPEM}, "kafka.sasl: set password or password_file"},
		{"unreadable password file", map[string]string{"FRAUD_KAFKA_SASL_MECHANISM": "PLAIN", "FRAUD_KAFKA_SASL_USERNAME": "u", "FRAUD_KAFKA_SASL_PASSWORD_FILE": missing}, "kafka.sasl.password_file"},
		{"empty password file", map[string]string{"FRAUD_KAFKA_SASL_MECHANISM": "PLAIN", "FRAUD_KAFKA_SASL_USERNAME": "u", "FRAUD_KAFKA_SASL_PASSWORD_FILE": writeFile(t, "empty", "\n")}, "kafka.sasl.password_file"},
		{"scram refuses the password", map[string]string{"FRAUD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "FRAUD_KAFKA_SASL_USERNAME": "u", "FRAUD_KAFKA_SASL_PASSWORD": "a\u0007b"}, "kafka.sasl: SCRAM-SHA-256"},
		{"unreadable ca_file", map[string]string{"FRAUD_KAFKA_TLS_ENABLED": "true", "FRAUD_KAFKA_TLS_CA_FILE": missing}, "kafka.tls.ca_file"},
		{"ca_file without a certificate", map[string]string{"FRAUD_KAFKA_TLS_ENABLED": "true", "FRAUD_KAFKA_TLS_CA_FILE": notPEM}, "kafka.tls.ca_file"},
		{"cert without key", map[string]string{"FRAUD_KAFKA_TLS_ENABLED": "true", "FRAUD_KAFKA_TLS_CERT_FILE": p.clientCert}, "kafka.tls: cert_file and key_file"},
		{"key of another cert", map[string]string{"FRAUD_KAFKA_TLS_ENABLED": "true", "FRAUD_KAFKA_TLS_CERT_FILE": p.clientCert, "FRAUD_KAFKA_TLS_KEY_FILE": p.serverKey}, "kafka.tls.cert_file and key_file"},
		{"tls settings while disabled", map[string]string{"FRAUD_KAFKA_TLS_CA_FILE": p.ca}, "kafka.tls.enabled is false"},
		{"redis ca_file", map[string]string{"FRAUD_REDIS_TLS_ENABLED": "true", "FRAUD_REDIS_TLS_CA_FILE": missing}, "redis.tls.ca_file"},
		{"redis password file", map[string]string{"FRAUD_REDIS_PASSWORD_FILE": missing}, "redis.password_file"},
		{"redis password and file", map[string]string{"FRAUD_REDIS_PASSWORD": "p", "FRAUD_REDIS_PASSWORD_FILE": notPEM}, "redis: set password or password_file"},
		{"bad bool", map[string]string{"FRAUD_REDIS_TLS_ENABLED": "yes please"}, "FRAUD_REDIS_TLS_ENABLED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["FRAUD_CARD_HMAC_KEY"] = testKey
			_, err := validated(t, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestSaramaConfigsCarryTLSAndSASL(t *testing.T) {
	p := newPKI(t)
	cfg, err := validated(t, map[string]string{
		"FRAUD_CARD_HMAC_KEY":         testKey,
		"FRAUD_KAFKA_TLS_ENABLED":     "true",
		"FRAUD_KAFKA_TLS_CA_FILE":     p.ca,
		"FRAUD_KAFKA_TLS_CERT_FILE":   p.clientCert,
		"FRAUD_KAFKA_TLS_KEY_FILE":    p.clientKey,
		"FRAUD_KAFKA_TLS_SERVER_NAME": "kafka.test",
		"FRAUD_KAFKA_SASL_MECHANISM":  "SCRAM-SHA-512",
		"FRAUD_KAFKA_SASL_USERNAME":   "fraud",
		"FRAUD_KAFKA_SASL_PASSWORD":   "pencil",
	})
	if err != nil {
		t.Fatal(err)
	}
	consumer, producer := cfg.saramaConfigs()
	for name, s := range map[string]*sarama.Config{"consumer": consumer, "producer": producer} {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: sarama refuses the configuration: %v", name, err)
		}
		tc := s.Net.TLS.Config
		if !s.Net.TLS.Enable || tc == nil {
			t.Fatalf("%s: TLS not enabled: %+v", name, s.Net.TLS)
		}
		if tc.MinVersion != tls.VersionTLS12 || tc.ServerName != "kafka.test" || tc.InsecureSkipVerify ||
			tc.RootCAs == nil || len(tc.Certificates) != 1 {
			t.Errorf("%s: tls.Config %+v", name, tc)
		}
		if !s.Net.SASL.Enable || s.Net.SASL.Mechanism != sarama.SASLTypeSCRAMSHA512 || s.Net.SASL.User != "fraud" ||
			s.Net.SASL.Password != "pencil" || s.Net.SASL.SCRAMClientGeneratorFunc == nil {
			t.Errorf("%s: SASL %+v", name, s.Net.SASL)
		}
	}
	// The CA pool verifies the server's certificate, and only it.
	server, err := tls.X509KeyPair(mustRead(t, p.serverCert), mustRead(t, p.serverKey))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(server.Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: consumer.Net.TLS.Config.RootCAs, DNSName: "redis.test"}); err != nil {
		t.Errorf("the CA from ca_file does not verify its server: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: x509.NewCertPool(), DNSName: "redis.test"}); err == nil {
		t.Error("an empty pool verifies the server: the test proves nothing")
	}

	// Without settings: neither TLS nor SASL.
	plain, err := validated(t, map[string]string{"FRAUD_CARD_HMAC_KEY": testKey})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := plain.saramaConfigs()
	if c.Net.TLS.Enable || c.Net.SASL.Enable || plain.redisOptions().TLSConfig != nil {
		t.Errorf("TLS or SASL on by default: %+v %+v", c.Net.TLS, c.Net.SASL)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The SCRAM client that sarama gets completes a conversation with a SCRAM server (xdg-go's own,
// holding the stored credentials of the right password), and fails one with a wrong password.
func TestSCRAMClientConverses(t *testing.T) {
	for _, mech := range []sarama.SASLMechanism{sarama.SASLTypeSCRAMSHA256, sarama.SASLTypeSCRAMSHA512} {
		t.Run(string(mech), func(t *testing.T) {
			hash, _ := scramHash(mech)
			client, err := hash.NewClientUnprepped("fraud", "pencil", "")
			if err != nil {
				t.Fatal(err)
			}
			stored := client.GetStoredCredentials(scram.KeyFactors{Salt: "NaCl-salt-16byte", Iters: 4096})
			newServer := func() *scram.ServerConversation {
				s, err := hash.NewServer(func(string) (scram.StoredCredentials, error) { return stored, nil })
				if err != nil {
					t.Fatal(err)
				}
				return s.NewConversation()
			}
			converse := func(password string) error {
				cfg := sarama.NewConfig()
				(&SASLConfig{Mechanism: string(mech), Username: "fraud", Password: Secret(password)}).apply(cfg)
				c := cfg.Net.SASL.SCRAMClientGeneratorFunc()
				if err := c.Begin(cfg.Net.SASL.User, cfg.Net.SASL.Password, ""); err != nil {
					return err
				}
				server := newServer()
				msg := ""
				for !c.Done() {
					out, err := c.Step(msg)
					if err != nil {
						return fmt.Errorf("client: %w", err)
					}
					if c.Done() {
						break
					}
					if msg, err = server.Step(out); err != nil {
						return fmt.Errorf("server: %w", err)
					}
				}
				if !server.Valid() {
					return fmt.Errorf("server did not accept the client")
				}
				return nil
			}
			if err := converse("pencil"); err != nil {
				t.Errorf("right password: %v", err)
			}
			if err := converse("crayon"); err == nil {
				t.Error("wrong password accepted")
			}
		})
	}
}

func TestPasswordsNeverShown(t *testing.T) {
	p := newPKI(t)
	kafkaPassword, redisPassword := "kafka-pw-Xy81", "redis-pw-Qz93"
	for _, viaFile := range []bool{false, true} {
		t.Run(fmt.Sprintf("from file %v", viaFile), func(t *testing.T) {
			env := map[string]string{
				"FRAUD_CARD_HMAC_KEY":        testKey,
				"FRAUD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
				"FRAUD_KAFKA_SASL_USERNAME":  "fraud",
				"FRAUD_REDIS_USERNAME":       "fraud",
				"FRAUD_REDIS_TLS_ENABLED":    "true",
				"FRAUD_REDIS_TLS_CA_FILE":    p.ca,
				"FRAUD_REDIS_TLS_CERT_FILE":  p.clientCert,
				"FRAUD_REDIS_TLS_KEY_FILE":   p.clientKey,
			}
			if viaFile {
				env["FRAUD_KAFKA_SASL_PASSWORD_FILE"] = writeFile(t, "kafka", kafkaPassword+"\n")
				env["FRAUD_REDIS_PASSWORD_FILE"] = writeFile(t, "redis", redisPassword+"\r\n")
			} else {
				env["FRAUD_KAFKA_SASL_PASSWORD"] = kafkaPassword
				env["FRAUD_REDIS_PASSWORD"] = redisPassword
			}
			cfg, err := validated(t, env)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Kafka.SASL.Password != Secret(kafkaPassword) || cfg.Redis.Password != Secret(redisPassword) {
				t.Errorf("passwords read as %q and %q", string(cfg.Kafka.SASL.Password), string(cfg.Redis.Password))
			}
			if o := cfg.redisOptions(); o.Password != redisPassword || o.Username != "fraud" || o.TLSConfig == nil {
				t.Errorf("redis options: user %q, TLS %v", o.Username, o.TLSConfig)
			}
			// What run logs at start, and prints with -check-config.
			var out strings.Builder
			env["FRAUD_RULES_PATH"] = "../../configs/rules.yaml"
			if err := run(t.Context(), []string{"-config", "../../configs/config.yaml", "-check-config"}, envMap(env), &out, &out); err != nil {
				t.Fatal(err)
			}
			for _, s := range []string{out.String(), fmt.Sprintf("%v %+v", cfg, cfg)} {
				if strings.Contains(s, kafkaPassword) || strings.Contains(s, redisPassword) || strings.Contains(s, "PRIVATE KEY") {
					t.Errorf("a secret is shown: %s", s)
				}
			}
			if n := strings.Count(out.String(), redacted); n < 3 { // the card key and both passwords
				t.Errorf("%d redacted values, want 3: %s", n, out.String())
			}
		})
	}
}

// ping connects with the options validate and redisOptions make from env, and writes a key.
func ping(t *testing.T, env map[string]string) error {
	t.Helper()
	env["FRAUD_CARD_HMAC_KEY"] = testKey
	cfg, err := validated(t, env)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewUniversalClient(cfg.redisOptions())
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	return rdb.Set(ctx, "fd:security-test", "1", time.Minute).Err()
}

// An ACL user: the right password lets the service in, a wrong one or none does not.
func TestRedisACLUser(t *testing.T) {
	addr := redistest.Start(t, "--port",
		"--user", "default", "off",
		"--user", "fraud-detector", "on", ">acl-pw-Lk42", "~fd:*", "+@all")
	file := writeFile(t, "pw", "acl-pw-Lk42\n")
	base := map[string]string{"FRAUD_REDIS_ADDRS": addr, "FRAUD_REDIS_USERNAME": "fraud-detector"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	if err := ping(t, with("FRAUD_REDIS_PASSWORD", "acl-pw-Lk42")); err != nil {
		t.Errorf("right password from the environment: %v", err)
	}
	if err := ping(t, with("FRAUD_REDIS_PASSWORD_FILE", file)); err != nil {
		t.Errorf("right password from a file: %v", err)
	}
	err := ping(t, with("FRAUD_REDIS_PASSWORD", "wrong"))
	if err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Errorf("wrong password: err = %v, want WRONGPASS", err)
	}
	err = ping(t, map[string]string{"FRAUD_REDIS_ADDRS": addr})
	if err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("no credentials: err = %v, want NOAUTH", err)
	}
}

// Debian's redis-server is built with TLS: the service reaches it with the CA and its own
// certificate, and refuses a server whose certificate does not carry the expected name.
func TestRedisTLS(t *testing.T) {
	p := newPKI(t)
	addr := redistest.Start(t, "--tls-port",
		"--tls-cert-file", p.serverCert, "--tls-key-file", p.serverKey,
		"--tls-ca-cert-file", p.ca, "--tls-auth-clients", "yes",
		"--user", "default", "off",
		"--user", "fraud-detector", "on", ">tls-pw-Rm07", "~fd:*", "+@all")
	env := func(kv ...string) map[string]string {
		m := map[string]string{
			"FRAUD_REDIS_ADDRS": addr, "FRAUD_REDIS_USERNAME": "fraud-detector", "FRAUD_REDIS_PASSWORD": "tls-pw-Rm07",
			"FRAUD_REDIS_TLS_ENABLED": "true", "FRAUD_REDIS_TLS_CA_FILE": p.ca,
			"FRAUD_REDIS_TLS_CERT_FILE": p.clientCert, "FRAUD_REDIS_TLS_KEY_FILE": p.clientKey,
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == "" {
				delete(m, kv[i])
			} else {
				m[kv[i]] = kv[i+1]
			}
		}
		return m
	}
	if err := ping(t, env()); err != nil {
		t.Errorf("CA, client certificate, address's own name: %v", err)
	}
	if err := ping(t, env("FRAUD_REDIS_TLS_SERVER_NAME", "redis.test")); err != nil {
		t.Errorf("server_name redis.test: %v", err)
	}
	err := ping(t, env("FRAUD_REDIS_TLS_SERVER_NAME", "other.test"))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("server_name other.test: err = %v, want a certificate error", err)
	}
	err = ping(t, env("FRAUD_REDIS_TLS_CA_FILE", ""))
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("system roots: err = %v, want a certificate error", err)
	}
	if err := ping(t, env("FRAUD_REDIS_TLS_CA_FILE", "", "FRAUD_REDIS_TLS_INSECURE_SKIP_VERIFY", "true")); err != nil {
		t.Errorf("insecure_skip_verify: %v", err)
	}
	if err := ping(t, env("FRAUD_REDIS_TLS_CERT_FILE", "", "FRAUD_REDIS_TLS_KEY_FILE", "")); err == nil {
		t.Error("no client certificate: Redis with tls-auth-clients yes let the service in")
	}
	if err := ping(t, env("FRAUD_REDIS_TLS_ENABLED", "", "FRAUD_REDIS_TLS_CA_FILE", "", "FRAUD_REDIS_TLS_CERT_FILE", "", "FRAUD_REDIS_TLS_KEY_FILE", "")); err == nil {
		t.Error("plaintext to the TLS port succeeded")
	}
}
