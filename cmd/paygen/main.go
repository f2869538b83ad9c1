// Command paygen writes a synthetic, reproducible stream of payments to Kafka or to a file.
//
//	paygen -n 100000                         # 100,000 payments to the payments topic, as fast as possible
//	paygen -rate 500 -n 0                    # 500 payments/s until interrupted, event time = wall clock
//	paygen -n 1000 -out payments.jsonl       # to a file, one JSON record per line
//	paygen -n 1000 -malformed 0.05 -out -    # to standard output, 5 % of them malformed
//
// With -world it simulates a population over some days instead, with labelled fraud, and writes
// the payments in event-time order and their labels to a file of their own:
//
//	paygen -world -seed 1 -out payments.jsonl -labels labels.jsonl
//	    # the project's world: 10,000 cards and 2,000 merchants over 56 days from 2026-01-05
//	paygen -world=handbook -seed 1 -out payments.jsonl -labels labels.jsonl
//	    # the Fraud Detection Handbook's world (Le Borgne et al., 2022, chapter 3): 5,000
//	    # customers (cards) and 10,000 terminals (merchants) over 183 days from 2018-04-01
//
// -world is a boolean flag that also takes a name, so it is -world=handbook, with the equals
// sign: "-world handbook" would be -world and an argument, which paygen refuses.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/IBM/sarama"

	"github.com/paysentry/fraud-detector/internal/paygen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "paygen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("paygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		n         = fs.Int64("n", 10_000, "how many records; 0 for no end")
		rate      = fs.Float64("rate", 0, "records per second; 0 for as fast as possible")
		seed      = fs.Uint64("seed", 1, "random seed: the same seed and flags give the same records")
		cards     = fs.Int("cards", 100_000, "distinct cards; with -world 10,000 unless given, with -world=handbook the customers, 5,000 unless given")
		bursts    = fs.Float64("bursts", 0.002, "share of payments that start a burst of 11-20 on one card")
		numbers   = fs.Float64("card-numbers", 0.1, "share of payments that carry a card_number rather than a card_id")
		malformed = fs.Float64("malformed", 0, "share of records that are malformed")
		start     = fs.String("start", "", "event time of the first payment (RFC 3339); default: the wall clock when -rate is set, else 2026-01-05T00:00:00Z (2018-04-01T00:00:00Z with -world=handbook); with -world, \"now\" ends the simulated days now")
		out       = fs.String("out", "kafka", "where to write: kafka, a file path, or - for standard output")
		keyed     = fs.Bool("keyed", false, "with a file: write KEY<TAB>VALUE lines, as kcat -K'\\t' reads them")
		brokers   = fs.String("brokers", "localhost:9092", "Kafka brokers, comma-separated")
		topic     = fs.String("topic", "payments", "Kafka topic")
		world     paygen.WorldFlag
		days      = fs.Int("days", 56, "with -world: days to simulate from -start; 183 with -world=handbook unless given")
		merchants = fs.Int("merchants", 2000, "with -world: merchants; with -world=handbook the terminals, 10,000 unless given")
		labels    = fs.String("labels", "", "with -world: write each payment's label and scenario to this JSONL file (never into the stream)")
		fraud     = fs.Float64("fraud-scale", 1, "with -world: multiply the chances of every fraud scenario by this (not with -world=handbook)")
	)
	fs.Var(&world, "world", "simulate a population over -days with labelled fraud, in event-time order; -n, -rate and -bursts do not apply. -world (or -world=project): the project's cards and merchants, with card testing, account takeover, compromised merchants and amount anomalies; -world=handbook: the Fraud Detection Handbook's customers and terminals, with amount_over_220, compromised_terminal and compromised_customer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (a world is named with an equals sign: -world=handbook)", fs.Arg(0))
	}
	worldStart := func(def time.Time, days int) (time.Time, error) {
		switch *start {
		case "":
			return def, nil
		case "now":
			return time.Now().UTC().Add(-time.Duration(days) * 24 * time.Hour), nil
		}
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			return time.Time{}, fmt.Errorf("-start: %w", err)
		}
		return t, nil
	}
	brokerList := strings.Split(*brokers, ",")
	switch world.Name {
	case paygen.WorldHandbook:
		if explicit(fs, "fraud-scale") {
			return errors.New("-fraud-scale does not apply to -world=handbook: its scenarios are the book's")
		}
		hc := paygen.DefaultHandbook(*seed)
		if explicit(fs, "days") {
			hc.Days = *days
		}
		if explicit(fs, "cards") {
			hc.Customers = *cards
		}
		if explicit(fs, "merchants") {
			hc.Terminals = *merchants
		}
		var err error
		if hc.Start, err = worldStart(hc.Start, hc.Days); err != nil {
			return err
		}
		began := time.Now()
		payments := paygen.Handbook(hc)
		what := fmt.Sprintf("%d customers and %d terminals (the handbook's world)", hc.Customers, hc.Terminals)
		return writeWorld(ctx, payments, began, what, hc.Days, *out, *labels, *keyed, brokerList, *topic, stdout, stderr)
	case paygen.WorldProject:
		wc := paygen.DefaultWorld(*seed)
		wc.Days, wc.Merchants = *days, *merchants
		wc.CardTesting *= *fraud
		wc.AccountTakeover *= *fraud
		wc.AmountAnomaly *= *fraud
		wc.CompromisedMerchants *= *fraud
		if explicit(fs, "cards") {
			wc.Cards = *cards
		}
		var err error
		if wc.Start, err = worldStart(wc.Start, wc.Days); err != nil {
			return err
		}
		began := time.Now()
		payments := paygen.World(wc)
		what := fmt.Sprintf("%d cards and %d merchants", wc.Cards, wc.Merchants)
		return writeWorld(ctx, payments, began, what, wc.Days, *out, *labels, *keyed, brokerList, *topic, stdout, stderr)
	}
	cfg := paygen.Config{Seed: *seed, Cards: *cards, BurstShare: *bursts, CardNumberShare: *numbers, MalformedShare: *malformed}
	switch {
	case *start != "":
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			return fmt.Errorf("-start: %w", err)
		}
		cfg.Start = t
		if *rate > 0 {
			cfg.Interval = time.Duration(float64(time.Second) / *rate)
		}
	case *rate > 0:
		cfg.Clock = time.Now
	}
	gen := paygen.New(cfg)

	var w writer
	var err error
	if *out == "kafka" {
		w, err = newKafkaWriter(brokerList, *topic)
	} else {
		w, err = newFileWriter(*out, *keyed, stdout)
	}
	if err != nil {
		return err
	}

	began := time.Now()
	var i int64
	for ; *n == 0 || i < *n; i++ {
		if i%256 == 0 {
			if ctx.Err() != nil {
				break
			}
			if *rate > 0 { // pace: record i is due at began + i/rate
				due := began.Add(time.Duration(float64(i) / *rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-ctx.Done():
					}
				}
			}
		}
		if err := w.write(gen.Next()); err != nil {
			return err
		}
	}
	if err := w.close(); err != nil {
		return err
	}
	el := time.Since(began)
	fmt.Fprintf(stderr, "paygen: wrote %d records in %s (%.0f/s)\n", i, el.Round(time.Millisecond), float64(i)/el.Seconds())
	return nil
}

