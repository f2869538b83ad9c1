package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// heapFloor paces Go's collector so that the heap may grow to floor bytes before a collection
// while what is live is small, and as GOGC=100 does once what is live is half the floor or more.
//
// Why: the service allocates about 5 KB a payment and keeps little (15–30 MB live on paygen's
// input, until the card histories' copies fill up), so at GOGC=100 it collects every 15–30 MB,
// dozens of times a second under load, and the collector took about a tenth of its CPU. A floor
// of 128 MB gives the same work a tenth of the collections.
//
// After each collection it reads what the collection left live and sets the GC percent to
// max(100, (floor-live)/live·100): the next collection comes at about the floor, or at twice what
// is live when that is more. The percent is only ever at or above Go's default, so the heap is
// never held smaller than GOGC=100 would hold it, and at most floor bytes larger.
type heapFloor struct {
	floor   uint64
	stopped atomic.Bool
	percent atomic.Int64 // the last percent set
	sample  []metrics.Sample
	paced   func(live uint64, percent int64) // for tests: after each pacing
}

// startHeapFloor starts pacing the collector to a floor of floorMB MiB, and returns what stops it
// (the percent goes back to 100). It does nothing, and returns a stop that does nothing, when
// floorMB is 0.
func startHeapFloor(floorMB int) (stop func()) {
	return startHeapFloorFn(floorMB, nil)
}

func startHeapFloorFn(floorMB int, paced func(live uint64, percent int64)) (stop func()) {
	if floorMB <= 0 {
		return func() {}
	}
	h := &heapFloor{floor: uint64(floorMB) << 20, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}, paced: paced}
	h.percent.Store(100)
	h.arm()
	return func() {
		h.stopped.Store(true)
		debug.SetGCPercent(100)
	}
}

// arm sets a finalizer on a new object that nothing keeps, so that the next collection runs it:
// each run paces the next collection and arms again.
func (h *heapFloor) arm() {
	sentinel := new([16]byte) // not tiny-allocated: a finalizer needs an object of its own
	runtime.SetFinalizer(sentinel, func(*[16]byte) {
		if h.stopped.Load() {
			return
		}
		h.pace()
		h.arm()
	})
}

// pace sets the percent from what the last collection left live.
func (h *heapFloor) pace() {
	metrics.Read(h.sample)
	if h.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	live := h.sample[0].Value.Uint64()
	p := percentFor(live, h.floor)
	// Only a change of more than an eighth: setting the percent has a cost of its own.
	if old := h.percent.Load(); p > old+old/8 || p < old-old/8 {
		h.percent.Store(p)
		debug.SetGCPercent(int(p))
	}
	if h.paced != nil {
		h.paced(live, h.percent.Load())
	}
}

// percentFor is the GC percent that puts the next collection at about floor bytes of heap, with
// live bytes live, and never below Go's default of 100. The runtime's smallest heap goal is 4 MiB
// scaled by the percent, so the percent is at most what puts that at the floor: a nearly empty
// heap (a few MB at start) must not raise the goal past it.
func percentFor(live, floor uint64) int64 {
	if live == 0 || live*2 >= floor {
		return 100
	}
	return max(100, min(int64((floor-live)*100/live), int64(floor*100/(4<<20))))
}
