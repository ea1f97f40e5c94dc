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
	// Advance the counter on every try, not once per pick: otherwise the
	// endpoint after a down one would take the down one's whole share.
	for range n {
		if e := r.eps[(r.next.Add(1)-1)%n]; e.Available(now) {
			return e
		}
	}
	return nil
}