type writer interface {
	write(paygen.Record) error
	close() error
}

type fileWriter struct {
	f     io.Closer
	w     *bufio.Writer
	keyed bool
}

func newFileWriter(path string, keyed bool, stdout io.Writer) (*fileWriter, error) {
	if path == "-" {
		return &fileWriter{w: bufio.NewWriterSize(stdout, 1<<16), keyed: keyed}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &fileWriter{f: f, w: bufio.NewWriterSize(f, 1<<16), keyed: keyed}, nil
}

func (f *fileWriter) write(r paygen.Record) error {
	if f.keyed {
		f.w.WriteString(r.Key)
		f.w.WriteByte('\t')
	}
	f.w.Write(r.Value)
	return f.w.WriteByte('\n')
}

func (f *fileWriter) close() error {
	err := f.w.Flush()
	if f.f != nil {
		err = errors.Join(err, f.f.Close())
	}
	return err
}

type kafkaWriter struct {
	p     sarama.AsyncProducer
	topic string
	errs  chan error
}

func newKafkaWriter(brokers []string, topic string) (*kafkaWriter, error) {
	c := sarama.NewConfig()
	c.ClientID = "paygen"
	c.Producer.RequiredAcks = sarama.WaitForLocal
	c.Producer.Return.Errors = true
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	c.Producer.Flush.Bytes = 512 << 10
	c.Producer.MaxMessageBytes = 2 << 20
	c.ChannelBufferSize = 4096
	p, err := sarama.NewAsyncProducer(brokers, c)
	if err != nil {
		return nil, fmt.Errorf("connect to kafka at %v: %w", brokers, err)
	}
	w := &kafkaWriter{p: p, topic: topic, errs: make(chan error, 1)}
	go func() {
		var first error
		for e := range p.Errors() {
			if first == nil {
				first = e
			}
		}
		w.errs <- first
	}()
	return w, nil
}

func (k *kafkaWriter) write(r paygen.Record) error {
	k.p.Input() <- &sarama.ProducerMessage{Topic: k.topic, Key: sarama.StringEncoder(r.Key), Value: sarama.ByteEncoder(r.Value)}
	return nil
}

func (k *kafkaWriter) close() error {
	k.p.AsyncClose()
	if err := <-k.errs; err != nil {
		return fmt.Errorf("produce: %w", err)
	}
	return nil
}

// explicit reports whether a flag was given on the command line.
func explicit(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// writeWorld writes the payments of a world simulated since began, and their labels to a file of
// their own; what says whose world it is, for the summary.
func writeWorld(ctx context.Context, payments []paygen.Payment, began time.Time, what string, days int, out, labelsPath string, keyed bool, brokers []string, topic string, stdout, stderr io.Writer) error {
	var w writer
	var err error
	if out == "kafka" {
		w, err = newKafkaWriter(brokers, topic)
	} else {
		w, err = newFileWriter(out, keyed, stdout)
	}
	if err != nil {
		return err
	}
	var lw *bufio.Writer
	var lf *os.File
	if labelsPath != "" {
		if lf, err = os.Create(labelsPath); err != nil {
			return err
		}
		defer lf.Close()
		lw = bufio.NewWriterSize(lf, 1<<16)
	}
	fraud := map[string]int{}
	for i, p := range payments {
		if i%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if err := w.write(paygen.Record{Key: p.Key, Value: p.Value}); err != nil {
			return err
		}
		if p.Label.Label == "fraud" {
			fraud[p.Label.Scenario]++
		}
		if lw != nil {
			b, _ := json.Marshal(p.Label)
			lw.Write(b)
			lw.WriteByte('\n')
		}
	}
	if err := w.close(); err != nil {
		return err
	}
	if lw != nil {
		if err := lw.Flush(); err != nil {
			return err
		}
	}
	n := 0
	for _, c := range fraud {
		n += c
	}
	fmt.Fprintf(stderr, "paygen: %d payments of %s over %d days in %s; fraud %.3f %%, by scenario: %v\n",
		len(payments), what, days, time.Since(began).Round(time.Millisecond), 100*float64(n)/float64(max(1, len(payments))), fraud)
	return nil
}
