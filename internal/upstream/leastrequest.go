package upstream

import "math/rand/v2"

// leastRequest is "power of two choices": pick two healthy endpoints at
// random and take the one with fewer requests in flight. It avoids both the
// herd behaviour of a global least-connections scan and its cost, and needs
// no shared state beyond the per-endpoint counters (Mitzenmacher, "The Power
// of Two Choices in Randomized Load Balancing", 2001; Envoy's LEAST_REQUEST).
type leastRequest struct {
	eps []*Endpoint
}

func newLeastRequest(eps []*Endpoint) Balancer { return &leastRequest{eps: eps} }

func (l *leastRequest) Pick(now int64) *Endpoint {
	n := len(l.eps)
	if n == 0 {
		return nil
	}
	if n == 1 {
		if l.eps[0].Available(now) {
			return l.eps[0]
		}
		return nil
	}
	// Two distinct samples: with replacement, a pool of two would pick the
	// busier endpoint a quarter of the time.
	i := rand.IntN(n)
	j := (i + 1 + rand.IntN(n-1)) % n
	a, b := l.eps[i], l.eps[j]
	if !a.Available(now) {
		a = nil
	}
	if !b.Available(now) {
		b = nil
	}
	switch {
	case a == nil && b == nil:
		// Both samples were down: fall back to a scan so that one healthy
		// endpoint among many is still found.
		var best *Endpoint
		for _, e := range l.eps {
			if e.Available(now) && (best == nil || e.Inflight() < best.Inflight()) {
				best = e
			}
		}
		return best
	case a == nil:
		return b
	case b == nil:
		return a
	case b.Inflight() < a.Inflight():
		return b
	}
	return a
}
