package compare

import (
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
	"github.com/penstock-dev/penstock/internal/loadtest/runlog/synthetic"
)

// mustLog generates a synthetic run log.
func mustLog(t *testing.T, s synthetic.Spec) *runlog.Log {
	t.Helper()
	l, err := synthetic.Log(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// drifting is a run whose seconds drift together: a lognormal body
// (median 5 ms) scaled by a correlated per-second factor, with an occasional
// 50 ms pause, as a shared machine shows.
func drifting(seed uint64) synthetic.Spec {
	return synthetic.Spec{
		Seconds: 60, Rate: 500,
		Dist:  synthetic.LogNormal(5*time.Millisecond, 0.5),
		Noise: 0.1, Rho: 0.5,
		PauseProb: 0.03, Pause: 50 * time.Millisecond,
		Seed: seed,
	}
}

func stat(t *testing.T, r *Result, name string) Stat {
	t.Helper()
	for _, s := range r.Stats {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no stat %q", name)
	return Stat{}
}

func within(got, want, relTol float64) bool {
	return math.Abs(got-want) <= relTol*math.Abs(want)
}

func TestPercentilesOfKnownDistributions(t *testing.T) {
	skipUnderRace(t)
	// Independent samples (no drift): the percentiles must match the
	// distributions' quantile functions within sampling error (200 000
	// samples) plus the 0.1% bucket resolution.
	ms := 1000.0
	median := 5 * ms
	cases := []struct {
		name string
		dist synthetic.Dist
		want map[string]float64 // µs
	}{
		{
			name: "exponential mean 10 ms",
			dist: synthetic.Exponential(10 * time.Millisecond),
			want: map[string]float64{
				"p50": 10 * ms * math.Ln2, "p90": 10 * ms * math.Log(10),
				"p99": 10 * ms * math.Log(100), "p99.9": 10 * ms * math.Log(1000), "mean": 10 * ms,
			},
		},
		{
			name: "lognormal median 5 ms sigma 0.5",
			dist: synthetic.LogNormal(5*time.Millisecond, 0.5),
			want: map[string]float64{
				"p50": median, "p90": median * math.Exp(0.5*1.2815516),
				"p99": median * math.Exp(0.5*2.3263479), "p99.9": median * math.Exp(0.5*3.0902323),
				"mean": median * math.Exp(0.5*0.5/2),
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := synthetic.Spec{Seconds: 100, Rate: 2000, Dist: tc.dist, Seed: 1}
			a := mustLog(t, s)
			s.Seed = 2
			s.Shift = 2 * time.Millisecond
			b := mustLog(t, s)
			r, err := Compare(a, b, Options{Resamples: 200})
			if err != nil {
				t.Fatal(err)
			}
			merged := a.Merged(runlog.Total)
			for i, name := range statNames {
				st := stat(t, r, name)
				if !within(st.A, tc.want[name], 0.03) {
					t.Errorf("A %s = %.0f µs, want %.0f µs ±3%%", name, st.A, tc.want[name])
				}
				// B is A's distribution shifted by 2 ms.
				if !within(st.B, tc.want[name]+2*ms, 0.03) {
					t.Errorf("B %s = %.0f µs, want %.0f µs ±3%%", name, st.B, tc.want[name]+2*ms)
				}
				// The same numbers HdrHistogram itself reports.
				var hdr float64
				if i < len(Quantiles) {
					hdr = float64(merged.ValueAtQuantile(Quantiles[i]))
				} else {
					hdr = merged.Mean()
				}
				if !within(st.A, hdr, 1e-9) {
					t.Errorf("A %s = %v, HdrHistogram says %v", name, st.A, hdr)
				}
				if st.Low > st.Delta || st.Delta > st.High {
					t.Errorf("%s: delta %.0f outside its own interval [%.0f, %.0f]", name, st.Delta, st.Low, st.High)
				}
			}
			// The body of the distribution is tight enough that the shift
			// lies inside the intervals of the median and the mean.
			for _, name := range []string{"p50", "mean"} {
				if st := stat(t, r, name); st.Low > 2*ms || st.High < 2*ms {
					t.Errorf("%s delta interval [%.0f, %.0f] misses the true 2000 µs shift", name, st.Low, st.High)
				}
			}
		})
	}
}

func TestMergeOfIntervals(t *testing.T) {
	// Intervals merged on the shared grid hold exactly what runlog's own
	// merge holds, across intervals whose value ranges do not overlap.
	l := mustLog(t, synthetic.Spec{Seconds: 5, Rate: 100, Dist: synthetic.Exponential(time.Millisecond), Noise: 1, Seed: 7})
	ivs := l.Phase(runlog.Total)
	hists := make([][]bar, len(ivs))
	for i, iv := range ivs {
		hists[i] = bars(iv.Hist)
	}
	g, cs := newGrid(hists)
	m := merge(len(g.upper), cs)
	want := l.Merged(runlog.Total)
	if m.total != want.TotalCount() {
		t.Fatalf("merged count = %d, want %d", m.total, want.TotalCount())
	}
	got := map[int64]int64{}
	for j, i := range m.idx {
		got[g.upper[i]] = m.n[j]
	}
	wantBars := map[int64]int64{}
	for _, b := range bars(want) {
		wantBars[b.to] = b.n
	}
	if !reflect.DeepEqual(got, wantBars) {
		t.Errorf("merged buckets differ from runlog.Merged: %d vs %d buckets", len(got), len(wantBars))
	}
	if !slices.IsSorted(g.upper) {
		t.Error("grid is not ascending")
	}
}

// rawKS is D computed directly from raw samples.
func rawKS(a, b []float64) float64 {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	var i, j int
	d := 0.0
	for i < len(a) && j < len(b) {
		x := min(a[i], b[j])
		for i < len(a) && a[i] == x {
			i++
		}
		for j < len(b) && b[j] == x {
			j++
		}
		d = max(d, math.Abs(float64(i)/float64(len(a))-float64(j)/float64(len(b))))
	}
	return d
}

// samples draws n values (integers, as recorded) and their histogram.
func samples(r *rand.Rand, n int, dist synthetic.Dist) ([]float64, *hdrhistogram.Histogram) {
	h := runlog.NewHistogram()
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = max(1, math.Round(dist(r)))
		h.RecordValue(int64(xs[i]))
	}
	return xs, h
}

func TestKSStatisticMatchesRawSamples(t *testing.T) {
	cases := []struct {
		name string
		a, b synthetic.Dist
	}{
		{"same normal", synthetic.Normal(10*time.Millisecond, time.Millisecond), synthetic.Normal(10*time.Millisecond, time.Millisecond)},
		{"normal shifted by half a sd", synthetic.Normal(10*time.Millisecond, time.Millisecond), synthetic.Normal(10500*time.Microsecond, time.Millisecond)},
		{"exponential vs lognormal", synthetic.Exponential(5 * time.Millisecond), synthetic.LogNormal(4*time.Millisecond, 0.7)},
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			xa, ha := samples(r, 5000, tc.a)
			xb, hb := samples(r, 7000, tc.b)
			raw, hist := rawKS(xa, xb), KSStatistic(ha, hb)
			// Buckets are 0.1% wide: values within one bucket are
			// indistinguishable, which can only shift D by the mass of
			// one bucket.
			if math.Abs(raw-hist) > 0.005 {
				t.Errorf("D from histograms = %.4f, from raw samples = %.4f", hist, raw)
			}
		})
	}
}

