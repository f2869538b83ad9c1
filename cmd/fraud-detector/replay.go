package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/paysentry/fraud-detector/internal/model"
	"github.com/paysentry/fraud-detector/internal/payment"
	"github.com/paysentry/fraud-detector/internal/pipeline"
	"github.com/paysentry/fraud-detector/internal/rules"
)

const replayUsage = `fraud-detector replay: run the service's decision pipeline (card state, model, rules,
policy) over a file of payments in event-time order, and write every payment's features, score,
decision and reasons as CSV: training data computed by the serving code, and backtests of a rule
or model change.

  fraud-detector replay -in payments.jsonl -labels labels.jsonl -out features.csv
  fraud-detector replay -in payments.jsonl -labels labels.jsonl -model configs/model.onnx -out /dev/null
  fraud-detector replay -in payments.jsonl -labels labels.jsonl -rules candidate.yaml -out /dev/null
  fraud-detector replay -in payments.jsonl -labels labels.jsonl -shadow-model challenger.onnx -out /dev/null

With -rules, a candidate rules file is decided beside the current one (rules.path) on the same
card state and scores, and a backtest goes to standard output: per rule of either file, its
hits, precision and recall against the labels, and the payments the candidate newly flags and
no longer flags.

With -shadow-model, a challenger model scores the same feature rows as the model, in shadow as
model.shadow_path does (it decides nothing), and with labels the report on standard error
compares the two side by side: ROC AUC, average precision, and precision and recall of a score
over 0.5, on the labelled payments both scored. The lists are those of the Redis the replay uses (with -redis: that Redis's
lists under lists.key_prefix; in-process: empty).

Input: one payment (the topic's JSON) a line. Labels: one {"payment_id", "label": "fraud" |
"legitimate", "scenario"} a line (what paygen -world -labels writes). With labels, precision,
recall and average precision of the decisions (and of the model's scores) go to standard error,
and each fraud label is applied to its merchant's fraud counts -label-delay after its payment,
as verdicts come in live: no feature sees a label before it could have been known.
`

// replayLine is a payment of the input.
type replayLine struct {
	p payment.Payment
	n int // input order
}

// verdict is a label the replay applies once the clock passes its time.
type verdict struct {
	at       time.Time
	id, card string
}

type label struct {
	PaymentID string `json:"payment_id"`
	Label     string `json:"label"`
	// Scenario is written to the CSV as the file gives it: a string, or a number or anything else
	// as its JSON text. Other fields of a label are left alone.
	Scenario scenario `json:"scenario"`
}

// scenario is a label's scenario field, whatever its JSON type.
type scenario string

func (s *scenario) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = scenario(str)
		return nil
	}
	if string(b) != "null" {
		*s = scenario(b)
	}
	return nil
}

func runReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, replayUsage); fs.PrintDefaults() }
	configPath := fs.String("config", defaultConfigPath, "the YAML configuration `file` (rules, windows, model); FRAUD_* variables override it")
	in := fs.String("in", "", "payments, JSONL (- for standard input)")
	labelsPath := fs.String("labels", "", "labels, JSONL (optional)")
	out := fs.String("out", "-", "where to write the CSV (- for standard output)")
	redisAddr := fs.String("redis", "", "a Redis to keep the card state in, under a key prefix of its own that is deleted after; default: an in-process Redis")
	keyPrefix := fs.String("key-prefix", "", "with -redis: the card state's key prefix, which must have no keys yet (they are deleted after); default replay-<Unix ns>")
	modelPath := fs.String("model", "", "score with this ONNX model (default: model.path of the configuration; \"none\" for no model)")
	shadowPath := fs.String("shadow-model", "", "score beside the model with this challenger ONNX `file`, and compare the two on the labels (default: model.shadow_path; \"none\" for none)")
	batch := fs.Int("batch", 500, "payments a batch, as the stream's stream.batch_size")
	candidatePath := fs.String("rules", "", "backtest: a candidate rules `file` to decide beside the current rules (see above)")
	delay := fs.Duration("label-delay", 7*24*time.Hour, "a fraud label becomes known (to the merchant's fraud counts) this long after its payment's event time, as analysts' verdicts come in")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" {
		fs.Usage()
		return errors.New("replay: -in is required")
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err := loadConfig(*configPath, explicit, getenv)
	if err != nil {
		return err
	}
	if *modelPath != "" {
		cfg.Model.Path = *modelPath
	}
	if *shadowPath != "" {
		cfg.Model.ShadowPath = *shadowPath
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	lines, invalid, err := readPayments(*in, payment.NewDecoder([]byte(cfg.Card.HMACKey), cfg.Stream.MaxPaymentBytes))
	if err != nil {
		return err
	}
	labels, err := readLabels(*labelsPath)
	if err != nil {
		return err
	}

	// The card state: Redis, with a clock that follows the payments' event time.
	var rdb *redis.Client
	if *redisAddr == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.Start(); err != nil {
			return fmt.Errorf("in-process redis: %w", err)
		}
		defer mr.Close()
		rdb = redis.NewClient(&redis.Options{Addr: mr.Addr()})
		defer rdb.Close()
	} else {
		rdb = redis.NewClient(&redis.Options{Addr: *redisAddr})
		defer rdb.Close() // after the keys are deleted: deferred calls run last first
		cfg.Window.KeyPrefix = *keyPrefix
		if cfg.Window.KeyPrefix == "" {
			cfg.Window.KeyPrefix = fmt.Sprintf("replay-%d", time.Now().UnixNano())
		}
		// The keys under the prefix are deleted after: they must all be the replay's own.
		// (A SCAN call looks at a part of the keyspace: go on until one finds a key, or the end.)
		for cursor := uint64(0); ; {
			keys, next, err := rdb.Scan(ctx, cursor, cfg.Window.KeyPrefix+":*", 10000).Result()
			if err != nil {
				return fmt.Errorf("redis %s: %w", *redisAddr, err)
			}
			if len(keys) > 0 {
				return fmt.Errorf("-key-prefix %s: redis %s already has keys under it (%s); the replay deletes its keys after, so it needs a prefix of its own",
					cfg.Window.KeyPrefix, *redisAddr, keys[0])
			}
			if cursor = next; cursor == 0 {
				break
			}
		}
		defer func() {
			if err := deleteKeys(rdb, cfg.Window.KeyPrefix); err != nil {
				fmt.Fprintln(stderr, "replay:", err)
			}
		}()
	}
	var clock time.Time
	cfg.Stream.StateFailurePolicy = pipeline.FailClosed // a replay waits for Redis rather than decide without it
	cfg.Stages.Windows = true
	d, err := newDecider(cfg, rdb, func() time.Time { return clock }, pipeline.NewMetrics(prometheus.NewRegistry()), log, true)
	if err != nil {
		return err
	}
	defer d.Close()
	if _, err := d.lists.Refresh(ctx); err != nil {
		return fmt.Errorf("lists: %w", err)
	}
	store := d.windows
	var bt *pipeline.Backtest
	if *candidatePath != "" {
		cand, err := rules.Load(*candidatePath)
		if err != nil {
			return err
		}
		bt = pipeline.NewBacktest(d.pipe.Rules(), cfg.Rules.Path, cand, *candidatePath)
	}

	w := os.Stdout
	if f, ok := stdout.(*os.File); ok {
		w = f
	}
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	cw := csv.NewWriter(bw)
	cw.Write(append([]string{"payment_id", "event_time", "card_id", "label", "scenario", "rules_flagged", "flagged", "score", "reasons"}, model.FeatureNames...))

	// Fraud labels, in the order they become known.
	var verdicts []verdict
	for _, l := range lines {
		if labels[l.p.ID].Label == "fraud" {
			verdicts = append(verdicts, verdict{at: l.p.Time.Add(*delay), id: l.p.ID, card: l.p.CardID})
		}
	}
	slices.SortStableFunc(verdicts, func(a, b verdict) int { return a.at.Compare(b.at) })

	var ev evaluation
	var models comparison
	batchOf := make([]*payment.Payment, 0, *batch)
	writeRow := func(o *pipeline.Decision) {
		pm := o.Input.Payment
		l := labels[pm.ID]
		// Flagged without the model: what the rules make of the payment alone.
		bare := o.Input
		bare.Score, bare.Scored = 0, false
		hits, _ := d.pipe.Rules().Eval(&bare, nil)
		rulesFlagged := pipeline.Apply(hits).Flagged
		ev.add(l.Label, o.Flagged, rulesFlagged, o.Score)
		models.add(l.Label, o.Score, o.ShadowScore, o.ModelVersion, o.ShadowModelVersion)
		if bt != nil {
			bt.Add(l.Label, o)
		}
		codes := make([]string, len(o.Reasons))
		for i, r := range o.Reasons {
			codes[i] = r.Code
		}
		row := []string{pm.ID, strconv.FormatInt(pm.Time.Unix(), 10), pm.CardID,
			labelValue(l.Label), string(l.Scenario), b01(rulesFlagged), b01(o.Flagged), scoreText(o.Score), strings.Join(codes, "|")}
		for _, f := range o.Features {
			row = append(row, strconv.FormatFloat(float64(f), 'g', -1, 32))
		}
		cw.Write(row)
	}
	// A batch's decisions are written by a goroutine of their own while the next batch is
	// decided: the replay waits on Redis most of the time, and the CSV is most of its own work.
	written := make(chan []pipeline.Decision, 2)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for ds := range written {
			for i := range ds {
				writeRow(&ds[i])
			}
		}
	}()
	stopped := false
	stopWriter := func() {
		if !stopped {
			stopped = true
			close(written)
			<-writerDone
		}
	}
	defer stopWriter()
	began := time.Now()
	for start, end := 0, 0; start < len(lines); start = end {
		// A batch is up to -batch payments of one UTC day (a merchant's counts of the days before
		// are folded when its day's first payment reads them) within a window's length of event
		// time. The clock that judges lateness is the batch's first event time: in a file in
		// event-time order none is late, and none is ahead (more than a window past the clock).
		batchOf = batchOf[:0]
		first := lines[start].p.Time
		day := first.Unix() / 86400
		for end = start; end < len(lines) && end-start < *batch && lines[end].p.Time.Unix()/86400 == day &&
			lines[end].p.Time.Sub(first) < cfg.Window.Length; end++ {
			batchOf = append(batchOf, &lines[end].p)
		}
		clock = first
		// Verdicts known by the batch's first payment: none is seen by a payment before its time.
		for len(verdicts) > 0 && !verdicts[0].at.After(first) {
			if _, err := store.Label(ctx, verdicts[0].card, verdicts[0].id, true); err != nil {
				return err
			}
			verdicts = verdicts[1:]
		}
		ds := make([]pipeline.Decision, len(batchOf))
		if err := d.pipe.Decide(ctx, batchOf, ds); err != nil {
			return err
		}
		if _, err := store.Fold(ctx); err != nil {
			return err
		}
		written <- ds
	}
	stopWriter()
	cw.Flush()
	if err := errors.Join(cw.Error(), bw.Flush()); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Fprintf(stderr, "replay: %d payments in %s (%d invalid, left out)\n", len(lines), time.Since(began).Round(time.Millisecond), invalid)
	if len(labels) > 0 {
		ev.report(stderr)
		if d.shadow != nil {
			models.report(stderr)
		}
	}
	if bt != nil {
		rep := stdout // the CSV goes elsewhere; with -out -, the report joins the evaluation
		if *out == "-" {
			rep = stderr
		}
		bt.Report(rep)
	}
	return nil
}

