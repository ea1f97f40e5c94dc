package proxy

import (
	"sync/atomic"
	"time"
)

// budgetSlots is the number of slots a budget's window is counted in: the
// window slides by a tenth of itself.
const budgetSlots = 10

// Budget bounds a route's retries to a share of its requests over a
// sliding window plus a floor: retries ≤ ratio × requests + floor, where
// floor is the minimum retry rate times the window (the retry budgets of
// Finagle and Linkerd, counted rather than kept as tokens). It is kept per
// route: a route's retries spend only its own requests' share, so no route
// can exhaust another's, and the pool behind several routes sees at most
// ratio more load plus the floors.
//
// Counts live in budgetSlots slots of window/budgetSlots, each one word
// holding the slot's number (its time divided by the slot width) in the
// high 32 bits and its count in the low 32: a slot reused for a later time
// is reset by the same compare-and-swap that counts in it, so the budget
// takes no lock and a request costs one atomic add.
//
// Methods are safe for concurrent use and allocate nothing.
type Budget struct {
	ratio float64
	floor float64
	width int64 // nanoseconds per slot

	requests [budgetSlots]atomic.Uint64
	retries  [budgetSlots]atomic.Uint64
}

// NewBudget returns a budget allowing percent retries per 100 requests
// plus minPerSecond retries a second, counted over window.
func NewBudget(percent, minPerSecond float64, window time.Duration) *Budget {
	width := int64(window / budgetSlots)
	if width < 1 {
		width = 1
	}
	return &Budget{ratio: percent / 100, floor: minPerSecond * window.Seconds(), width: width}
}

// Request counts one request at now (nanoseconds on any monotonic scale).
func (b *Budget) Request(now int64) { count(&b.requests, b.slot(now)) }

// Withdraw counts a retry at now and reports whether the budget allows it;
// a refused retry is not counted. Concurrent withdrawals never overdraw the
// budget: each counts itself first and takes itself back if the total then
// exceeds the budget, so two retries racing for the last unit may both be
// refused, never both allowed.
func (b *Budget) Withdraw(now int64) bool {
	slot := b.slot(now)
	count(&b.retries, slot)
	if float64(sum(&b.retries, slot)) <= b.ratio*float64(sum(&b.requests, slot))+b.floor {
		return true
	}
	uncount(&b.retries, slot)
	return false
}

// Usage returns the requests and retries counted in the window ending at
// now.
func (b *Budget) Usage(now int64) (requests, retries uint64) {
	slot := b.slot(now)
	return sum(&b.requests, slot), sum(&b.retries, slot)
}

func (b *Budget) slot(now int64) uint32 { return uint32(now / b.width) }

// count adds one to the slot numbered slot.
func count(ring *[budgetSlots]atomic.Uint64, slot uint32) {
	w := &ring[slot%budgetSlots]
	for {
		old := w.Load()
		if uint32(old>>32) == slot {
			// The common case: the slot is current. A concurrent reset
			// can only be for this same slot number, which leaves the
			// word's slot as is.
			w.Add(1)
			return
		}
		if w.CompareAndSwap(old, uint64(slot)<<32|1) {
			return
		}
	}
}

// uncount takes back one count from the slot numbered slot, unless the
// slot has since been reset for a later time (its count then no longer
// includes the one taken back).
func uncount(ring *[budgetSlots]atomic.Uint64, slot uint32) {
	w := &ring[slot%budgetSlots]
	for {
		old := w.Load()
		if uint32(old>>32) != slot || uint32(old) == 0 {
			return
		}
		if w.CompareAndSwap(old, old-1) {
			return
		}
	}
}

// sum adds the counts of the slots within the window ending with slot.
func sum(ring *[budgetSlots]atomic.Uint64, slot uint32) uint64 {
	var n uint64
	for i := range ring {
		w := ring[i].Load()
		if slot-uint32(w>>32) < budgetSlots {
			n += w & (1<<32 - 1)
		}
	}
	return n
}
