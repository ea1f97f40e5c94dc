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

// Policies is the table of balancing policies by their config name. A new
// policy is one file and one line here.
var Policies = map[string]func(eps []*Endpoint) Balancer{
	"round_robin":          newRoundRobin,
	"weighted_round_robin": newWeightedRoundRobin,
	"least_request":        newLeastRequest,
}

// NewBalancer builds the named policy over eps.
func NewBalancer(policy string, eps []*Endpoint) (Balancer, error) {
	f, ok := Policies[policy]
	if !ok {
		return nil, fmt.Errorf("unknown balancing policy %q", policy)
	}
	return f(eps), nil
}
