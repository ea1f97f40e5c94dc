package upstream

import "sync/atomic"

// roundRobin cycles through endpoints, skipping unhealthy ones. The counter
// is one atomic add per pick: contention is per pool, not global.
type roundRobin struct {
	eps  []*Endpoint
	next atomic.Uint64
}

func newRoundRobin(eps []*Endpoint) Balancer { return &roundRobin{eps: eps} }

func (r *roundRobin) Pick(now int64) *Endpoint {
	n := uint64(len(r.eps))
	start := r.next.Add(1) - 1
	for i := uint64(0); i < n; i++ {
		if e := r.eps[(start+i)%n]; e.Healthy(now) {
			return e
		}
	}
	return nil
}
