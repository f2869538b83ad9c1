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

// WatchRules reloads the rules file when it changes (checked every `every`; 0: never; a change
// is used once two checks in a row read it the same) or when hup receives (at once), until ctx
// ends. An error is logged once for as long as it stays the same, and at
// every SIGHUP.
func (p *Pipeline) WatchRules(ctx context.Context, path string, every time.Duration, hup <-chan os.Signal, changed func(*rules.Set)) error {
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	return p.watchRules(ctx, path, tick, hup, changed, nil)
}

// watchRules is WatchRules with the checks' ticks given; checked, if not nil, is told when a check
// or a SIGHUP has been handled (for tests).
func (p *Pipeline) watchRules(ctx context.Context, path string, tick <-chan time.Time, hup <-chan os.Signal, changed func(*rules.Set), checked chan<- struct{}) error {
	w := rulesWatch{p: p, path: path, changed: changed}
	for {
		forced := false
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		case <-hup:
			forced = true
		}
		w.check(forced)
		if checked != nil {
			checked <- struct{}{}
		}
	}
}

// rulesWatch is what WatchRules remembers between two checks of the file.
type rulesWatch struct {
	p       *Pipeline
	path    string
	changed func(*rules.Set)
	last    []byte // the file as last compiled: unchanged, it is not compiled again
	pending []byte // a change seen at the check before, used once it reads the same twice
	lastErr string // the error last logged: the same one is logged again only at a SIGHUP
}

// check reads the file once; forced (a SIGHUP) compiles it whatever it holds.
func (w *rulesWatch) check(forced bool) {
	b, err := os.ReadFile(w.path)
	if err == nil && !forced && bytes.Equal(b, w.last) {
		w.pending = nil
		return
	}
	// A changed file is used once two checks in a row read it the same: an editor or a copy
	// writing it in place can leave it cut short, and a file cut between two rules compiles.
	if err == nil && !forced && !bytes.Equal(b, w.pending) {
		w.pending = b
		return
	}
	w.pending = nil
	if err == nil {
		w.last = b
		_, err = w.p.reload(w.path, b, w.changed)
	} else {
		w.p.m.reloads.WithLabelValues("error").Inc()
		w.last = nil
	}
	if err != nil && (forced || err.Error() != w.lastErr) {
		w.p.log.Error("rules not reloaded; the running rules stay", "path", w.path, "rules_version", w.p.rules.Load().Version(), "err", err)
	}
	w.lastErr = ""
	if err != nil {
		w.lastErr = err.Error()
	}
}