func TestKolmogorovQ(t *testing.T) {
	// Reference values of the Kolmogorov distribution's survival function.
	cases := []struct {
		lambda, want float64
	}{
		{0, 1},
		{0.5, 0.9639},
		{1.0, 0.2700},
		{1.1, 0.1777},
		{1.2, 0.1122},
		{1.36, 0.0495},
		{1.63, 0.0098},
		{2.0, 0.00067},
	}
	for _, tc := range cases {
		if got := KolmogorovQ(tc.lambda); math.Abs(got-tc.want) > 5e-4 {
			t.Errorf("Q(%v) = %.5f, want %.5f", tc.lambda, got, tc.want)
		}
	}
	// Both series agree where they meet.
	lo, hi := KolmogorovQ(1.18-1e-9), KolmogorovQ(1.18+1e-9)
	if math.Abs(lo-hi) > 1e-6 {
		t.Errorf("Q is discontinuous at 1.18: %v vs %v", lo, hi)
	}
}

func TestClassicalP(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	normal := synthetic.Normal(10*time.Millisecond, time.Millisecond)
	t.Run("same distribution: p-values spread over [0,1]", func(t *testing.T) {
		const pairs = 200
		var below05, below50 int
		for range pairs {
			_, ha := samples(r, 300, normal)
			_, hb := samples(r, 300, normal)
			p := ClassicalP(KSStatistic(ha, hb), 300, 300)
			if p < 0.05 {
				below05++
			}
			if p < 0.5 {
				below50++
			}
		}
		if below05 > 2*pairs/20 {
			t.Errorf("%d of %d same-distribution pairs have p < 0.05, want about %d", below05, pairs, pairs/20)
		}
		if below50 < pairs*35/100 || below50 > pairs*65/100 {
			t.Errorf("%d of %d same-distribution pairs have p < 0.5, want about half", below50, pairs)
		}
	})
	t.Run("normal shifted by half a sd: significant", func(t *testing.T) {
		_, ha := samples(r, 1000, normal)
		_, hb := samples(r, 1000, synthetic.Normal(10500*time.Microsecond, time.Millisecond))
		if p := ClassicalP(KSStatistic(ha, hb), 1000, 1000); p > 1e-6 {
			t.Errorf("p = %g, want < 1e-6", p)
		}
	})
}

