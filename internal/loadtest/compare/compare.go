package compare

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

// Options tune a comparison. The zero value is usable: every zero field takes
// its default.
type Options struct {
	// Phase is the run log phase to compare. Default runlog.Total.
	Phase string
	// Confidence is the coverage of the confidence intervals, in (0, 1).
	// Default 0.95.
	Confidence float64
	// Alpha is the significance level of the KS verdict, in (0, 1).
	// Default 0.05.
	Alpha float64
	// Resamples is the number of bootstrap resamples (for the intervals) and
	// of block permutations (for the p-value). Default 2000.
	Resamples int
	// BlockLen is the number of consecutive intervals resampled together.
	// Default 0: the slice length of interleaved runs (both logs carry
	// runlog.MetaBlockIntervals, equal), else chosen from the data (see the
	// package doc).
	BlockLen int
	// Seed seeds the resampling; equal seeds give equal results. Default 0
	// (a fixed seed, not a random one).
	Seed uint64
}

func (o Options) withDefaults() (Options, error) {
	if o.Phase == "" {
		o.Phase = runlog.Total
	}
	if o.Confidence == 0 {
		o.Confidence = 0.95
	}
	if o.Alpha == 0 {
		o.Alpha = 0.05
	}
	if o.Resamples == 0 {
		o.Resamples = 2000
	}
	switch {
	case !(o.Confidence > 0 && o.Confidence < 1):
		return o, fmt.Errorf("confidence %v: want a value between 0 and 1", o.Confidence)
	case !(o.Alpha > 0 && o.Alpha < 1):
		return o, fmt.Errorf("alpha %v: want a value between 0 and 1", o.Alpha)
	case o.Resamples < 10:
		return o, fmt.Errorf("resamples %d: want at least 10", o.Resamples)
	case o.BlockLen < 0:
		return o, fmt.Errorf("block length %d: want 0 (automatic) or more", o.BlockLen)
	}
	return o, nil
}

// Result is a comparison of run B against run A. Latencies are in
// microseconds, as in the run log.
type Result struct {
	Phase      string  `json:"phase"`
	Confidence float64 `json:"confidence"`
	Alpha      float64 `json:"alpha"`
	Resamples  int     `json:"resamples"`
	// BlockLen is the block length used, in intervals.
	BlockLen int `json:"block_len_intervals"`
	A        Run `json:"a"`
	B        Run `json:"b"`
	// Stats are P50, P90, P99, P99.9 and the mean, in that order.
	Stats []Stat `json:"stats"`
	KS    KS     `json:"ks"`
	// Notes are caveats a reader should see (too few intervals, ...).
	Notes []string `json:"notes,omitempty"`
}

// Run describes one side of a comparison.
type Run struct {
	// Count is the number of recorded latencies in the phase.
	Count int64 `json:"count"`
	// Intervals is the number of interval histograms of the phase.
	Intervals int `json:"intervals"`
	// Blocks is the number of blocks the run was cut into for the test.
	Blocks int `json:"blocks"`
}

// Stat is one statistic of both runs and its difference.
type Stat struct {
	// Name is "p50", "p90", "p99", "p99.9" or "mean".
	Name string `json:"name"`
	// A and B are the statistic of each run, µs.
	A float64 `json:"a_us"`
	B float64 `json:"b_us"`
	// Delta is B − A, µs; DeltaPct is Delta relative to A, in percent.
	Delta    float64 `json:"delta_us"`
	DeltaPct float64 `json:"delta_pct"`
	// Low and High bound the confidence interval of Delta, µs.
	Low  float64 `json:"ci_low_us"`
	High float64 `json:"ci_high_us"`
}

// KS is the two-sample Kolmogorov–Smirnov test of B against A.
type KS struct {
	// D is the largest gap between the two empirical distribution functions.
	D float64 `json:"d"`
	// P is the block-permutation p-value (see the package doc).
	P float64 `json:"p"`
	// ClassicalP is the i.i.d. asymptotic p-value, for contrast only.
	ClassicalP float64 `json:"classical_p"`
	// Different is P < Alpha.
	Different bool `json:"different"`
	// MinP is the smallest p-value the permutation test could give here.
	MinP float64 `json:"min_p"`
	// Deals is the number of block deals tried; Exact is true when they are
	// all the distinct deals (otherwise they are drawn at random).
	Deals int  `json:"deals"`
	Exact bool `json:"exact"`
}

