package compare

import (
	"slices"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// grid is the union of the histogram buckets that hold a value in any
// interval of either run, in ascending order. Runs written by runlog share one
// bucket geometry, so a bucket is identified by its highest equivalent value.
type grid struct {
	upper []int64   // highest equivalent value of each bucket, µs, ascending
	mid   []float64 // median equivalent value of each bucket, µs (for means)
}

// counts is one histogram's non-empty buckets as indexes into a grid.
type counts struct {
	idx   []int32
	n     []int64
	total int64
}

type bar struct{ from, to, n int64 }

// bars lists the non-empty buckets of h.
func bars(h *hdrhistogram.Histogram) []bar {
	if h == nil || h.TotalCount() == 0 {
		return nil
	}
	var out []bar
	for _, b := range h.Distribution() {
		if b.Count > 0 {
			out = append(out, bar{b.From, b.To, b.Count})
		}
	}
	return out
}

// newGrid builds the grid of every bucket in hists and returns each histogram
// as counts over it, in the order given.
func newGrid(hists [][]bar) (*grid, []counts) {
	lower := map[int64]int64{}
	for _, bs := range hists {
		for _, b := range bs {
			lower[b.to] = b.from
		}
	}
	g := &grid{upper: make([]int64, 0, len(lower))}
	for to := range lower {
		g.upper = append(g.upper, to)
	}
	slices.Sort(g.upper)
	index := make(map[int64]int32, len(g.upper))
	g.mid = make([]float64, len(g.upper))
	for i, to := range g.upper {
		index[to] = int32(i)
		from := lower[to]
		g.mid[i] = float64(from + (to-from+1)/2)
	}
	out := make([]counts, len(hists))
	for i, bs := range hists {
		c := counts{idx: make([]int32, len(bs)), n: make([]int64, len(bs))}
		for j, b := range bs {
			c.idx[j] = index[b.to]
			c.n[j] = b.n
			c.total += b.n
		}
		out[i] = c
	}
	return g, out
}

// addTo adds c into the dense vector dst (len = grid size).
func (c *counts) addTo(dst []int64) {
	for j, i := range c.idx {
		dst[i] += c.n[j]
	}
}

// merge returns the sum of cs as one sparse counts.
func merge(size int, cs []counts) counts {
	dense := make([]int64, size)
	for i := range cs {
		cs[i].addTo(dense)
	}
	return sparse(dense)
}

// sparse turns a dense vector into counts.
func sparse(dense []int64) counts {
	var c counts
	for i, n := range dense {
		if n != 0 {
			c.idx = append(c.idx, int32(i))
			c.n = append(c.n, n)
			c.total += n
		}
	}
	return c
}
