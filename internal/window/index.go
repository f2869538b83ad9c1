package window

import (
	"slices"
	"sort"
	"sync/atomic"
	"unsafe"
)

// indexFrom is the shortest history, in entries, that results reads through an index rather than
// entry by entry.
const indexFrom = 64

// index answers read's questions about a history for a payment that is not in it and is no
// earlier than any payment it holds, without reading the history: the event times sorted, with
// running sums of the amounts, the latest time of each country, merchant and device tag, and the
// payment ids, which tell the new payments from the others. It is
// built from a history once and then grows with the payments appended to it, which the stream
// mostly sends in event-time order; a payment earlier than the latest, or one dropped that can
// still be counted, sends read back to the entries.
type index struct {
	n        int     // entries indexed
	times    []int64 // their event times, ascending
	cum      []int64 // cum[i]: the amounts, in hundredths, of times[:i]
	maxT     int64   // the latest event time, -1 for none
	country  map[uint16]int64
	merchant map[uint32]int64
	device   map[uint32]int64
	pids     map[[6]byte]struct{} // the payment id tags (no pointers: nothing for the collector)
	// buf holds the history's bytes, with room to grow, once the index has grown it: the history
	// that a batch makes is appended here in place rather than copied.
	buf []byte
}

// newIndex indexes a history.
func newIndex(history string) *index {
	n := len(history) / entrySize
	x := &index{times: make([]int64, 0, n+8), cum: make([]int64, 1, n+9), maxT: -1,
		country: map[uint16]int64{}, merchant: map[uint32]int64{}, device: map[uint32]int64{},
		pids: make(map[[6]byte]struct{}, n+8)}
	type timed struct{ t, amount int64 }
	es := make([]timed, n)
	for i := range n {
		e := history[i*entrySize : (i+1)*entrySize]
		es[i] = timed{int64(u32(e, 0)), int64(u32(e, 4))}
		x.see(e)
	}
	slices.SortFunc(es, func(a, b timed) int { return int(a.t - b.t) })
	for _, e := range es {
		x.times = append(x.times, e.t)
		x.cum = append(x.cum, x.cum[len(x.cum)-1]+e.amount)
	}
	x.n = n
	return x
}

// see takes an entry's time and tags.
func (x *index) see(e string) {
	x.pids[[6]byte([]byte(e[8:14]))] = struct{}{}
	t := int64(u32(e, 0))
	x.maxT = max(x.maxT, t)
	c, m, d := uint16(e[14])<<8|uint16(e[15]), u32(e, 16), u32(e, 20)
	if v, ok := x.country[c]; !ok || t > v {
		x.country[c] = t
	}
	if v, ok := x.merchant[m]; !ok || t > v {
		x.merchant[m] = t
	}
	if v, ok := x.device[d]; !ok || t > v {
		x.device[d] = t
	}
}

// holds reports whether the history has a payment with the id tag pid.
func (x *index) holds(pid []byte) bool {
	_, ok := x.pids[[6]byte(pid)]
	return ok
}

// grow returns the history with entries appended, in x's buffer, which it takes on for the history
// the first time. Only the batch that took x appends to it, past the end of every string of it
// that others may hold.
func (x *index) grow(history string, entries [][]byte) string {
	if len(entries) == 0 {
		return history
	}
	if len(x.buf) != len(history) || len(history) == 0 || unsafe.StringData(history) != unsafe.SliceData(x.buf) {
		x.buf = append(make([]byte, 0, 2*len(history)+len(entries)*entrySize), history...)
	}
	for _, e := range entries {
		x.buf = append(x.buf, e...)
	}
	return unsafe.String(unsafe.SliceData(x.buf), len(x.buf))
}

// add appends an entry no earlier than any indexed.
func (x *index) add(en []byte) {
	e := string(en)
	x.times = append(x.times, int64(u32(e, 0)))
	x.cum = append(x.cum, x.cum[len(x.cum)-1]+int64(u32(e, 4)))
	x.see(e)
	x.n++
}

// read returns what read would for a payment (its entry own) that is not in the history and no
// earlier than x.maxT: the aggregates, and the count of the window's payments before it.
func (x *index) read(own []byte, length, cutoff int64) (agg Aggregates, count int64) {
	e := string(own)
	t := int64(u32(e, 0))
	n := len(x.times)
	from := func(lo int64) int { return sort.Search(n, func(i int) bool { return x.times[i] >= max(lo, cutoff) }) }
	var sums [4]int64
	for k, h := range [4]int64{hour, day, week, month} {
		i := from(t - h + 1)
		c := int64(n - i)
		switch k {
		case 0:
			agg.Count1h = c
		case 1:
			agg.Count24h = c
		case 2:
			agg.Count7d = c
		case 3:
			agg.Count30d = c
		}
		sums[k] = x.cum[n] - x.cum[i]
	}
	agg.Sum1h, agg.Sum24h, agg.Sum7d, agg.Sum30d = float64(sums[0])/100, float64(sums[1])/100, float64(sums[2])/100, float64(sums[3])/100
	count = int64(n - from(t/length*length)) // every one is no later than t: in the window from its start
	// The payments read looks back to: from cutoff, within 30 days.
	lo := max(cutoff, t-month+1)
	agg.SincePrevious = -1
	if x.maxT >= lo {
		agg.SincePrevious = t - x.maxT
	}
	seen := func(v int64, ok bool) bool { return ok && v >= lo }
	c, m, d := uint16(e[14])<<8|uint16(e[15]), u32(e, 16), u32(e, 20)
	v, ok := x.country[c]
	agg.NewCountry = c != 0 && !seen(v, ok)
	v, ok = x.merchant[m]
	agg.NewMerchant = m != 0 && !seen(v, ok)
	v, ok = x.device[d]
	agg.NewDevice = d != 0 && !seen(v, ok)
	return agg, count
}

// indexOf is a card's index, owned by one batch at a time (see cardState.take).
type indexOf = atomic.Pointer[index]
