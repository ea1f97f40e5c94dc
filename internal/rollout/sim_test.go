package rollout

import (
	"math"
	"math/rand/v2"
	"time"
)

// fakeClock is an injected clock that tests move by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *fakeClock               { return &fakeClock{t: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)} }

// armModel is one arm's traffic in a simulation: a noisy latency model and
// an error rate.
//
// Latency is lognormal around Median (σ = 0.5) times a per-second factor
// exp(g + f): g an AR(1) series (ρ = 0.7, innovations σ = 0.1) shared by
// both arms, as a noisy host shows, and f one private to the arm (ρ = 0.7,
// innovations σ = 0.05), as two upstream pools on different hosts show; 1 % of requests come from a Pareto tail
// (α = 1.5) starting at 3× the median; and in 2 % of seconds a pause adds
// 100 ms to every request of the second. So the latencies of a second move
// together and the classical i.i.d. KS test would flag two such arms as
// different far more often than its α.
type armModel struct {
	Rate     int           // requests per second
	Median   time.Duration // of the lognormal body
	Scale    float64       // multiplies every latency (1 = none)
	Shift    time.Duration // added to every latency
	ErrRate  float64       // fraction of requests that fail
	TTFT     time.Duration // median time to first token, 0 = none reported
	TTFTMult float64       // multiplies the TTFT (0 = 1)
	f        float64       // AR(1) state
	level    float64       // log factor of this second: f plus the shared factor
	pause    bool          // this second is paused
}

// newSecond moves the arm's per-second state (the AR(1) factor and the
// pause) to the next second.
func (m *armModel) newSecond(rng *rand.Rand, shared float64) {
	m.f = 0.7*m.f + 0.05*rng.NormFloat64()
	m.level = m.f + shared
	m.pause = rng.Float64() < 0.02
}

// requests generates n requests of the arm into r.
func (m *armModel) requests(rng *rand.Rand, r *Rollout, arm, n int) {
	scale := m.Scale
	if scale == 0 {
		scale = 1
	}
	for range n {
		var l float64
		if rng.Float64() < 0.01 {
			l = 3 * float64(m.Median) * math.Pow(rng.Float64(), -1/1.5)
		} else {
			l = float64(m.Median) * math.Exp(0.5*rng.NormFloat64())
		}
		l = l*math.Exp(m.level)*scale + float64(m.Shift)
		if m.pause {
			l += float64(100 * time.Millisecond)
		}
		var ttft time.Duration
		if m.TTFT > 0 {
			mult := m.TTFTMult
			if mult == 0 {
				mult = 1
			}
			ttft = time.Duration(float64(m.TTFT) * mult * math.Exp(0.4*rng.NormFloat64()+m.level))
		}
		r.Observe(arm, time.Duration(l), rng.Float64() < m.ErrRate, ttft)
	}
}

// simulate runs rollout r for at most seconds seconds of traffic from
// baseline and canary (per-arm rates, whatever the weight but 0), ticking
// once per sub-window, until the rollout leaves Progressing. change, if not
// nil, is called every second and may alter the models. It returns the
// seconds simulated and the canary requests sent.
func simulate(rng *rand.Rand, clk *fakeClock, r *Rollout, baseline, canary *armModel, seconds int, change func(sec int)) (elapsed int, canaryRequests int) {
	slot := r.Definition().Slot
	perSecond := int(time.Second / slot)
	shared := 0.0
	for sec := range seconds {
		if change != nil {
			change(sec)
		}
		shared = 0.7*shared + 0.1*rng.NormFloat64()
		baseline.newSecond(rng, shared)
		canary.newSecond(rng, shared)
		for k := range perSecond {
			// Spread the second's requests evenly over its sub-windows.
			nb := baseline.Rate*(k+1)/perSecond - baseline.Rate*k/perSecond
			nc := canary.Rate*(k+1)/perSecond - canary.Rate*k/perSecond
			baseline.requests(rng, r, Baseline, nb)
			if r.Weight() > 0 {
				canary.requests(rng, r, Canary, nc)
				canaryRequests += nc
			}
			clk.add(slot)
			r.Tick()
		}
		if r.Snapshot().Phase != Progressing {
			return sec + 1, canaryRequests
		}
	}
	return seconds, canaryRequests
}

// simSLO is the SLO of the simulations.
var simSLO = SLO{
	MaxErrorRateIncrease: 0.01,
	MaxP99Increase:       0.25,
	MaxLatencyShift:      0.15,
}
