package detect

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// LogLimiter keeps an outage from flooding the log: of each cause it writes the first line at
// once and at most perWindow lines a window in all, counts the rest, and when the window is over
// writes one line saying how many it held back. Without it, a broker outage writes a line for
// every partition every retry (about 170 lines in 30 s for one instance).
//
// A cause is a string the caller chooses: the same cause for lines that say the same thing, e.g.
// the message and the error with partition numbers and ports left out. Safe for concurrent use.
type LogLimiter struct {
	log       *slog.Logger
	perWindow int
	window    time.Duration
	now       func() time.Time

	mu     sync.Mutex
	causes map[string]*causeWindow
}

// causeWindow is one cause's current window.
type causeWindow struct {
	start      time.Time
	logged     int
	suppressed int
	level      slog.Level
	msg        string
}

// NewLogLimiter returns a limiter that writes to log at most perWindow lines of each cause per
// window (perWindow at least 1), reading the time from now.
func NewLogLimiter(log *slog.Logger, perWindow int, window time.Duration, now func() time.Time) *LogLimiter {
	return &LogLimiter{log: log, perWindow: max(perWindow, 1), window: window, now: now, causes: map[string]*causeWindow{}}
}

// Log writes msg and args at level, unless cause has had its lines this window: then it counts it.
func (l *LogLimiter) Log(ctx context.Context, level slog.Level, cause, msg string, args ...any) {
	now := l.now()
	l.mu.Lock()
	c := l.causes[cause]
	if c != nil && !now.Before(c.start.Add(l.window)) {
		l.summarize(ctx, cause, c)
		c = nil
	}
	if c == nil {
		c = &causeWindow{start: now}
		l.causes[cause] = c
	}
	c.level, c.msg = level, msg
	write := c.logged < l.perWindow
	if write {
		c.logged++
	} else {
		c.suppressed++
	}
	l.mu.Unlock()
	if write {
		l.log.Log(ctx, level, msg, args...)
	}
}

// Flush writes the summary of every cause whose window is over and forgets those causes, so that
// the next line of one is written at once. Call it now and then (Consume does, every few seconds)
// so that the count of an outage that ended is written too.
func (l *LogLimiter) Flush(ctx context.Context) { l.flush(ctx, false) }

// FlushAll writes the summary of every cause, its window over or not, and forgets them all: when
// nothing more will be logged through l.
func (l *LogLimiter) FlushAll(ctx context.Context) { l.flush(ctx, true) }

func (l *LogLimiter) flush(ctx context.Context, all bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for cause, c := range l.causes {
		if all || !now.Before(c.start.Add(l.window)) {
			l.summarize(ctx, cause, c)
			delete(l.causes, cause)
		}
	}
}

// summarize writes how many lines of cause were held back, if any. l.mu is held: the summary is
// written before any line of the cause's next window.
func (l *LogLimiter) summarize(ctx context.Context, cause string, c *causeWindow) {
	if c.suppressed == 0 {
		return
	}
	l.log.Log(ctx, c.level, c.msg+"; suppressed similar", "suppressed", c.suppressed,
		"since", c.start, "within", l.window.String(), "cause", cause)
}
