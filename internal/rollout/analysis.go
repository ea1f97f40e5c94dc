package rollout

import (
	"fmt"
	"math"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/penstock-dev/penstock/internal/loadtest/compare"
)

// SLO is what a canary must keep during a step. A zero field turns its
// check off. Every check is a one-sided test at the definition's Alpha, so a
// noisy window does not roll back a healthy canary (see docs/rollouts.md).
type SLO struct {
	// MaxErrorRate is a ceiling on the canary's error rate, a fraction
	// (0.01 = 1 %). Breached when the Wilson lower confidence bound of the
	// canary's error rate is above it. Default 0 (off).
	MaxErrorRate float64 `json:"max_error_rate,omitempty"`
	// MaxErrorRateIncrease is how far the canary's error rate may exceed the
	// baseline's, in absolute fraction points (0.01 = one point). Breached
	// when the Agresti–Caffo lower confidence bound of the difference is
	// above it. Default 0 (off).
	MaxErrorRateIncrease float64 `json:"max_error_rate_increase,omitempty"`
	// MaxP99 is a ceiling on the canary's P99 latency, compared with the
	// window's point estimate (no test). Default 0 (off).
	MaxP99 time.Duration `json:"max_p99,omitempty"`
	// MaxP99Increase is how much the canary's P99 latency may exceed the
	// baseline's, relative (0.1 = 10 %). Breached when the block-bootstrap
	// lower confidence bound of the P99 difference is above it. Default 0
	// (off).
	MaxP99Increase float64 `json:"max_p99_increase,omitempty"`
	// MaxTTFTIncrease is how much the canary's time to first token may
	// exceed the baseline's at P50 or P99, relative, judged like
	// MaxP99Increase. Default 0 (off).
	MaxTTFTIncrease float64 `json:"max_ttft_increase,omitempty"`
	// MaxLatencyShift turns on the "no significant latency regression" check:
	// breached when the block-permutation KS test finds the latency
	// distributions different (p < KSAlpha) and the canary's P50 or P99 is
	// slower than the baseline's by more than this fraction (0.05 = 5 %).
	// Default 0 (off).
	MaxLatencyShift float64 `json:"max_latency_shift,omitempty"`
}

// Outcome is the verdict of one analysis.
type Outcome string

const (
	// Pass: enough requests, no check breached.
	Pass Outcome = "pass"
	// Fail: a check breached; the verdict's Reason says which.
	Fail Outcome = "fail"
	// Inconclusive: too few requests for a verdict.
	Inconclusive Outcome = "inconclusive"
)

// Analysis tunes the tests of an analysis.
type Analysis struct {
	// MinRequests is the number of requests each arm needs in the window
	// (and of successful ones for the latency tests) before any verdict.
	// Default 200.
	MinRequests int64 `json:"min_requests"`
	// Alpha is the one-sided significance level of the error-rate tests and
	// of the confidence bounds of the percentile checks. Default 0.01.
	Alpha float64 `json:"alpha"`
	// KSAlpha is the significance level of the KS test of the latency
	// regression check. It is looser than Alpha because that check also
	// needs a shift of SLO.MaxLatencyShift, and because the block test
	// cannot reach small p-values when strong autocorrelation leaves few
	// blocks (a minimum of 2/70 ≈ 0.029 with four blocks per arm).
	// Default 0.05.
	KSAlpha float64 `json:"ks_alpha"`
	// Resamples is the number of block-bootstrap resamples and block
	// permutations of the latency tests. Default 1000.
	Resamples int `json:"resamples"`
}

func (a Analysis) withDefaults() Analysis {
	if a.MinRequests == 0 {
		a.MinRequests = 200
	}
	if a.Alpha == 0 {
		a.Alpha = 0.01
	}
	if a.Resamples == 0 {
		a.Resamples = 1000
	}
	if a.KSAlpha == 0 {
		a.KSAlpha = 0.05
	}
	return a
}