func TestBlockTestOnCorrelatedRuns(t *testing.T) {
	skipUnderRace(t)
	// Twenty A/A pairs: both runs of each pair come from the same drifting
	// process. The block test may flag one by chance (5% of 20); the
	// classical test, which takes 30 000 requests as 30 000 independent
	// samples, flags most of them. The seeds are fixed, so the test is
	// deterministic; over 200 such pairs the block test's false-positive
	// rate measured 5.5% (docs/bench-compare.md).
	const pairs = 20
	flagged, classical := 0, 0
	for i := range pairs {
		a := mustLog(t, drifting(uint64(100+2*i)))
		b := mustLog(t, drifting(uint64(101+2*i)))
		r, err := Compare(a, b, Options{Resamples: 500, Seed: uint64(i)})
		if err != nil {
			t.Fatal(err)
		}
		if r.KS.Different {
			flagged++
			t.Logf("pair %d flagged: D=%.4f p=%.4f", i, r.KS.D, r.KS.P)
		}
		if r.KS.ClassicalP < 0.05 {
			classical++
		}
	}
	if flagged > 1 {
		t.Errorf("block test flagged %d of %d A/A pairs at p<0.05, want at most 1", flagged, pairs)
	}
	if classical < pairs/2 {
		t.Errorf("classical test flagged only %d of %d drifting A/A pairs; the synthetic drift is too weak to show the problem", classical, pairs)
	}

	// A/B: the same process 2 ms slower.
	a := mustLog(t, drifting(1))
	sb := drifting(2)
	sb.Shift = 2 * time.Millisecond
	b := mustLog(t, sb)
	r, err := Compare(a, b, Options{Resamples: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !r.KS.Different || r.KS.P > 0.01 {
		t.Errorf("A/B +2 ms: p = %g, different = %v; want flagged with p < 0.01", r.KS.P, r.KS.Different)
	}
	if st := stat(t, r, "p50"); st.Low > 2000 || st.High < 2000 || st.Low < 1000 {
		t.Errorf("A/B +2 ms: p50 delta %.0f µs, interval [%.0f, %.0f]; want an interval holding 2000 and excluding 1000", st.Delta, st.Low, st.High)
	}
}

func TestDeterministic(t *testing.T) {
	skipUnderRace(t)
	a, b := mustLog(t, drifting(1)), mustLog(t, drifting(2))
	r1, err := Compare(a, b, Options{Resamples: 300, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := Compare(a, b, Options{Resamples: 300, Seed: 9})
	r3, _ := Compare(a, b, Options{Resamples: 300, Seed: 10})
	if !reflect.DeepEqual(r1, r2) {
		t.Error("the same seed gave different results")
	}
	if reflect.DeepEqual(r1.Stats, r3.Stats) {
		t.Error("different seeds gave identical intervals")
	}
}

func TestOptions(t *testing.T) {
	a := mustLog(t, synthetic.Spec{Seconds: 3, Rate: 50, Dist: synthetic.Exponential(time.Millisecond), Seed: 1})
	cases := []struct {
		name    string
		opt     Options
		wantErr string
	}{
		{"confidence of 1", Options{Confidence: 1}, "confidence"},
		{"negative alpha", Options{Alpha: -0.1}, "alpha"},
		{"too few resamples", Options{Resamples: 5}, "resamples"},
		{"negative block length", Options{BlockLen: -1}, "block length"},
		{"unknown phase", Options{Phase: "dns"}, `phase "dns"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Compare(a, a, tc.opt)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want one mentioning %q", err, tc.wantErr)
			}
		})
	}
	t.Run("runs too short for the block test", func(t *testing.T) {
		r, err := Compare(a, a, Options{Resamples: 100})
		if err != nil {
			t.Fatal(err)
		}
		if r.KS.Different || len(r.Notes) == 0 || !strings.Contains(r.Notes[0], "too short") {
			t.Errorf("different = %v, notes = %q; want not different and a note", r.KS.Different, r.Notes)
		}
	})
}

// BenchmarkCompare times one comparison of two 60 s runs of 500 requests/s
// with the default 2000 resamples.
func BenchmarkCompare(b *testing.B) {
	a, err := synthetic.Log(drifting(1))
	if err != nil {
		b.Fatal(err)
	}
	sb := drifting(2)
	sb.Shift = 2 * time.Millisecond
	c, err := synthetic.Log(sb)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := Compare(a, c, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// KSStatistic is the two-sample Kolmogorov–Smirnov statistic D of two
// histograms, computed from their buckets.
func KSStatistic(a, b *hdrhistogram.Histogram) float64 {
	g, cs := newGrid([][]bar{bars(a), bars(b)})
	da, db := make([]int64, len(g.upper)), make([]int64, len(g.upper))
	cs[0].addTo(da)
	cs[1].addTo(db)
	return ksDense(da, cs[0].total, db, cs[1].total)
}

// TestIntervalsEqualsCompare checks that comparing the interval histograms
// directly gives what comparing their run logs gives.
func TestIntervalsEqualsCompare(t *testing.T) {
	s := drifting(3)
	s.Seconds = 20
	a := mustLog(t, s)
	s.Seed = 4
	b := mustLog(t, s)
	opt := Options{Resamples: 200, BlockLen: 4}
	want, err := Compare(a, b, opt)
	if err != nil {
		t.Fatal(err)
	}
	hists := func(l *runlog.Log) []*hdrhistogram.Histogram {
		var hs []*hdrhistogram.Histogram
		for _, iv := range l.Phase(runlog.Total) {
			hs = append(hs, iv.Hist)
		}
		return hs
	}
	got, err := Intervals(hists(a), hists(b), opt)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Intervals = %+v, Compare = %+v", got, want)
	}
	if _, err := Intervals(nil, hists(b), opt); err == nil {
		t.Error("Intervals without intervals: no error")
	}
}
