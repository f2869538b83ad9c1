package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// fakeClock is a time the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(perWindow int) (*LogLimiter, *bytes.Buffer, *fakeClock) {
	var buf bytes.Buffer
	clock := &fakeClock{t: time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)}
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return NewLogLimiter(log, perWindow, time.Minute, clock.now), &buf, clock
}

// logLine is what the tests read of a JSON log line.
type logLine struct {
	Level      string `json:"level"`
	Msg        string `json:"msg"`
	Suppressed int    `json:"suppressed"`
	Cause      string `json:"cause"`
	Partition  int    `json:"partition"`
}

func (l logLine) String() string { return l.Level + " " + l.Msg }

func (l logLine) summary(msg string) bool { return l.Msg == msg+"; suppressed similar" }

func logLines(buf *bytes.Buffer) []logLine { return parseLogLines(buf.String()) }

func parseLogLines(s string) []logLine {
	var out []logLine
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l == "" {
			continue
		}
		var ll logLine
		if err := json.Unmarshal([]byte(l), &ll); err != nil {
			panic(err)
		}
		out = append(out, ll)
	}
	return out
}

func TestLogLimiterWritesTheFirstLinesOfACauseAndCountsTheRest(t *testing.T) {
	lim, buf, clock := newTestLimiter(3)
	ctx := context.Background()
	// A broker outage: every partition fails every 2 s for 90 s.
	for range 45 {
		for p := range 6 {
			lim.Log(ctx, slog.LevelError, "refused", "consumer group", "partition", p)
		}
		clock.add(2 * time.Second)
	}
	lim.Flush(ctx) // 90 s: the second window (from 60 s) is not over yet
	lines := logLines(buf)
	want := []string{"consumer group", "consumer group", "consumer group", // the first window
		"consumer group; suppressed similar",                 // its summary, written when the cause came back
		"consumer group", "consumer group", "consumer group"} // the second window
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d: %v", len(lines), len(want), lines)
	}
	for i, l := range lines {
		if l.Msg != want[i] || l.Level != "ERROR" {
			t.Errorf("line %d: %s, want ERROR %s", i, l, want[i])
		}
	}
	if lines[0].Partition != 0 || lines[2].Partition != 2 {
		t.Errorf("the lines written are not the first ones: %+v", lines[:3])
	}
	// 30 rounds of 6 in the first minute, 3 of them written.
	if s := lines[3]; s.Suppressed != 30*6-3 || s.Cause != "refused" {
		t.Errorf("summary %+v, want 177 suppressed of cause refused", s)
	}

	// The outage ends at 90 s: the second window's count is written once it is over, by Flush.
	buf.Reset()
	clock.add(29 * time.Second)
	lim.Flush(ctx)
	if lines := logLines(buf); len(lines) != 0 {
		t.Fatalf("flushed before the window was over: %v", lines)
	}
	clock.add(time.Second)
	lim.Flush(ctx)
	lines = logLines(buf)
	if len(lines) != 1 || !lines[0].summary("consumer group") || lines[0].Suppressed != 15*6-3 {
		t.Fatalf("after the outage: %+v, want one summary of 87", lines)
	}
	lim.Flush(ctx)
	if lines := logLines(buf); len(lines) != 1 {
		t.Errorf("a summary was written twice: %v", lines)
	}

	// Forgotten: the next failure is written at once.
	buf.Reset()
	clock.add(time.Hour)
	lim.Log(ctx, slog.LevelError, "refused", "consumer group")
	if lines := logLines(buf); len(lines) != 1 || lines[0].Msg != "consumer group" {
		t.Errorf("a new outage: %v, want its first line", lines)
	}
}

func TestLogLimiterKeepsCausesApart(t *testing.T) {
	lim, buf, clock := newTestLimiter(1)
	ctx := context.Background()
	for range 10 {
		lim.Log(ctx, slog.LevelError, "refused", "consumer group")
		lim.Log(ctx, slog.LevelWarn, "eof", "consumer group")
		lim.Log(ctx, slog.LevelError, "join refused", "consume; joining again")
		clock.add(time.Second)
	}
	clock.add(time.Minute)
	lim.Flush(ctx)
	lines := logLines(buf)
	got := map[string]int{}
	for _, l := range lines {
		got[l.Level+" "+l.Msg+" "+l.Cause]++
		if strings.HasSuffix(l.Msg, "suppressed similar") && l.Suppressed != 9 {
			t.Errorf("%s: %d suppressed, want 9", l, l.Suppressed)
		}
	}
	want := map[string]int{
		"ERROR consumer group ": 1, "ERROR consumer group; suppressed similar refused": 1,
		"WARN consumer group ": 1, "WARN consumer group; suppressed similar eof": 1,
		"ERROR consume; joining again ": 1, "ERROR consume; joining again; suppressed similar join refused": 1,
	}
	if len(got) != len(want) {
		t.Errorf("lines %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%q written %d times, want %d (all: %v)", k, got[k], n, got)
		}
	}
}

func TestLogLimiterWritesNoSummaryWhenNothingWasHeldBack(t *testing.T) {
	lim, buf, clock := newTestLimiter(3)
	ctx := context.Background()
	lim.Log(ctx, slog.LevelError, "c", "once")
	lim.Log(ctx, slog.LevelError, "c", "once")
	clock.add(2 * time.Minute)
	lim.Flush(ctx)
	lim.Log(ctx, slog.LevelError, "c", "once")
	if lines := logLines(buf); len(lines) != 3 {
		t.Errorf("%v, want the 3 lines and no summary", lines)
	}
}