// Verdict is the result of comparing the canary with the baseline over one
// window.
type Verdict struct {
	Outcome Outcome `json:"outcome"`
	// Reason says why the verdict failed or was inconclusive.
	Reason   string    `json:"reason,omitempty"`
	Baseline ArmWindow `json:"baseline"`
	Canary   ArmWindow `json:"canary"`
	// ErrorDiffLow is the lower confidence bound of the canary's error rate
	// minus the baseline's (Agresti–Caffo).
	ErrorDiffLow float64 `json:"error_diff_low"`
	// Latency and TTFT are the comparisons of the canary (B) against the
	// baseline (A), nil when not run.
	Latency *compare.Result `json:"latency,omitempty"`
	TTFT    *compare.Result `json:"ttft,omitempty"`
}

// Analyze compares canary against baseline under slo.
func Analyze(baseline, canary ArmWindow, slo SLO, opt Analysis, seed uint64) Verdict {
	opt = opt.withDefaults()
	v := Verdict{Baseline: baseline, Canary: canary}
	if baseline.Requests < opt.MinRequests || canary.Requests < opt.MinRequests {
		v.Outcome = Inconclusive
		v.Reason = fmt.Sprintf("too few requests: baseline %d, canary %d, want %d each", baseline.Requests, canary.Requests, opt.MinRequests)
		return v
	}
	z := normalQuantile(1 - opt.Alpha)
	v.ErrorDiffLow = agrestiCaffoLow(canary.Errors, canary.Requests, baseline.Errors, baseline.Requests, z)
	if slo.MaxErrorRate > 0 {
		if low := wilsonLow(canary.Errors, canary.Requests, z); low > slo.MaxErrorRate {
			return fail(v, "error rate %.2f%% (at least %.2f%%) above the ceiling %.2f%%", 100*canary.ErrorRate(), 100*low, 100*slo.MaxErrorRate)
		}
	}
	if slo.MaxErrorRateIncrease > 0 && v.ErrorDiffLow > slo.MaxErrorRateIncrease {
		return fail(v, "error rate %.2f%% against the baseline's %.2f%%: at least %.2f points more, %.2f allowed",
			100*canary.ErrorRate(), 100*baseline.ErrorRate(), 100*v.ErrorDiffLow, 100*slo.MaxErrorRateIncrease)
	}
	copt := compare.Options{Confidence: 1 - 2*opt.Alpha, Alpha: opt.Alpha, Resamples: opt.Resamples, Seed: seed}
	latencyChecks := slo.MaxP99 > 0 || slo.MaxP99Increase > 0 || slo.MaxLatencyShift > 0
	if latencyChecks {
		if countOf(baseline.Latency) < opt.MinRequests || countOf(canary.Latency) < opt.MinRequests {
			v.Outcome = Inconclusive
			v.Reason = "too few successful requests for the latency tests"
			return v
		}
		r, err := compare.Intervals(baseline.Latency, canary.Latency, copt)
		if err != nil {
			v.Outcome = Inconclusive
			v.Reason = "latency: " + err.Error()
			return v
		}
		v.Latency = r
		p50, p99 := statOf(r, "p50"), statOf(r, "p99")
		if slo.MaxP99 > 0 && p99.B > float64(slo.MaxP99.Microseconds()) {
			return fail(v, "P99 latency %s above the ceiling %s", us(p99.B), slo.MaxP99)
		}
		if slo.MaxP99Increase > 0 && p99.Low > slo.MaxP99Increase*p99.A {
			return fail(v, "P99 latency %s against the baseline's %s: at least %s more, %.0f%% allowed",
				us(p99.B), us(p99.A), us(p99.Low), 100*slo.MaxP99Increase)
		}
		// The P99 of a window counts in the shift only when each arm has at
		// least tailSamples requests above it: the P99 of 200 requests is
		// their second slowest, and two identical arms differ there by
		// far more than any allowed shift (a false rollback in ten
		// rollouts on two identical noisy servers, measured).
		tailed := min(countOf(baseline.Latency), countOf(canary.Latency)) >= 100*tailSamples
		if slo.MaxLatencyShift > 0 && r.KS.P < opt.KSAlpha &&
			(p50.Delta > slo.MaxLatencyShift*p50.A || tailed && p99.Delta > slo.MaxLatencyShift*p99.A) {
			return fail(v, "latency regression: KS D=%.3f p=%.4f, P50 %s → %s, P99 %s → %s",
				r.KS.D, r.KS.P, us(p50.A), us(p50.B), us(p99.A), us(p99.B))
		}
	}
	// A route whose responses are not event streams reports no time to
	// first token: there is nothing to judge, and the check is skipped.
	if slo.MaxTTFTIncrease > 0 && (baseline.TTFTCount > 0 || canary.TTFTCount > 0) {
		if countOf(baseline.TTFT) < opt.MinRequests || countOf(canary.TTFT) < opt.MinRequests {
			v.Outcome = Inconclusive
			v.Reason = "too few requests with a time to first token"
			return v
		}
		r, err := compare.Intervals(baseline.TTFT, canary.TTFT, copt)
		if err != nil {
			v.Outcome = Inconclusive
			v.Reason = "ttft: " + err.Error()
			return v
		}
		v.TTFT = r
		for _, name := range []string{"p50", "p99"} {
			s := statOf(r, name)
			if s.Low > slo.MaxTTFTIncrease*s.A {
				return fail(v, "time to first token %s %s against the baseline's %s: at least %s more, %.0f%% allowed",
					name, us(s.B), us(s.A), us(s.Low), 100*slo.MaxTTFTIncrease)
			}
		}
	}
	v.Outcome = Pass
	return v
}

