package upstream

import (
	"context"
	"math"
	"time"
)

// Outlier ejection, after Envoy's outlier detection: consecutive failures
// eject at once, from the request path; success rate and latency
// statistics are computed over each interval by the pool's outlier loop.

// Ejection reasons, as the admin API and the metrics name them.
const (
	ejectConsecutive5xx     = "consecutive_5xx"
	ejectConsecutiveGateway = "consecutive_gateway_failure"
	ejectSuccessRate        = "success_rate"
	ejectLatency            = "latency"
)

// recordOutlier counts one attempt in e's consecutive failures and the
// interval's statistics, and ejects e when a consecutive threshold is
// reached.
func (p *Pool) recordOutlier(e *Endpoint, g *guard, now int64, r Result, latency time.Duration) {
	od := p.prot.outlier
	g.ivRequests.Add(1)
	g.ivLatency.Add(int64(latency))
	switch r {
	case ResultOK:
		g.ivPassed.Add(1)
		if g.cons5xx.Load() != 0 {
			g.cons5xx.Store(0)
		}
		if g.consGateway.Load() != 0 {
			g.consGateway.Store(0)
		}
	case Result5xx:
		if g.consGateway.Load() != 0 {
			g.consGateway.Store(0)
		}
		if n := g.cons5xx.Add(1); od.Consecutive5xx > 0 && int(n) >= od.Consecutive5xx {
			g.cons5xx.Store(0)
			p.eject(e, now, ejectConsecutive5xx)
		}
	case ResultGatewayFailure:
		// A gateway failure is a 5xx too, to the client (502/504).
		n5 := g.cons5xx.Add(1)
		n := g.consGateway.Add(1)
		switch {
		case od.ConsecutiveGatewayFailure > 0 && int(n) >= od.ConsecutiveGatewayFailure:
			g.consGateway.Store(0)
			g.cons5xx.Store(0)
			p.eject(e, now, ejectConsecutiveGateway)
		case od.Consecutive5xx > 0 && int(n5) >= od.Consecutive5xx:
			g.consGateway.Store(0)
			g.cons5xx.Store(0)
			p.eject(e, now, ejectConsecutive5xx)
		}
	}
}

// maxEjected is how many of n endpoints may be ejected at once with
// max_ejection_percent pct: the percentage rounded down, but at least one
// in a pool of two or more (else a small pool could never eject, as in
// Envoy), and never every endpoint, so ejection alone cannot empty a pool.
func maxEjected(n, pct int) int {
	if n < 2 {
		return 0
	}
	return min(max(n*pct/100, 1), n-1)
}

// eject takes e out of rotation at now for base_ejection_time × the times
// it was ejected (capped by max_ejection_time), unless it is ejected
// already or the pool has as many endpoints ejected as it may. It reports
// whether e was ejected.
func (p *Pool) eject(e *Endpoint, now int64, reason string) bool {
	pr := p.prot
	od := pr.outlier
	pr.ejectMu.Lock()
	g := e.guard
	if now < g.ejectedUntil.Load() {
		pr.ejectMu.Unlock()
		return false
	}
	ejected := 0
	for _, o := range p.Endpoints {
		if now < o.guard.ejectedUntil.Load() {
			ejected++
		}
	}
	if ejected >= maxEjected(len(p.Endpoints), od.MaxEjectionPercent) {
		pr.ejectMu.Unlock()
		return false
	}
	times := g.timesEjected.Add(1)
	d := min(time.Duration(times)*od.BaseEjectionTime.D(), od.MaxEjectionTime.D())
	g.ejectReason.Store(reason)
	g.ejectedUntil.Store(now + int64(d))
	g.ejections.Add(1)
	pr.ejectMu.Unlock()
	if obs := pr.observe(); obs != nil {
		obs.Ejected(p.Name, e.Address, reason)
	}
	return true
}

// outlierLoop runs the interval statistics until ctx ends.
func (p *Pool) outlierLoop(ctx context.Context) {
	t := time.NewTicker(p.prot.outlier.Interval.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			p.outlierInterval(now.UnixNano())
		}
	}
}

// outlierInterval ends one interval at now: it ejects the endpoints whose
// success rate or mean latency stands out from their peers', and takes one
// off the ejection count of each endpoint in rotation, so that an
// endpoint that behaves again gets short ejections again.
func (p *Pool) outlierInterval(now int64) {
	od := p.prot.outlier
	type sample struct {
		e             *Endpoint
		rate, latency float64
	}
	samples := make([]sample, 0, len(p.Endpoints))
	for _, e := range p.Endpoints {
		g := e.guard
		reqs, passed, lat := g.ivRequests.Swap(0), g.ivPassed.Swap(0), g.ivLatency.Swap(0)
		if now >= g.ejectedUntil.Load() {
			if t := g.timesEjected.Load(); t > 0 && g.ejectedUntil.Load() != 0 {
				g.timesEjected.CompareAndSwap(t, t-1)
			}
		}
		if reqs >= int64(od.RequestVolume) {
			samples = append(samples, sample{e: e, rate: float64(passed) / float64(reqs), latency: float64(lat) / float64(reqs)})
		}
	}
	if len(samples) < od.MinimumHosts {
		return
	}
	if f := od.SuccessRateStdevFactor; f > 0 {
		rates := make([]float64, len(samples))
		for i, s := range samples {
			rates[i] = s.rate
		}
		mean, stdev := meanStdev(rates)
		for _, s := range samples {
			if s.rate < mean-stdev*f {
				p.eject(s.e, now, ejectSuccessRate)
			}
		}
	}
	if f := od.LatencyStdevFactor; f > 0 {
		lats := make([]float64, len(samples))
		for i, s := range samples {
			lats[i] = s.latency
		}
		mean, stdev := meanStdev(lats)
		for _, s := range samples {
			if s.latency > mean+stdev*f {
				p.eject(s.e, now, ejectLatency)
			}
		}
	}
}

// meanStdev returns the mean and the population standard deviation of xs.
func meanStdev(xs []float64) (mean, stdev float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		stdev += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(stdev / float64(len(xs)))
}
