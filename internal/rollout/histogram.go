package rollout

import (
	"math/bits"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// The histograms of a rollout use HdrHistogram's bucket layout for values in
// µs from 1 µs to 60 s with 2 significant digits (1 % resolution), so that a
// sub-window exports to an hdrhistogram.Histogram without any rebinning and
// package compare reads it as it reads a bench run log.
const (
	histLowest  = 1
	histHighest = 60_000_000 // µs: 60 s, longer values are recorded as 60 s
	histSigFigs = 2

	// With 2 significant digits HdrHistogram uses 256 sub-buckets (a
	// half-count magnitude of 7) and no unit shift for a lowest value of 1.
	subHalfMag  = 7
	subMask     = 1<<(subHalfMag+1) - 1
	histBuckets = 19 // doublings of 256 needed to pass histHighest
	histLen     = (histBuckets + 1) << subHalfMag
)

// atomicHist is one sub-window's histogram: HdrHistogram's counts, held in
// atomic 32-bit counters so that any number of goroutines record into it
// without a lock. 2 560 counters, 10 KiB. A counter wraps after 4·10⁹ values in
// one bucket of one sub-window, far beyond any request rate.
type atomicHist struct {
	counts [histLen]atomic.Uint32
}

// histIndex is HdrHistogram's counts index of v µs for the layout above.
func histIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v > histHighest {
		v = histHighest
	}
	bucket := 64 - bits.LeadingZeros64(uint64(v|subMask)) - (subHalfMag + 1)
	sub := int(v >> uint(bucket))
	return (bucket+1)<<subHalfMag + sub - 1<<subHalfMag
}

func (h *atomicHist) record(d time.Duration) {
	h.counts[histIndex(d.Microseconds())].Add(1)
}

// reset zeroes the counters. Atomic stores, because a request that read the
// sub-window index just before it rotated may still be recording.
func (h *atomicHist) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
}

// addTo adds the counters into dst (histLen long) and returns their sum.
func (h *atomicHist) addTo(dst []int64) int64 {
	var total int64
	for i := range h.counts {
		if n := h.counts[i].Load(); n != 0 {
			dst[i] += int64(n)
			total += int64(n)
		}
	}
	return total
}

// export builds an hdrhistogram.Histogram from dense counts (histLen long).
func export(counts []int64) *hdrhistogram.Histogram {
	return hdrhistogram.Import(&hdrhistogram.Snapshot{
		LowestTrackableValue:  histLowest,
		HighestTrackableValue: histHighest,
		SignificantFigures:    histSigFigs,
		Counts:                counts,
	})
}