func fail(v Verdict, format string, args ...any) Verdict {
	v.Outcome = Fail
	v.Reason = fmt.Sprintf(format, args...)
	return v
}

// tailSamples is how many requests above a percentile make it count in
// the latency regression check.
const tailSamples = 10

func statOf(r *compare.Result, name string) compare.Stat {
	for _, s := range r.Stats {
		if s.Name == name {
			return s
		}
	}
	return compare.Stat{}
}

func countOf(hs []*hdrhistogram.Histogram) int64 {
	var n int64
	for _, h := range hs {
		n += h.TotalCount()
	}
	return n
}

func us(v float64) time.Duration { return time.Duration(v) * time.Microsecond }

// wilsonLow is the lower bound of the Wilson score interval for x successes
// in n trials at normal quantile z.
func wilsonLow(x, n int64, z float64) float64 {
	if n == 0 {
		return 0
	}
	p, fn := float64(x)/float64(n), float64(n)
	z2 := z * z
	centre := p + z2/(2*fn)
	half := z * math.Sqrt(p*(1-p)/fn+z2/(4*fn*fn))
	return math.Max(0, (centre-half)/(1+z2/fn))
}

// agrestiCaffoLow is the lower confidence bound of p₁ − p₂ by the
// Agresti–Caffo interval: a Wald interval after adding one success and one
// failure to each sample, which keeps its coverage near nominal even with a
// handful of errors.
func agrestiCaffoLow(x1, n1, x2, n2 int64, z float64) float64 {
	p1 := float64(x1+1) / float64(n1+2)
	p2 := float64(x2+1) / float64(n2+2)
	se := math.Sqrt(p1*(1-p1)/float64(n1+2) + p2*(1-p2)/float64(n2+2))
	return p1 - p2 - z*se
}

// normalQuantile is the standard normal quantile function.
func normalQuantile(p float64) float64 {
	return math.Sqrt2 * math.Erfinv(2*p-1)
}

// Finite replaces the NaN and infinite figures of v's comparisons (a
// relative difference against a zero baseline) by 0, so that the verdict
// encodes as JSON: the state file and the admin API carry it.
func (v *Verdict) Finite() {
	fix := func(f *float64) {
		if math.IsNaN(*f) || math.IsInf(*f, 0) {
			*f = 0
		}
	}
	fix(&v.ErrorDiffLow)
	for _, r := range []*compare.Result{v.Latency, v.TTFT} {
		if r == nil {
			continue
		}
		for i := range r.Stats {
			st := &r.Stats[i]
			for _, f := range []*float64{&st.A, &st.B, &st.Delta, &st.DeltaPct, &st.Low, &st.High} {
				fix(f)
			}
		}
		for _, f := range []*float64{&r.KS.D, &r.KS.P, &r.KS.ClassicalP, &r.KS.MinP} {
			fix(f)
		}
	}
}