// statNames name Quantiles followed by the mean.
var statNames = []string{"p50", "p90", "p99", "p99.9", "mean"}

// Compare compares run b against run a.
func Compare(a, b *runlog.Log, opt Options) (*Result, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if opt.BlockLen == 0 {
		opt.BlockLen = sliceBlocks(a, b)
	}
	ia, ib := a.Phase(opt.Phase), b.Phase(opt.Phase)
	if len(ia) == 0 || len(ib) == 0 {
		return nil, fmt.Errorf("phase %q: a run has no intervals of it", opt.Phase)
	}
	ha, hb := make([]*hdrhistogram.Histogram, len(ia)), make([]*hdrhistogram.Histogram, len(ib))
	for i, iv := range ia {
		ha[i] = iv.Hist
	}
	for i, iv := range ib {
		hb[i] = iv.Hist
	}
	return compareIntervals(ha, hb, opt)
}

// Intervals compares run b against run a given as their interval
// histograms in time order (one per interval, nil or empty for an interval
// without values), values in µs, all with the same bucket geometry. It is
// Compare without a run log: opt.Phase only labels the Result, and with
// opt.BlockLen 0 the block length is chosen from the data. The live
// comparison of a rollout (package rollout) calls it with one histogram per
// sub-window.
func Intervals(a, b []*hdrhistogram.Histogram, opt Options) (*Result, error) {
	opt, err := opt.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(a) == 0 || len(b) == 0 {
		return nil, errors.New("a run has no intervals")
	}
	return compareIntervals(a, b, opt)
}

func compareIntervals(a, b []*hdrhistogram.Histogram, opt Options) (*Result, error) {
	hists := make([][]bar, 0, len(a)+len(b))
	for _, h := range a {
		hists = append(hists, bars(h))
	}
	for _, h := range b {
		hists = append(hists, bars(h))
	}
	g, cs := newGrid(hists)
	return compareCounts(g, cs[:len(a)], cs[len(a):], opt)
}

func compareCounts(g *grid, a, b []counts, opt Options) (*Result, error) {
	size := len(g.upper)
	ma, mb := merge(size, a), merge(size, b)
	if ma.total == 0 || mb.total == 0 {
		return nil, errors.New("a run recorded no latencies in the phase")
	}
	r := &Result{
		Phase: opt.Phase, Confidence: opt.Confidence, Alpha: opt.Alpha, Resamples: opt.Resamples,
		A: Run{Count: ma.total, Intervals: len(a)},
		B: Run{Count: mb.total, Intervals: len(b)},
	}
	dep := measureDependence(g, a, b)
	r.BlockLen = opt.BlockLen
	if r.BlockLen == 0 {
		r.BlockLen = dep.blockLen(min(len(a), len(b)))
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x70656e73746f636b)) // "penstock"

	// Point estimates.
	da, db := make([]int64, size), make([]int64, size)
	ma.addTo(da)
	mb.addTo(db)
	sa, sb := make([]float64, len(statNames)), make([]float64, len(statNames))
	summarize(g, da, ma.total, sa)
	summarize(g, db, mb.total, sb)

	// Confidence intervals: circular block bootstrap of each run.
	deltas := make([][]float64, len(statNames))
	for i := range deltas {
		deltas[i] = make([]float64, 0, opt.Resamples)
	}
	ra, rb := make([]float64, len(statNames)), make([]float64, len(statNames))
	for range opt.Resamples {
		na := circularResample(rng, a, r.BlockLen, da)
		nb := circularResample(rng, b, r.BlockLen, db)
		summarize(g, da, na, ra)
		summarize(g, db, nb, rb)
		for i := range statNames {
			deltas[i] = append(deltas[i], rb[i]-ra[i])
		}
	}
	tail := (1 - opt.Confidence) / 2
	for i, name := range statNames {
		s := Stat{Name: name, A: sa[i], B: sb[i], Delta: sb[i] - sa[i]}
		if sa[i] != 0 {
			s.DeltaPct = 100 * s.Delta / sa[i]
		}
		slices.Sort(deltas[i])
		s.Low = quantileSorted(deltas[i], tail)
		s.High = quantileSorted(deltas[i], 1-tail)
		r.Stats = append(r.Stats, s)
	}

	// KS test: permutation of blocks pooled from both runs.
	ba, bb := blocks(size, a, r.BlockLen), blocks(size, b, r.BlockLen)
	r.A.Blocks, r.B.Blocks = len(ba), len(bb)
	clear(da)
	clear(db)
	ma.addTo(da)
	mb.addTo(db)
	r.KS.D = ksDense(da, ma.total, db, mb.total)
	r.KS.ClassicalP = ClassicalP(r.KS.D, ma.total, mb.total)
	r.KS.P, r.KS.Deals, r.KS.Exact = permutationP(rng, size, ba, bb, r.KS.D, opt.Resamples)
	r.KS.Different = r.KS.P < opt.Alpha
	r.KS.MinP = minP(len(ba), len(bb), opt.Resamples)
	if r.KS.MinP >= opt.Alpha {
		r.Notes = append(r.Notes, fmt.Sprintf("the runs are too short for the block test: %d+%d blocks of %d intervals cannot give p < %g; run longer", len(ba), len(bb), r.BlockLen, opt.Alpha))
	}
	return r, nil
}

