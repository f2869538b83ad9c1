package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/paysentry/fraud-detector/internal/rules"
)

const rulesUsage = `usage: fraud-detector rules check FILE...

Compiles and type-checks each rules file as the service would load it, and prints what it holds.
Every error is printed as FILE:LINE: rule ID: MESSAGE; the exit status is 1 if any file has one.
`

// runRules is `fraud-detector rules`: for now its one verb, check.
func runRules(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("rules", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, rulesUsage) }
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 || fs.Arg(0) != "check" {
		fs.Usage()
		return errors.New("rules: want `rules check FILE...`")
	}
	bad := 0
	for _, path := range fs.Args()[1:] {
		set, err := rules.Load(path)
		if err != nil {
			fmt.Fprintln(stderr, err)
			bad++
			continue
		}
		active, shadow := 0, 0
		for _, r := range set.Rules() {
			if r.Mode == rules.ModeShadow {
				shadow++
			} else {
				active++
			}
		}
		fmt.Fprintf(stdout, "%s: ok: %d rules (%d active, %d shadow), %d lists, %s\n", path, active+shadow, active, shadow, len(set.Lists()), set.Version())
	}
	if bad > 0 {
		return fmt.Errorf("rules check: %d of %d files have errors", bad, fs.NArg()-1)
	}
	return nil
}
