package main

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	const mb = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		want        int64
	}{
		{16 * mb, 128 * mb, 700},  // the next collection at the floor
		{64 * mb, 128 * mb, 100},  // half the floor live: Go's default
		{300 * mb, 128 * mb, 100}, // above the floor: never below Go's default
		{2 * mb, 128 * mb, 3200},  // the runtime's minimum goal, 4 MiB × 32, at the floor
		{1024, 128 * mb, 3200},
		{1 * mb, 8 * mb, 200}, // a small floor: the minimum goal (4 MiB × 2) at the floor
		{0, 128 * mb, 100},
	} {
		if got := percentFor(c.live, c.floor); got != c.want {
			t.Errorf("percentFor(%d MiB live, %d MiB floor) = %d, want %d", c.live/mb, c.floor/mb, got, c.want)
		}
	}
}

// After a collection the floor sets the percent from what is live, and again after each later
// one; stopped, the percent is Go's default again.
func TestHeapFloorPacesEachCollection(t *testing.T) {
	paced := make(chan [2]int64, 16)
	stop := startHeapFloorFn(512, func(live uint64, percent int64) {
		select {
		case paced <- [2]int64{int64(live), percent}:
		default:
		}
	})
	defer stop()
	for round := range 2 { // the finalizer arms again: a second collection paces too
		runtime.GC()
		select {
		case p := <-paced:
			live, percent := p[0], p[1]
			if want := percentFor(uint64(live), 512<<20); percent < want-want/8 || percent > want+want/8 {
				t.Errorf("round %d: %d bytes live: percent %d, want about %d", round, live, percent, want)
			}
			if percent <= 100 {
				t.Errorf("round %d: a test's small heap under a 512 MiB floor got percent %d, want above 100", round, percent)
			}
			if got := debug.SetGCPercent(int(percent)); int64(got) != percent {
				t.Errorf("round %d: the runtime's percent is %d, the floor says it set %d", round, got, percent)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: no pacing 30 s after a collection", round)
		}
	}
	stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("stopped, the percent is %d, want 100", got)
	}
}