// readPayments reads the payments of a JSONL file in event-time order (input order among equal
// times). Lines that do not decode are counted and left out.
func readPayments(path string, dec *payment.Decoder) ([]replayLine, int, error) {
	var r io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, 0, err
		}
		defer f.Close()
		r = f
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	var lines []replayLine
	invalid := 0
	for sc.Scan() {
		v := slices.Clone(sc.Bytes())
		p, err := dec.Decode(v)
		if err != nil {
			invalid++
			continue
		}
		lines = append(lines, replayLine{p: p, n: len(lines)})
	}
	if err := sc.Err(); err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", path, err)
	}
	slices.SortStableFunc(lines, func(a, b replayLine) int { return cmp.Or(a.p.Time.Compare(b.p.Time), cmp.Compare(a.n, b.n)) })
	return lines, invalid, nil
}

func readLabels(path string) (map[string]label, error) {
	labels := map[string]label{}
	if path == "" {
		return labels, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		var l label
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.PaymentID == "" || (l.Label != "fraud" && l.Label != "legitimate") {
			return nil, fmt.Errorf("%s:%d: want {\"payment_id\", \"label\": \"fraud\" or \"legitimate\"} (%v)", path, n, err)
		}
		labels[l.PaymentID] = l
	}
	return labels, sc.Err()
}

// deleteKeys deletes the keys under prefix, a page of SCAN at a time.
func deleteKeys(rdb *redis.Client, prefix string) error {
	ctx := context.Background()
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+":*", 1000).Result()
		if err != nil {
			return fmt.Errorf("delete the replay's keys under %s: %w", prefix, err)
		}
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("delete the replay's keys under %s: %w", prefix, err)
			}
		}
		if cursor = next; cursor == 0 {
			return nil
		}
	}
}

func labelValue(l string) string {
	switch l {
	case "fraud":
		return "1"
	case "legitimate":
		return "0"
	}
	return ""
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func scoreText(s *float64) string {
	if s == nil {
		return ""
	}
	return strconv.FormatFloat(*s, 'g', 8, 64)
}
