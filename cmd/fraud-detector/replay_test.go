package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/paysentry/fraud-detector/internal/redistest"
)

// A replay against a real Redis leaves none of its keys behind, and takes labels whose scenario
// is a number or that carry fields of their own.
func TestReplayOnRedisLeavesNothing(t *testing.T) {
	rdb, _ := redistest.New(t, "replaytest")
	ctx := context.Background()
	prefix := fmt.Sprintf("replaytest-%d", time.Now().UnixNano()) // other replays may share the Redis
	// The seed's labels, their scenario a number and an extra field.
	in, err := os.Open("../../e2e/testdata/seed/labels.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	var labels strings.Builder
	sc := bufio.NewScanner(in)
	for n := 0; sc.Scan(); n++ {
		var l map[string]any
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		l["scenario"], l["annotator"] = n%4, map[string]any{"id": n}
		b, _ := json.Marshal(l)
		labels.Write(append(b, '\n'))
	}
	labelsPath := filepath.Join(t.TempDir(), "labels.jsonl")
	os.WriteFile(labelsPath, []byte(labels.String()), 0o644)
	out := filepath.Join(t.TempDir(), "features.csv")

	var stdout, stderr strings.Builder
	err = run(ctx, []string{"replay", "-in", "../../e2e/testdata/seed/payments.jsonl", "-labels", labelsPath,
		"-redis", rdb.Options().Addr, "-key-prefix", prefix, "-model", "none", "-out", out},
		envMap(map[string]string{"FRAUD_CARD_HMAC_KEY": "golden-test-key-0123456789", "FRAUD_RULES_PATH": "../../configs/rules.yaml"}),
		&stdout, &stderr)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "1840 labelled payments") {
		t.Errorf("replay's report: %s", stderr.String())
	}
	csv, _ := os.ReadFile(out)
	if lines := strings.Count(string(csv), "\n"); lines != 1841 {
		t.Errorf("%d CSV lines, want a header and 1,840 payments", lines)
	}
	after, err := rdb.Keys(ctx, prefix+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) > 0 {
		t.Errorf("%d keys under %s after the replay, %s among them", len(after), prefix, after[0])
	}
	// A prefix with keys is refused: the replay would delete them after.
	rdb.Set(ctx, prefix+":{x}", "someone else's", 0)
	err = run(ctx, []string{"replay", "-in", "../../e2e/testdata/seed/payments.jsonl", "-redis", rdb.Options().Addr,
		"-key-prefix", prefix, "-model", "none", "-out", out},
		envMap(map[string]string{"FRAUD_CARD_HMAC_KEY": "golden-test-key-0123456789", "FRAUD_RULES_PATH": "../../configs/rules.yaml"}),
		&stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "already has keys") {
		t.Errorf("a prefix with keys: %v", err)
	}
	if v := rdb.Get(ctx, prefix+":{x}").Val(); v != "someone else's" {
		t.Errorf("the key under the prefix is %q after the refusal", v)
	}
	rdb.Del(ctx, prefix+":{x}")
}
