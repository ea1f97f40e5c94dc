package rollout

import (
	"math/rand/v2"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// TestHistogramLayoutMatchesHdrHistogram checks that the atomic histogram
// indexes values exactly as HdrHistogram does, so an exported sub-window is
// the histogram HdrHistogram would have recorded.
func TestHistogramLayoutMatchesHdrHistogram(t *testing.T) {
	ref := hdrhistogram.New(histLowest, histHighest, histSigFigs)
	if n := len(ref.Export().Counts); n != histLen {
		t.Fatalf("hdrhistogram counts length %d, want %d", n, histLen)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	values := []int64{0, 1, 2, 127, 128, 255, 256, 257, 511, 512, 1000, 99_999, histHighest - 1, histHighest}
	for range 5000 {
		values = append(values, int64(rng.ExpFloat64()*float64(rng.IntN(1_000_000)+1)))
	}
	for _, v := range values {
		if v > histHighest {
			continue
		}
		h := hdrhistogram.New(histLowest, histHighest, histSigFigs)
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
		want := -1
		for i, n := range h.Export().Counts {
			if n != 0 {
				want = i
			}
		}
		if got := histIndex(v); got != want {
			t.Fatalf("index of %d µs = %d, hdrhistogram's %d", v, got, want)
		}
	}
	var a atomicHist
	a.record(3 * time.Millisecond)
	a.record(80 * time.Second) // clamped
	counts := make([]int64, histLen)
	if total := a.addTo(counts); total != 2 {
		t.Fatalf("total %d, want 2", total)
	}
	h := export(counts)
	if p50 := h.ValueAtQuantile(50); h.TotalCount() != 2 || h.Max() < histHighest || p50 < 2990 || p50 > 3010 {
		t.Fatalf("exported histogram: total %d, max %d, p50 %d", h.TotalCount(), h.Max(), h.ValueAtQuantile(50))
	}
}
