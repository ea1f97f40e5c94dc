package upstream

import "fmt"

// Balancer picks an endpoint for a request. Implementations must be safe for
// concurrent use without a lock shared by all requests.
type Balancer interface {
	// Pick returns one of the healthy endpoints, or nil when none is. now is
	// the current Unix time in nanoseconds (passed in so one clock read serves
	// the whole request).
	Pick(now int64) *Endpoint
}

// policies is the table of balancing policies by their config name, in the
// order the docs list them. A new policy is one file and one line here. It
// is a function, not a variable, so that nothing can change the table.
func policies() []policyEntry {
	return []policyEntry{
		{"round_robin", newRoundRobin},
		{"weighted_round_robin", newWeightedRoundRobin},
		{"least_request", newLeastRequest},
	}
}

// policyEntry is one row of the policy table.
type policyEntry struct {
	name string
	new  func(eps []*Endpoint) Balancer
}

// NewBalancer builds the named policy over eps.
func NewBalancer(policy string, eps []*Endpoint) (Balancer, error) {
	for _, p := range policies() {
		if p.name == policy {
			return p.new(eps), nil
		}
	}
	return nil, fmt.Errorf("unknown balancing policy %q", policy)
}
