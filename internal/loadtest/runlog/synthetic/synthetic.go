// Package synthetic writes run logs drawn from known latency distributions,
// so the analysis tools (compare, report) can be tested against numbers that
// are known in advance, including the slow drift between seconds that real
// runs show. Only tests import it: it is a package, not a _test.go file, so
// that the tests of several packages (compare, report, cmd/penstock) share
// it.
package synthetic

import (
	"bytes"
	"io"
	"math"
	"math/rand/v2"
	"time"

	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

// Dist draws one latency in microseconds.
type Dist func(r *rand.Rand) float64

// Exponential has the given mean.
func Exponential(mean time.Duration) Dist {
	m := float64(mean.Microseconds())
	return func(r *rand.Rand) float64 { return r.ExpFloat64() * m }
}

// LogNormal has the given median and shape σ (of the latency's logarithm).
func LogNormal(median time.Duration, sigma float64) Dist {
	mu := math.Log(float64(median.Microseconds()))
	return func(r *rand.Rand) float64 { return math.Exp(mu + sigma*r.NormFloat64()) }
}

// Normal has the given mean and standard deviation (values below 1 µs are
// recorded as 1 µs).
func Normal(mean, sd time.Duration) Dist {
	m, s := float64(mean.Microseconds()), float64(sd.Microseconds())
	return func(r *rand.Rand) float64 { return m + s*r.NormFloat64() }
}

// Spec describes a synthetic run. Each second t draws Rate latencies
// x·exp(z_t) + Shift, x from Dist, where z_t is the run's drift: an AR(1)
// process z_t = Rho·z_{t−1} + √(1−Rho²)·Noise·ε_t with stationary standard
// deviation Noise. With probability PauseProb a second also suffers a pause:
// a tenth of its requests take Pause longer.
type Spec struct {
	Seconds int
	Rate    int
	Dist    Dist
	Shift   time.Duration
	// Noise is the standard deviation of the per-second log-scale drift.
	Noise float64
	// Rho is the drift's correlation between consecutive seconds, in [0, 1).
	Rho       float64
	PauseProb float64
	Pause     time.Duration
	Seed      uint64
	// Meta is written as the run's parameters.
	Meta map[string]string
}

// start is the fixed wall-clock start of every synthetic run, so logs are
// byte-for-byte reproducible.
var start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Write writes the run log of s: phases Total and FirstByte (a fixed 80% of
// Total) per second.
func Write(w io.Writer, s Spec) error {
	rw, err := runlog.NewWriter(w, start, s.Meta)
	if err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(s.Seed, 0x73796e7468)) // "synth"
	z := s.Noise * r.NormFloat64()
	shift := float64(s.Shift.Microseconds())
	pause := float64(s.Pause.Microseconds())
	for sec := range s.Seconds {
		if sec > 0 {
			z = s.Rho*z + math.Sqrt(1-s.Rho*s.Rho)*s.Noise*r.NormFloat64()
		}
		paused := r.Float64() < s.PauseProb
		scale := math.Exp(z)
		total, first := runlog.NewHistogram(), runlog.NewHistogram()
		for range s.Rate {
			v := s.Dist(r)*scale + shift
			if paused && r.Float64() < 0.1 {
				v += pause
			}
			v = max(1, min(v, runlog.Highest))
			total.RecordValue(int64(math.Round(v)))
			first.RecordValue(int64(math.Round(max(1, 0.8*v))))
		}
		from, to := time.Duration(sec)*time.Second, time.Duration(sec+1)*time.Second
		if err := rw.Write(runlog.Interval{Phase: runlog.Total, Start: from, End: to, Hist: total}); err != nil {
			return err
		}
		if err := rw.Write(runlog.Interval{Phase: runlog.FirstByte, Start: from, End: to, Hist: first}); err != nil {
			return err
		}
	}
	return nil
}

// Log returns the run of s as read back from its run log.
func Log(s Spec) (*runlog.Log, error) {
	var buf bytes.Buffer
	if err := Write(&buf, s); err != nil {
		return nil, err
	}
	return runlog.Read(&buf)
}
