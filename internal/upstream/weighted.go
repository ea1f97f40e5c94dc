package upstream

import "sync/atomic"

// weightedRoundRobin spreads picks in proportion to weights with an
// interleaved schedule (weights 5:1:1 give a a b a c a a, not a a a a a b c),
// the property NGINX's "smooth" weighted round robin is known for. The
// schedule is computed once per config, so a pick is one atomic add and an
// index, with no lock; unhealthy endpoints are skipped in schedule order.
type weightedRoundRobin struct {
	schedule []*Endpoint
	next     atomic.Uint64
}

func newWeightedRoundRobin(eps []*Endpoint) Balancer {
	total := 0
	for _, e := range eps {
		total += max(e.Weight, 1)
	}
	// Smooth weighted round robin run offline for one full cycle.
	current := make([]int, len(eps))
	schedule := make([]*Endpoint, 0, total)
	for range total {
		best := 0
		for i, e := range eps {
			current[i] += max(e.Weight, 1)
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		schedule = append(schedule, eps[best])
	}
	return &weightedRoundRobin{schedule: schedule}
}

func (w *weightedRoundRobin) Pick(now int64) *Endpoint {
	n := uint64(len(w.schedule))
	// Advance on every try so a down endpoint's share spreads over the rest
	// by weight instead of falling on its neighbour in the schedule.
	for range n {
		if e := w.schedule[(w.next.Add(1)-1)%n]; e.Available(now) {
			return e
		}
	}
	return nil
}
