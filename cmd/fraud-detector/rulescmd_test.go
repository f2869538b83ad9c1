package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// `rules check` passes the shipped file, and fails a broken one with every error by file, line
// and rule.
func TestRulesCheck(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"rules", "check", "../../configs/rules.yaml"}, envMap(nil), &out, &errOut); err != nil {
		t.Fatalf("shipped rules: %v\n%s", err, errOut.String())
	}
	if !regexp.MustCompile(`ok: \d+ rules \(\d+ active, 0 shadow\), 7 lists, rules-[0-9a-f]{12}\n$`).MatchString(out.String()) {
		t.Errorf("output %q", out.String())
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte(`rules:
  - id: big
    description: big
    expression: payment.amount > "100"
    action: flag
  - id: big
    description: the same id again
    expression: payment.amont > 100
    action: flag
  - id: listed
    description: a list nobody declared
    expression: payment.card_id in lists.nope
    action: block
`), 0o644)
	out.Reset()
	errOut.Reset()
	err := run(context.Background(), []string{"rules", "check", bad}, envMap(nil), &out, &errOut)
	if err == nil {
		t.Fatal("a broken file passed")
	}
	for _, want := range []string{
		bad + ":4: rule big:",              // the type error, on the expression's line
		bad + ":6: rule big: duplicate id", // and the second big
		"payment.amont",
		"unknown list nope",
		"rule listed",
		"block",
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("errors do not say %q:\n%s", want, errOut.String())
		}
	}
	if out.Len() != 0 {
		t.Errorf("a broken file printed %q on standard output", out.String())
	}
}