// circularResample fills dense with a circular block bootstrap resample of
// ivs (blocks of l consecutive intervals, wrapping around) as long as ivs, and
// returns its total count.
func circularResample(rng *rand.Rand, ivs []counts, l int, dense []int64) int64 {
	clear(dense)
	n := len(ivs)
	var total int64
	for filled := 0; filled < n; {
		start := rng.IntN(n)
		for k := 0; k < l && filled < n; k++ {
			c := &ivs[(start+k)%n]
			c.addTo(dense)
			total += c.total
			filled++
		}
	}
	return total
}

// blocks cuts ivs into consecutive blocks of about l intervals (the
// remainder spread over the blocks) and merges each block.
func blocks(size int, ivs []counts, l int) []counts {
	k := max(1, len(ivs)/l)
	out := make([]counts, k)
	for i := range k {
		out[i] = merge(size, ivs[i*len(ivs)/k:(i+1)*len(ivs)/k])
	}
	return out
}

// permutationP deals the pooled blocks of a and b into groups of len(a) and
// len(b) blocks and returns the share of deals whose KS statistic is at
// least d, and the number of deals tried. When there are at most resamples distinct deals it tries every
// one (an exact test); otherwise it draws resamples deals at random and counts
// the observed deal as one of them.
func permutationP(rng *rand.Rand, size int, a, b []counts, d float64, resamples int) (p float64, deals int, exact bool) {
	pool := append(slices.Clone(a), b...)
	all := make([]int64, size)
	var total int64
	for i := range pool {
		pool[i].addTo(all)
		total += pool[i].total
	}
	ga, gb := make([]int64, size), make([]int64, size)
	// Ties: D is a ratio of integers, so equal statistics may differ in the
	// last bits.
	const eps = 1e-12
	atLeast := func(group []int) bool {
		clear(ga)
		var na int64
		for _, i := range group {
			pool[i].addTo(ga)
			na += pool[i].total
		}
		for i := range gb {
			gb[i] = all[i] - ga[i]
		}
		return ksDense(ga, na, gb, total-na) >= d-eps
	}
	group := make([]int, len(a))
	if binomial(len(pool), len(a)) <= float64(resamples) {
		hits := 0
		for i := range group {
			group[i] = i
		}
		for {
			deals++
			if atLeast(group) {
				hits++
			}
			// Next combination in lexicographic order.
			i := len(group) - 1
			for i >= 0 && group[i] == len(pool)-len(group)+i {
				i--
			}
			if i < 0 {
				break
			}
			group[i]++
			for j := i + 1; j < len(group); j++ {
				group[j] = group[j-1] + 1
			}
		}
		return float64(hits) / float64(deals), deals, true
	}
	order := make([]int, len(pool))
	for i := range order {
		order[i] = i
	}
	hits := 1
	for range resamples {
		// A partial Fisher–Yates shuffle picks group A's blocks.
		for i := range group {
			j := i + rng.IntN(len(order)-i)
			order[i], order[j] = order[j], order[i]
		}
		copy(group, order[:len(group)])
		if atLeast(group) {
			hits++
		}
	}
	return float64(hits) / float64(resamples+1), resamples, false
}

// dependence is the autocorrelation structure of a pair of runs, measured
// on the per-interval share of requests at or below the pooled median.
type dependence struct {
	acov []float64 // pooled autocovariance by lag
	lag  int       // m̂: the lag after which autocorrelation is insignificant
}

