package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/IBM/sarama"
	"github.com/xdg-go/scram"
)

// TLSConfig says how to reach a server over TLS: kafka.tls and redis.tls.
type TLSConfig struct {
	Enabled bool `yaml:"enabled" env:"ENABLED"`
	// CAFile holds the PEM certificates that the server's chain must lead to; without it, the
	// system's roots.
	CAFile string `yaml:"ca_file" env:"CA_FILE"`
	// CertFile and KeyFile are the client's own certificate and key (PEM), for servers that ask
	// for one; both or neither.
	CertFile           string `yaml:"cert_file" env:"CERT_FILE"`
	KeyFile            string `yaml:"key_file" env:"KEY_FILE"`
	ServerName         string `yaml:"server_name" env:"SERVER_NAME"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify" env:"INSECURE_SKIP_VERIFY"`

	// client is built by load from the files, at validation, so that a bad file stops the start.
	client *tls.Config
}

// load reads the files and builds the client's TLS configuration; name is the setting's path
// in the file (kafka.tls), for the errors.
func (t *TLSConfig) load(name string) error {
	t.client = nil
	if !t.Enabled {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify {
			return fmt.Errorf("%s: settings are given but %s.enabled is false: set it to true to use TLS", name, name)
		}
		return nil
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName, // empty: the host of the address dialled
		InsecureSkipVerify: t.InsecureSkipVerify,
	}
	if t.CAFile != "" {
		b, err := os.ReadFile(t.CAFile)
		if err != nil {
			return fmt.Errorf("%s.ca_file: %w", name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("%s.ca_file: %s holds no PEM certificate", name, t.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		return fmt.Errorf("%s: cert_file and key_file go together: set both or neither", name)
	case t.CertFile != "":
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return fmt.Errorf("%s.cert_file and key_file: %w", name, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	t.client = cfg
	return nil
}

// SASLConfig is how the service authenticates to the brokers: kafka.sasl.
type SASLConfig struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no authentication.
	Mechanism    string `yaml:"mechanism" env:"MECHANISM"`
	Username     string `yaml:"username" env:"USERNAME"`
	Password     Secret `yaml:"password" env:"PASSWORD"`
	PasswordFile string `yaml:"password_file" env:"PASSWORD_FILE"`
}

// scramHash is the hash of each SCRAM mechanism.
func scramHash(m sarama.SASLMechanism) (scram.HashGeneratorFcn, bool) {
	switch m {
	case sarama.SASLTypeSCRAMSHA256:
		return scram.SHA256, true
	case sarama.SASLTypeSCRAMSHA512:
		return scram.SHA512, true
	}
	return nil, false
}

// validate checks the mechanism and reads the password file.
func (s *SASLConfig) validate() error {
	if err := readPassword(&s.Password, s.PasswordFile, "kafka.sasl"); err != nil {
		return err
	}
	switch m := sarama.SASLMechanism(s.Mechanism); m {
	case "":
		if s.Username != "" || s.Password != "" {
			return errors.New("kafka.sasl.mechanism: must be set (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512) when a username or password is")
		}
		return nil
	case sarama.SASLTypePlaintext, sarama.SASLTypeSCRAMSHA256, sarama.SASLTypeSCRAMSHA512:
		if s.Username == "" {
			return fmt.Errorf("kafka.sasl.username: must be set with mechanism %s", m)
		}
		if s.Password == "" {
			return fmt.Errorf("kafka.sasl.password: must be set with mechanism %s "+
				"(set FRAUD_KAFKA_SASL_PASSWORD or kafka.sasl.password_file)", m)
		}
		if hash, ok := scramHash(m); ok {
			// SCRAM normalises the name and password (SASLprep) and refuses some characters:
			// better said now than at every connection.
			if _, err := hash.NewClient(s.Username, string(s.Password), ""); err != nil {
				return fmt.Errorf("kafka.sasl: %s cannot use this username or password: %w", m, err)
			}
		}
		return nil
	default:
		return fmt.Errorf("kafka.sasl.mechanism: must be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or empty, got %q", s.Mechanism)
	}
}

// apply sets the SASL settings of a sarama configuration; validate has passed.
func (s *SASLConfig) apply(c *sarama.Config) {
	m := sarama.SASLMechanism(s.Mechanism)
	if m == "" {
		return
	}
	c.Net.SASL.Enable = true
	c.Net.SASL.Handshake = true
	c.Net.SASL.Mechanism = m
	c.Net.SASL.User = s.Username
	c.Net.SASL.Password = string(s.Password)
	if hash, ok := scramHash(m); ok {
		c.Net.SASL.SCRAMClientGeneratorFunc = func() sarama.SCRAMClient { return &SCRAMClient{hash: hash} }
	}
}

// readPassword reads *p from file, if one is named, without its trailing newline; name is the
// setting's section (redis, kafka.sasl), for the errors.
func readPassword(p *Secret, file, name string) error {
	if file == "" {
		return nil
	}
	if *p != "" {
		return fmt.Errorf("%s: set password or password_file, not both", name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%s.password_file: %w", name, err)
	}
	*p = Secret(strings.TrimRight(string(b), "\r\n"))
	if *p == "" {
		return fmt.Errorf("%s.password_file: %s is empty", name, file)
	}
	return nil
}

// SCRAMClient is the client side of a SCRAM exchange (RFC 5802) for sarama, done by
// xdg-go/scram. Each connection gets a new one.
type SCRAMClient struct {
	hash scram.HashGeneratorFcn
	conv *scram.ClientConversation
}

var _ sarama.SCRAMClient = (*SCRAMClient)(nil)

// Begin starts a conversation for the user.
func (c *SCRAMClient) Begin(user, password, authzID string) error {
	client, err := c.hash.NewClient(user, password, authzID)
	if err != nil {
		return fmt.Errorf("scram: %w", err)
	}
	c.conv = client.NewConversation()
	return nil
}

// Step answers the server's challenge.
func (c *SCRAMClient) Step(challenge string) (string, error) {
	return c.conv.Step(challenge)
}

// Done says whether the conversation is over.
func (c *SCRAMClient) Done() bool {
	return c.conv.Done()
}
