package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The retrain from files, its trainer a stand-in that notes its arguments: the work files hold the
// payments and the labels (fraud verdicts, and payments older than the label delay as
// legitimate), the replay's features of every payment, and the trainer is asked for the model and
// report named, with a gap of the label delay in days.
func TestRetrainFromFiles(t *testing.T) {
	dir := t.TempDir()
	// The seed's fraud verdicts only (four days, 2026-01-04 to 07): the legitimate payments have none.
	in, err := os.ReadFile("../../e2e/testdata/seed/labels.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, l := range strings.Split(strings.TrimSpace(string(in)), "\n") {
		if strings.Contains(l, `"label":"fraud"`) {
			verdicts = append(verdicts, l)
		}
	}
	verdicts = append(verdicts, `{"payment_id":"x","label":"maybe"}`)
	labels := filepath.Join(dir, "verdicts.jsonl")
	if err := os.WriteFile(labels, []byte(strings.Join(verdicts, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	trainer := filepath.Join(dir, "python")
	script := `#!/bin/sh
echo "$@" > "` + dir + `/args"
while [ $# -gt 0 ]; do case "$1" in --out) out=$2 ;; --report) report=$2 ;; esac; shift; done
printf 'model' > "$out"
printf '# Model report: lgbm-0123456789ab\n\nfigures\n' > "$report"
`
	if err := os.WriteFile(trainer, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	work, out := filepath.Join(dir, "work"), filepath.Join(dir, "candidate.onnx")
	var stdout, stderr strings.Builder
	err = run(context.Background(), []string{"retrain", "-payments", "../../e2e/testdata/seed/payments.jsonl", "-labels-file", labels,
		"-work", work, "-out", out, "-as-of", "2026-01-07T12:00:00Z", "-label-delay", "36h", "-test-weeks", "1",
		"-python", trainer, "-train", "train.py"},
		envMap(map[string]string{"FRAUD_CARD_HMAC_KEY": "golden-test-key-0123456789", "FRAUD_RULES_PATH": "../../configs/rules.yaml"}),
		&stdout, &stderr)
	if err != nil {
		t.Fatalf("retrain: %v\n%s", err, stderr.String())
	}
	if stdout.String() != "lgbm-0123456789ab\n" {
		t.Errorf("stdout %q, want the model's version", stdout.String())
	}
	for _, want := range []string{"verdicts.jsonl:197: label is not \"fraud\" or \"legitimate\"; skipped", "1840 payments", "1 malformed"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("the output does not say %q:\n%s", want, stderr.String())
		}
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	want := "train.py --features " + filepath.Join(work, "features.csv") + " --out " + out + " --report " + filepath.Join(dir, "candidate.report.md") +
		" --test-weeks 1 --gap-days 2 --seed 7\n"
	if string(args) != want {
		t.Errorf("the trainer's arguments:\n%s\nwant\n%s", args, want)
	}
	csv, err := os.ReadFile(filepath.Join(work, "features.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(csv), "\n"); n != 1841 {
		t.Errorf("features.csv has %d lines, want a header and 1,840 payments", n)
	}
	f, err := os.Open(filepath.Join(work, "labels.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct{ Label, Source string }
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		counts[l.Source+" "+l.Label]++
	}
	// Payments before 2026-01-06 00:00 (as-of less 36 h) without a verdict are legitimate; later
	// ones without one are left out.
	if counts["verdict fraud"] != len(verdicts)-1 || counts["no_verdict legitimate"] == 0 || len(counts) != 2 {
		t.Errorf("labels by source: %v", counts)
	}
	if !strings.Contains(stderr.String(), "left out (no verdict yet)") {
		t.Errorf("the output does not count the payments left out:\n%s", stderr.String())
	}
}

// A set that cannot train stops the retrain before the trainer runs, with the reason.
func TestRetrainRefusesWithoutFraud(t *testing.T) {
	dir := t.TempDir()
	labels := filepath.Join(dir, "verdicts.jsonl")
	os.WriteFile(labels, []byte(`{"payment_id":"pay-12-000000001","label":"legitimate"}`+"\n"), 0o600)
	var stdout, stderr strings.Builder
	err := run(context.Background(), []string{"retrain", "-payments", "../../e2e/testdata/seed/payments.jsonl", "-labels-file", labels,
		"-work", filepath.Join(dir, "work"), "-out", filepath.Join(dir, "m.onnx"), "-python", "/nonexistent"},
		envMap(map[string]string{"FRAUD_CARD_HMAC_KEY": "golden-test-key-0123456789", "FRAUD_RULES_PATH": "../../configs/rules.yaml"}),
		&stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no fraud verdict") {
		t.Errorf("err %v, want no fraud verdict", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "work")); err == nil {
		t.Error("the work directory was written for a set that cannot train")
	}
}
