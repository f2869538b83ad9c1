package pipeline

import (
	"bytes"
	"context"
	"os"
	"time"

	"github.com/paysentry/fraud-detector/internal/rules"
)

// ReloadRules reads the rules file at path and, when it compiles and differs from the set in
// force, puts it in force from the next batch and calls changed with it. A file with errors
// changes nothing: the error says what is wrong, rule by rule, and the running set stays.
func (p *Pipeline) ReloadRules(path string, changed func(*rules.Set)) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		p.m.reloads.WithLabelValues("error").Inc()
		return false, err
	}
	return p.reload(path, b, changed)
}

func (p *Pipeline) reload(path string, b []byte, changed func(*rules.Set)) (bool, error) {
	set, err := rules.Compile(path, b)
	if err != nil {
		p.m.reloads.WithLabelValues("error").Inc()
		return false, err
	}
	old := p.rules.Load()
	if set.Version() == old.Version() {
		return false, nil
	}
	p.rules.Store(set)
	p.m.reloads.WithLabelValues("ok").Inc()
	p.log.Info("rules reloaded", "path", path, "rules_version", set.Version(), "was", old.Version(), "rules", len(set.Rules()))
	if changed != nil {
		changed(set)
	}
	return true, nil
}

// WatchRules reloads the rules file when it changes (checked every `every`; 0: never) or when
// hup receives, until ctx ends. An error is logged once for as long as it stays the same, and at
// every SIGHUP.
func (p *Pipeline) WatchRules(ctx context.Context, path string, every time.Duration, hup <-chan os.Signal, changed func(*rules.Set)) error {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	var last []byte // the file as last read: unchanged, it is not compiled again
	lastErr := ""
	for {
		forced := false
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		case <-hup:
			forced = true
		}
		b, err := os.ReadFile(path)
		if err == nil && !forced && bytes.Equal(b, last) {
			continue
		}
		if err == nil {
			last = b
			_, err = p.reload(path, b, changed)
		} else {
			p.m.reloads.WithLabelValues("error").Inc()
			last = nil
		}
		if err != nil && (forced || err.Error() != lastErr) {
			p.log.Error("rules not reloaded; the running rules stay", "path", path, "rules_version", p.rules.Load().Version(), "err", err)
		}
		lastErr = ""
		if err != nil {
			lastErr = err.Error()
		}
	}
}
