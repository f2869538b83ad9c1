package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/trainingset"
)

const retrainUsage = `fraud-detector retrain: train a model on what the service saw and what the analysts decided.

  fraud-detector retrain                          read the topics, train, write model.path
  fraud-detector retrain -out candidate.onnx      write a candidate; promote it by renaming it over model.path
  fraud-detector retrain -payments p.jsonl -labels-file l.jsonl -out candidate.onnx

It reads the payments topic (kafka.topics.payments, or -payments FILE) and the labels topic
(kafka.topics.labels, or -labels-file FILE) from their oldest records up to their high-water
marks at the start, every partition, with the service's Kafka settings (brokers, TLS, SASL). It
keeps each valid payment once, in event-time order, card numbers turned into card ids with the
service's key, and of each payment's verdicts the latest (by decided_at); records that are not
payments or verdicts are counted and skipped. A payment with no verdict is taken as legitimate
once it is -label-delay older than -as-of (verdicts and chargebacks arrive within it); a younger
one is left out of training. It writes them under -work, computes the features with the replay
(the service's own code), and runs training/train.py, which writes the model to -out (whole, by
a rename, only after its parity check) and its report to -report. A running service whose
model.path is -out swaps the new model in within model.reload_check.
`

func runRetrain(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("retrain", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, retrainUsage); fs.PrintDefaults() }
	configPath := fs.String("config", configPathFrom(getenv), "the YAML configuration `file` (default: FRAUD_CONFIG, else "+defaultConfigPath+"); FRAUD_* variables override it")
	paymentsFile := fs.String("payments", "", "read the payments from this JSONL `file` rather than the payments topic")
	labelsFile := fs.String("labels-file", "", "read the verdicts from this JSONL `file` (the labels topic's records) rather than the labels topic")
	work := fs.String("work", ".cache/retrain", "the `directory` for payments.jsonl, labels.jsonl and features.csv (card ids, never card numbers)")
	out := fs.String("out", "", "the model `file` to write (default: model.path)")
	report := fs.String("report", "", "the report `file` to write (default: -out with .report.md for .onnx)")
	delay := fs.Duration("label-delay", 7*24*time.Hour, "a payment with no verdict is legitimate once this much older than -as-of; younger ones are left out")
	asOf := fs.String("as-of", "", "the time the label delay counts back from, RFC 3339 (default: now)")
	minPayments := fs.Int("min-payments", 1000, "refuse to train on fewer valid payments")
	testWeeks := fs.Int("test-weeks", 2, "train.py --test-weeks: the last weeks, measured and not trained on")
	gapDays := fs.Int("gap-days", -1, "train.py --gap-days: days before the test weeks left out (default: -label-delay in days, rounded up)")
	seed := fs.Int("seed", 7, "train.py --seed")
	python := fs.String("python", "", "the `python` with training/requirements.txt (default: what scripts/python.sh prints)")
	trainer := fs.String("train", "training/train.py", "the training `script`")
	idle := fs.Duration("read-timeout", 30*time.Second, "fail if a partition sends nothing this long before its high-water mark")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("retrain: unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*configPath, configRequired(fs, getenv), getenv)
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if *out == "" {
		if !cfg.Model.Enabled() {
			return errors.New("retrain: model.path is none: name the model file to write with -out")
		}
		*out = cfg.Model.Path
	}
	if *report == "" {
		*report = strings.TrimSuffix(*out, ".onnx") + ".report.md"
	}
	now := time.Now()
	if *asOf != "" {
		if now, err = time.Parse(time.RFC3339, *asOf); err != nil {
			return fmt.Errorf("retrain: -as-of: want an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", *asOf)
		}
	}
	if *gapDays < 0 {
		*gapDays = int(math.Ceil(delay.Hours() / 24))
	}
	began := time.Now()
	log := func(format string, a ...any) { fmt.Fprintf(stderr, "retrain: "+format+"\n", a...) }

	skipped := 0
	b := trainingset.NewBuilder(payment.NewDecoder([]byte(cfg.Card.HMACKey), cfg.Stream.MaxPaymentBytes), func(where, why string) {
		if skipped++; skipped <= 20 {
			log("%s: %s; skipped", where, why) // where and why only: a record may hold a card number
		}
	})
	if err := readSources(ctx, cfg, *paymentsFile, *labelsFile, *idle, b, stderr, log); err != nil {
		return err
	}
	if skipped > 20 {
		log("%d more records skipped", skipped-20)
	}
	set, err := b.Build(trainingset.Config{AsOf: now, LabelDelay: *delay, MinPayments: *minPayments})
	if st := b.Stats(); err != nil {
		log("%d payments (%d invalid, %d duplicates), %d verdicts (%d malformed)", st.Payments, st.InvalidPayments, st.DuplicatePayments, st.Verdicts, st.MalformedVerdicts)
		return fmt.Errorf("retrain: %w", err)
	}
	st := set.Stats
	log("%d payments (%d invalid and %d duplicates left out); %d verdicts (%d malformed, skipped; %d of payments not read)",
		st.Payments, st.InvalidPayments, st.DuplicatePayments, st.Verdicts, st.MalformedVerdicts, st.Orphans)
	log("labels: %d fraud and %d legitimate by verdict; %d legitimate for want of one (no verdict, before %s: -as-of less -label-delay %s); %d left out (no verdict yet)",
		st.Fraud, st.Legitimate, st.Aged, now.Add(-*delay).UTC().Format(time.RFC3339), *delay, st.Unlabelled)
	paymentsPath, labelsPath, err := set.Write(*work)
	if err != nil {
		return fmt.Errorf("retrain: %w", err)
	}

	features := filepath.Join(*work, "features.csv")
	log("computing the features with the replay")
	replayArgs := []string{"-model", "none", "-in", paymentsPath, "-labels", labelsPath, "-out", features, "-label-delay", delay.String()}
	if _, err := os.Stat(*configPath); err == nil { // the file read above, if any; else the same defaults and environment
		replayArgs = append([]string{"-config", *configPath}, replayArgs...)
	}
	if err := runReplay(ctx, replayArgs, getenv, stdout, stderr); err != nil {
		return fmt.Errorf("retrain: replay: %w", err)
	}

	if *python == "" {
		if *python, err = venvPython(ctx, stderr); err != nil {
			return err
		}
	}
	log("training")
	train := exec.CommandContext(ctx, *python, *trainer, "--features", features, "--out", *out, "--report", *report,
		"--test-weeks", strconv.Itoa(*testWeeks), "--gap-days", strconv.Itoa(*gapDays), "--seed", strconv.Itoa(*seed))
	train.Stdout, train.Stderr = stderr, stderr
	if err := train.Run(); err != nil {
		return fmt.Errorf("retrain: %s: %w (its message is above; it writes %s only once its checks pass)", *trainer, err, *out)
	}
	version := reportVersion(*report)
	log("model %s written to %s, its report to %s, in %s", version, *out, *report, time.Since(began).Round(time.Millisecond))
	fmt.Fprintln(stdout, version)
	return nil
}

