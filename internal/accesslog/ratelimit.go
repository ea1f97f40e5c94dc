package accesslog

import "sync/atomic"

// window caps lines per clock second. It is a fixed window rather than a
// token bucket: the count resets when the wall-clock second changes, so at
// most max lines are kept in any one second (up to 2×max across a second
// boundary), which is what an operator sizing disk or ingest needs, and it
// costs one compare-and-swap per kept line with no lock.
type window struct {
	// state packs the second (low 32 bits of Unix time) in the high half
	// and the lines counted in that second in the low half, so that moving
	// to a new second and counting the first line in it are one atomic
	// step: two separate words would let a line be counted against the old
	// second after the reset.
	state atomic.Uint64
}

// allow counts a line at Unix second sec and reports whether it is within
// max for that second. max must be positive.
func (w *window) allow(sec int64, max int) bool {
	s := uint64(uint32(sec))
	for {
		old := w.state.Load()
		next := s<<32 | 1
		if old>>32 == s {
			n := old & 0xffffffff
			if n >= uint64(max) {
				return false
			}
			next = old + 1
		}
		if w.state.CompareAndSwap(old, next) {
			return true
		}
	}
}
