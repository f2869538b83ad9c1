package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
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

	// At shutdown, the counts of windows not yet over are written too.
	buf.Reset()
	for range 5 {
		lim.Log(ctx, slog.LevelError, "refused", "consumer group")
	}
	clock.add(time.Second)
	lim.FlushAll(ctx)
	lim.FlushAll(ctx)
	lines = logLines(buf)
	if len(lines) != 4 || !lines[3].summary("consumer group") || lines[3].Suppressed != 2 {
		t.Fatalf("at shutdown: %+v, want 3 lines and a summary of 2", lines)
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

// fakeGroup is a consumer group whose sessions the test scripts: each call of Consume runs the
// next step, which may send errors as sarama does and returns what the session ended with.
type fakeGroup struct {
	sarama.ConsumerGroup
	errs   chan error
	steps  []func() error
	calls  int
	closed bool
}

func newFakeGroup(steps ...func() error) *fakeGroup {
	return &fakeGroup{errs: make(chan error), steps: steps}
}

func (g *fakeGroup) Consume(ctx context.Context, _ []string, _ sarama.ConsumerGroupHandler) error {
	g.calls++
	if g.calls > len(g.steps) {
		return g.steps[len(g.steps)-1]()
	}
	return g.steps[g.calls-1]()
}

func (g *fakeGroup) Errors() <-chan error { return g.errs }

func (g *fakeGroup) Close() error {
	if !g.closed {
		g.closed = true
		close(g.errs)
	}
	return nil
}

// A broker outage as sarama reports it: every partition's fetch fails, then the join. Consume
// writes the first lines of each cause, whatever the partition, and the limiter counts the rest.
func TestConsumeRateLimitsAnOutage(t *testing.T) {
	lim, buf, clock := newTestLimiter(3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refused := errors.New("dial tcp 127.0.0.1:9092: connect: connection refused")
	outOfBrokers := fmt.Errorf("kafka: client has run out of available brokers to talk to: %w", refused)
	var g *fakeGroup
	fetchesFail := func() error {
		for range 50 {
			for p := range int32(6) {
				g.errs <- &sarama.ConsumerError{Topic: "payments", Partition: p, Err: outOfBrokers}
			}
		}
		return outOfBrokers
	}
	g = newFakeGroup(fetchesFail, fetchesFail, func() error { cancel(); return nil })
	if err := Consume(ctx, g, []string{"payments"}, nil, lim); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	if !g.closed {
		t.Error("the group was not closed")
	}
	clock.add(time.Minute)
	lim.Flush(context.Background())
	got := map[string]int{}
	for _, l := range logLines(buf) {
		got[l.Msg]++
		if l.summary("consumer group") && l.Suppressed != 600-3 {
			t.Errorf("summary: %d suppressed, want 597", l.Suppressed)
		}
	}
	want := map[string]int{"consumer group": 3, "consumer group; suppressed similar": 1, "consume; joining again": 2}
	if len(got) != len(want) {
		t.Errorf("lines %v, want %v", got, want)
	}
	for msg, n := range want {
		if got[msg] != n {
			t.Errorf("%q written %d times, want %d (all: %v)", msg, got[msg], n, got)
		}
	}
}

// A member fenced by another with its group instance id stops, whether the join was refused or a
// heartbeat reported it, rather than join again and fence the other in turn.
func TestConsumeStopsWhenFenced(t *testing.T) {
	tests := map[string]func(g *fakeGroup) []func() error{
		"join": func(*fakeGroup) []func() error {
			return []func() error{func() error { return sarama.ErrFencedInstancedId }}
		},
		"heartbeat": func(g *fakeGroup) []func() error {
			return []func() error{
				func() error { g.errs <- sarama.ErrFencedInstancedId; return nil },
				func() error { return nil }, // the session ended; the error is being read
			}
		},
	}
	for name, steps := range tests {
		t.Run(name, func(t *testing.T) {
			lim, _, _ := newTestLimiter(3)
			g := newFakeGroup()
			g.steps = steps(g)
			err := Consume(context.Background(), g, []string{"payments"}, nil, lim)
			if !errors.Is(err, sarama.ErrFencedInstancedId) || !strings.Contains(err.Error(), "kafka.group_instance_id") {
				t.Errorf("Consume returned %v, want the fencing explained", err)
			}
			if !g.closed {
				t.Error("the group was not closed")
			}
		})
	}
}
