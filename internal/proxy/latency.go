package proxy

import (
	"math"
	"sync/atomic"
	"time"
)

// Latency histogram shape: bucket 0 holds everything below latencyLow,
// bucket i ≥ 1 holds [latencyLow·2^((i-1)/4), latencyLow·2^(i/4)), each a
// fifth wider than the one before (19 %), the last everything above
// latencyLow·2^((latencyBuckets-2)/4) (100 µs to about 5.8 s).
const (
	latencyBuckets = 64
	latencyLow     = 100 * time.Microsecond
	// latencyMinSamples is how many observations an estimate needs: below
	// it, Estimate reports none.
	latencyMinSamples = 100
	// latencyDecayAt is the count at which every bucket is halved, so the
	// estimate follows the last few thousand responses rather than all
	// since the start.
	latencyDecayAt = 4096
	// latencyRefresh is how many observations pass between two
	// computations of the estimate.
	latencyRefresh = 32
)

// LatencyEstimator estimates a quantile of a route's response head
// latencies from a histogram of log-spaced buckets, with a resolution of
// one bucket (19 %). Observing costs two atomic adds; every
// latencyRefresh-th observation recomputes the estimate from the 64
// buckets. Old observations fade: at latencyDecayAt observations every
// bucket is halved. Concurrent observations may lose a count to a halving,
// which an estimate can afford. Safe for concurrent use.
type LatencyEstimator struct {
	q        float64
	counts   [latencyBuckets]atomic.Uint32
	n        atomic.Uint32
	estimate atomic.Int64 // nanoseconds, 0 until latencyMinSamples
}

// NewLatencyEstimator returns an estimator of the quantile q (0 < q < 1).
func NewLatencyEstimator(q float64) *LatencyEstimator { return &LatencyEstimator{q: q} }

// Observe records one latency.
func (e *LatencyEstimator) Observe(d time.Duration) {
	e.counts[latencyBucket(d)].Add(1)
	n := e.n.Add(1)
	if n == latencyDecayAt {
		for i := range e.counts {
			c := &e.counts[i]
			c.Store(c.Load() / 2)
		}
		e.n.Add(^uint32(latencyDecayAt/2 - 1)) // n -= latencyDecayAt/2
	}
	if n == latencyMinSamples || n > latencyMinSamples && n%latencyRefresh == 0 {
		e.estimate.Store(int64(e.compute()))
	}
}

// Estimate returns the current estimate, or 0 while fewer than
// latencyMinSamples latencies were observed.
func (e *LatencyEstimator) Estimate() time.Duration { return time.Duration(e.estimate.Load()) }

// compute returns the upper bound of the bucket holding the quantile.
func (e *LatencyEstimator) compute() time.Duration {
	var counts [latencyBuckets]uint32
	var total uint64
	for i := range e.counts {
		counts[i] = e.counts[i].Load()
		total += uint64(counts[i])
	}
	rank := uint64(math.Ceil(e.q * float64(total)))
	var seen uint64
	for i, c := range counts {
		seen += uint64(c)
		if seen >= rank {
			return latencyUpper(i)
		}
	}
	return latencyUpper(latencyBuckets - 1)
}

// latencyBucket is the bucket of d.
func latencyBucket(d time.Duration) int {
	if d < latencyLow {
		return 0
	}
	i := int(4*math.Log2(float64(d)/float64(latencyLow))) + 1
	return min(i, latencyBuckets-1)
}

// latencyUpper is the upper bound of bucket i.
func latencyUpper(i int) time.Duration {
	return time.Duration(float64(latencyLow) * math.Exp2(float64(i)/4))
}
