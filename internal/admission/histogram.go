package admission

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram counts latency samples in log-linear buckets: 16 buckets per
// power of two, so a bucket is at most 1/16 (6 %) of its value wide, from
// 1 ns to about 18 minutes. Adding a sample is one atomic add and no lock,
// so every completing request can record one; the adaptive limit drains it
// once per sample window. This is the same trade as HdrHistogram's, at a
// fixed precision that is ample for a latency ratio.
type histogram struct {
	counts [histBuckets]atomic.Uint64
}

const (
	subBits     = 4
	subBuckets  = 1 << subBits // per power of two
	maxExponent = 36           // 32 << 36 ns ≈ 37 minutes: the last bucket's top
	histBuckets = (maxExponent + 2) * subBuckets
)

// bucketOf returns the bucket of a duration in nanoseconds.
func bucketOf(ns uint64) int {
	if ns < subBuckets {
		return int(ns)
	}
	e := bits.Len64(ns) - subBits - 1 // ns>>e is in [16, 32)
	if e > maxExponent {
		return histBuckets - 1
	}
	return e*subBuckets + int(ns>>e)
}

// bucketValue returns the middle of bucket i, in nanoseconds.
func bucketValue(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	e := i/subBuckets - 1
	m := uint64(i%subBuckets + subBuckets)
	return m<<e + (uint64(1)<<e)/2
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))].Add(1)
}

// drain returns the q-quantile (0 < q ≤ 1) of the samples counted since
// the last drain and how many there were, and empties the histogram.
// Samples added while it drains count in this drain or the next.
func (h *histogram) drain(q float64) (time.Duration, uint64) {
	var snap [histBuckets]uint64
	var total uint64
	for i := range h.counts {
		snap[i] = h.counts[i].Swap(0)
		total += snap[i]
	}
	if total == 0 {
		return 0, 0
	}
	// The rank of the q-quantile among total samples, 1-based: the
	// smallest sample with at least q·total samples at or below it.
	rank := uint64(q*float64(total) + 0.999999)
	rank = min(max(rank, 1), total)
	var seen uint64
	for i, c := range snap {
		seen += c
		if seen >= rank {
			return time.Duration(bucketValue(i)), total
		}
	}
	return time.Duration(bucketValue(histBuckets - 1)), total
}

// reset empties the histogram.
func (h *histogram) reset() {
	for i := range h.counts {
		h.counts[i].Store(0)
	}
}
