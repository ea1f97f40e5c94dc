package compare

import "math"

// Quantiles are the percentiles reported, in percent, in the order reported
// (the mean follows them).
var Quantiles = []float64{50, 90, 99, 99.9}

// rank is the 1-based rank of percentile p among total values, as
// HdrHistogram's ValueAtPercentile computes it, so a percentile here equals
// the run log histogram's own.
func rank(p float64, total int64) int64 {
	r := p/100*float64(total) + 0.5
	if !(r >= 1) {
		return 1
	}
	if r >= float64(total) {
		return total
	}
	return int64(r)
}

// summarize writes into out the values of Quantiles followed by the mean,
// from a dense count vector over g holding total values. An empty vector
// gives zeros.
func summarize(g *grid, dense []int64, total int64, out []float64) {
	clear(out)
	if total == 0 {
		return
	}
	k := 0
	target := rank(Quantiles[0], total)
	var cum int64
	var sum float64
	for i, n := range dense {
		if n == 0 {
			continue
		}
		cum += n
		sum += float64(n) * g.mid[i]
		for k < len(Quantiles) && cum >= target {
			out[k] = float64(g.upper[i])
			k++
			if k < len(Quantiles) {
				target = rank(Quantiles[k], total)
			}
		}
	}
	out[len(Quantiles)] = sum / float64(total)
}

// ksDense is the two-sample Kolmogorov–Smirnov statistic of two dense count
// vectors over the same grid: the largest absolute difference of their
// empirical distribution functions, evaluated at every bucket's upper end.
func ksDense(a []int64, na int64, b []int64, nb int64) float64 {
	if na == 0 || nb == 0 {
		return 0
	}
	var ca, cb int64
	fa, fb := float64(na), float64(nb)
	d := 0.0
	for i := range a {
		ca += a[i]
		cb += b[i]
		if x := math.Abs(float64(ca)/fa - float64(cb)/fb); x > d {
			d = x
		}
	}
	return d
}

// KolmogorovQ is the survival function of the Kolmogorov distribution,
// Q(λ) = P(K > λ) = 2 Σ_{j≥1} (−1)^{j−1} exp(−2 j² λ²).
func KolmogorovQ(lambda float64) float64 {
	switch {
	case lambda <= 0:
		return 1
	case lambda < 1.18:
		// The alternating series converges slowly for small λ; use the
		// equivalent theta-function form of the distribution function,
		// P(K ≤ λ) = √(2π)/λ Σ_{j≥1} exp(−(2j−1)² π² / (8 λ²)).
		x := math.Exp(-math.Pi * math.Pi / (8 * lambda * lambda))
		s := 0.0
		for j := 1; j <= 20; j++ {
			e := float64((2*j - 1) * (2*j - 1))
			s += math.Pow(x, e)
		}
		return clamp01(1 - math.Sqrt(2*math.Pi)/lambda*s)
	}
	s, sign := 0.0, 1.0
	for j := 1; j <= 100; j++ {
		t := math.Exp(-2 * float64(j*j) * lambda * lambda)
		s += sign * t
		if t < 1e-17 {
			break
		}
		sign = -sign
	}
	return clamp01(2 * s)
}

// ClassicalP is the asymptotic two-sample KS p-value for statistic d between
// n and m independent samples, with Stephens' small-sample correction
// λ = (√nₑ + 0.12 + 0.11/√nₑ)·d, nₑ = nm/(n+m). It assumes every sample is
// independent, which requests of a load test are not (see the package doc).
func ClassicalP(d float64, n, m int64) float64 {
	if n <= 0 || m <= 0 {
		return 1
	}
	ne := float64(n) * float64(m) / float64(n+m)
	s := math.Sqrt(ne)
	return KolmogorovQ((s + 0.12 + 0.11/s) * d)
}

func clamp01(x float64) float64 {
	return math.Max(0, math.Min(1, x))
}
