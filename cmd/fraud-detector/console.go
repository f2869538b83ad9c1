package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paysentry/fraud-detector/internal/api"
	"github.com/paysentry/fraud-detector/internal/console"
	"github.com/paysentry/fraud-detector/internal/lists"
	"github.com/paysentry/fraud-detector/internal/review"
	"github.com/paysentry/fraud-detector/internal/window"
)

// newConsole builds the analysts' console over the API server's tokens and actions. Its sessions
// are signed with a key derived from card.hmac_key, a secret every instance has, so that any
// instance accepts a session another signed.
func newConsole(cfg Config, srv *api.Server, reviews *review.Store, windows *window.Store, ls *lists.Store,
	reg prometheus.Gatherer, log *slog.Logger) (http.Handler, error) {
	mac := hmac.New(sha256.New, []byte(cfg.Card.HMACKey))
	mac.Write([]byte("fraud-detector console sessions"))
	var l console.Lists
	if ls != nil {
		l = ls
	}
	c, err := console.New(console.Config{SessionKey: mac.Sum(nil), SessionTTL: cfg.API.SessionTTL, Secure: cfg.API.SecureCookies,
		Known: srv.Known},
		srv.Authenticate, reviews, srv, windows, l, (&liveRates{reg: reg}).read, log)
	if err != nil {
		return nil, err
	}
	return c.Handler(), nil
}

// liveRates reads the stream's figures for the console's live strip from the metrics: payments
// and flagged payments a second over the time since the figures were last read (at least a
// second; until then the last rates), and the consumer lag.
type liveRates struct {
	reg prometheus.Gatherer

	mu                     sync.Mutex
	at                     time.Time
	consumed, flagged      float64 // the counters when last read
	perSecond, flaggedRate float64
}

func (l *liveRates) read(context.Context) console.LiveStats {
	var consumed, flagged, lag float64
	mfs, _ := l.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "fraud_payments_consumed_total":
				consumed += m.GetCounter().GetValue()
			case "fraud_decisions_total":
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "outcome" && lp.GetValue() == "flagged" {
						flagged += m.GetCounter().GetValue()
					}
				}
			case "fraud_consumer_lag":
				lag += m.GetGauge().GetValue()
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if elapsed := now.Sub(l.at).Seconds(); elapsed >= 1 {
		if !l.at.IsZero() {
			l.perSecond, l.flaggedRate = (consumed-l.consumed)/elapsed, (flagged-l.flagged)/elapsed
		}
		l.at, l.consumed, l.flagged = now, consumed, flagged
	}
	return console.LiveStats{PaymentsPerSecond: l.perSecond, FlaggedPerSecond: l.flaggedRate, Lag: int64(lag)}
}
