package proxy

import (
	"testing"
	"time"
)

// TestLatencyEstimator checks the P95 estimate against the definition of
// the quantile, within the resolution of one bucket (19 %): none before
// latencyMinSamples, the quantile of a known distribution, and an estimate
// that follows the latencies when they change.
func TestLatencyEstimator(t *testing.T) {
	ms := time.Millisecond
	uniform := func(e *LatencyEstimator, lo, hi time.Duration, n int) {
		for i := range n {
			e.Observe(lo + (hi-lo)*time.Duration(i%100)/99)
		}
	}
	tests := []struct {
		name   string
		feed   func(e *LatencyEstimator)
		lo, hi time.Duration // the estimate's bounds
	}{
		{name: "too few samples", feed: func(e *LatencyEstimator) { uniform(e, ms, 100*ms, latencyMinSamples-1) }},
		{name: "exactly the minimum", feed: func(e *LatencyEstimator) { uniform(e, 20*ms, 20*ms, latencyMinSamples) },
			lo: 20 * ms, hi: 24 * ms},
		{name: "uniform 1ms to 100ms", feed: func(e *LatencyEstimator) { uniform(e, ms, 100*ms, 1000) },
			lo: 95 * ms, hi: 95 * ms * 120 / 100},
		{name: "constant", feed: func(e *LatencyEstimator) { uniform(e, 20*ms, 20*ms, 500) }, lo: 20 * ms, hi: 24 * ms},
		{name: "below the lowest bucket", feed: func(e *LatencyEstimator) { uniform(e, 0, 50*time.Microsecond, 500) },
			lo: latencyLow, hi: latencyLow},
		{name: "above the highest bucket", feed: func(e *LatencyEstimator) { uniform(e, time.Minute, time.Minute, 500) },
			lo: latencyUpper(latencyBuckets - 1), hi: latencyUpper(latencyBuckets - 1)},
		{name: "follows a faster upstream", feed: func(e *LatencyEstimator) {
			uniform(e, 500*ms, 500*ms, 3000)
			uniform(e, 10*ms, 10*ms, 3*latencyDecayAt)
		}, lo: 10 * ms, hi: 12 * ms},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := NewLatencyEstimator(0.95)
			tc.feed(e)
			if got := e.Estimate(); got < tc.lo || got > tc.hi {
				t.Errorf("estimate %v, want within [%v, %v]", got, tc.lo, tc.hi)
			}
		})
	}
}

func BenchmarkLatencyObserve(b *testing.B) {
	e := NewLatencyEstimator(0.95)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := 3 * time.Millisecond
		for pb.Next() {
			e.Observe(d)
		}
	})
}