// readSources adds the payments and the verdicts to b, from the files if named and else from the
// topics, whose high-water marks are both taken before either is read.
func readSources(ctx context.Context, cfg Config, paymentsFile, labelsFile string, idle time.Duration, b *trainingset.Builder, stderr io.Writer, log func(string, ...any)) error {
	var client sarama.Client
	var topics []trainingset.Topic
	if paymentsFile == "" || labelsFile == "" {
		sc, _ := cfg.saramaConfigs()
		sc.Metadata.AllowAutoTopicCreation = false // a missing topic is an error, not a new empty topic
		warn := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		var err error
		client, err = connect(ctx, cfg.Kafka, warn, func() (sarama.Client, error) { return sarama.NewClient(cfg.Kafka.Brokers, sc) })
		if err != nil {
			return fmt.Errorf("retrain: %w", err)
		}
		defer client.Close()
		for _, name := range []struct{ file, topic, setting string }{
			{paymentsFile, cfg.Kafka.Topics.Payments, "kafka.topics.payments"},
			{labelsFile, cfg.Kafka.Topics.Labels, "kafka.topics.labels"},
		} {
			if name.file != "" {
				topics = append(topics, trainingset.Topic{})
				continue
			}
			t, err := trainingset.Ends(client, name.topic)
			if errors.Is(err, trainingset.ErrNoTopic) {
				return fmt.Errorf("retrain: the brokers %v have no topic %s (%s): check the setting, or read a file instead", cfg.Kafka.Brokers, name.topic, name.setting)
			}
			if err != nil {
				return fmt.Errorf("retrain: %w", err)
			}
			topics = append(topics, t)
		}
	}
	read := func(file string, i int, add func(string, []byte)) error {
		if file != "" {
			log("reading %s", file)
			return trainingset.ReadFile(file, add)
		}
		log("reading topic %s: %d partitions, %d offsets", topics[i].Name, len(topics[i].Parts), topics[i].Records())
		return trainingset.Read(ctx, client, topics[i], idle, add)
	}
	if err := read(paymentsFile, 0, b.AddPayment); err != nil {
		return fmt.Errorf("retrain: payments: %w", err)
	}
	if err := read(labelsFile, 1, b.AddVerdict); err != nil {
		return fmt.Errorf("retrain: verdicts: %w", err)
	}
	return nil
}

// venvPython is the training environment's python, which scripts/python.sh makes once.
func venvPython(ctx context.Context, stderr io.Writer) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "scripts/python.sh")
	cmd.Stdout, cmd.Stderr = &out, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("retrain: scripts/python.sh: %w (run from the repository, or name the python with -python)", err)
	}
	return strings.TrimSpace(out.String()), nil
}

// reportVersion is the model version in the report's title ("# Model report: <version>").
func reportVersion(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no report)"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "# Model report: "); ok {
			return v
		}
	}
	return "(unknown version)"
}