// blockLen picks the block length for runs of at least n intervals: at least
// ⌈√n⌉ and 2·m̂, at most n/4. See the package doc.
func (d dependence) blockLen(n int) int {
	l := int(math.Ceil(math.Sqrt(float64(n))))
	l = max(l, 2*d.lag)
	return max(1, min(l, n/4))
}

// measureDependence measures the per-interval series of a and b: the share of each
// interval's requests at or below the pooled median. The autocovariances of
// the two runs (each centred on its own mean) are pooled; m̂ is found by the
// lag search of Politis & White (2004): the smallest m such that the
// autocorrelations at lags m+1..m+K are all insignificant,
// |ρ| < 2·√(log₁₀(n)/n), with K = max(5, ⌈√log₁₀ n⌉).
func measureDependence(g *grid, a, b []counts) dependence {
	size := len(g.upper)
	all := merge(size, append(slices.Clone(a), b...))
	dense := make([]int64, size)
	all.addTo(dense)
	med, cum, target := 0, int64(0), rank(50, all.total)
	for i, n := range dense {
		cum += n
		if cum >= target {
			med = i
			break
		}
	}
	series := func(ivs []counts) []float64 {
		var xs []float64
		for _, c := range ivs {
			if c.total == 0 {
				continue
			}
			var below int64
			for j, i := range c.idx {
				if int(i) <= med {
					below += c.n[j]
				}
			}
			xs = append(xs, float64(below)/float64(c.total))
		}
		return xs
	}
	xa, xb := series(a), series(b)
	if min(len(xa), len(xb)) < 8 {
		return dependence{}
	}
	n := len(xa) + len(xb)
	maxLag := min(len(xa), len(xb)) / 2
	acov := make([]float64, maxLag+1)
	for _, xs := range [][]float64{xa, xb} {
		mean := 0.0
		for _, x := range xs {
			mean += x
		}
		mean /= float64(len(xs))
		for k := 0; k <= maxLag; k++ {
			for t := k; t < len(xs); t++ {
				acov[k] += (xs[t] - mean) * (xs[t-k] - mean)
			}
		}
	}
	for k := range acov {
		acov[k] /= float64(n)
	}
	d := dependence{acov: acov, lag: maxLag}
	if acov[0] == 0 {
		d.lag = 0
		return d
	}
	lg := math.Log10(float64(n))
	bound := 2 * math.Sqrt(lg/float64(n))
	kn := max(5, int(math.Ceil(math.Sqrt(lg))))
	for m := 0; m+1 <= maxLag; m++ {
		quiet := true
		for k := 1; k <= kn && m+k <= maxLag; k++ {
			if math.Abs(acov[m+k]/acov[0]) >= bound {
				quiet = false
				break
			}
		}
		if quiet {
			d.lag = m
			break
		}
	}
	return d
}

// quantileSorted is the q-quantile of sorted xs by linear interpolation.
func quantileSorted(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(xs)-1)
	i := int(pos)
	if i >= len(xs)-1 {
		return xs[len(xs)-1]
	}
	f := pos - float64(i)
	return xs[i]*(1-f) + xs[i+1]*f
}

// minP is the smallest p-value a permutation test of ka against kb blocks
// can give: one deal in all distinct deals (two when ka = kb, as swapping the
// groups leaves D unchanged), and 1/(resamples+1) when deals are drawn at
// random.
func minP(ka, kb, resamples int) float64 {
	deals := binomial(ka+kb, ka)
	exact := 1 / deals
	if ka == kb {
		exact *= 2
	}
	if deals <= float64(resamples) {
		return exact
	}
	return math.Max(1/float64(resamples+1), exact)
}

// binomial is C(n, k) as a float (it may be huge).
func binomial(n, k int) float64 {
	r := 1.0
	for i := 1; i <= k; i++ {
		r *= float64(n-k+i) / float64(i)
	}
	return r
}

// sliceBlocks returns the slice length, in intervals, of two logs joined
// from interleaved slices (runlog.Concat), or 0. Each slice is then the
// natural block: slices of A and B alternate in time, so under "A = B" they
// are exchangeable whatever the machine did meanwhile.
func sliceBlocks(la, lb *runlog.Log) int {
	va, vb := la.Meta[runlog.MetaBlockIntervals], lb.Meta[runlog.MetaBlockIntervals]
	if va == "" || va != vb {
		return 0
	}
	n, err := strconv.Atoi(va)
	if err != nil || n < 1 {
		return 0
	}
	return n
}
