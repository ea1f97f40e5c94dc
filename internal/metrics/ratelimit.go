package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Rate limit decision results, for RateLimit.Decided.
const (
	// RateLimitAdmitted is a request the limit let through.
	RateLimitAdmitted = iota
	// RateLimitLimited is a request the limit refused (429).
	RateLimitLimited
	// RateLimitShadowLimited is a request a shadow-mode limit would have
	// refused, and admitted.
	RateLimitShadowLimited
)

var rateLimitResults = [...]string{"admitted", "limited", "shadow_limited"}

type rateLimitVecs struct {
	decisions *prometheus.CounterVec
	fallbacks *prometheus.CounterVec
	evictions *prometheus.CounterVec

	mu     sync.Mutex
	limits map[[2]string]*RateLimit
}

func newRateLimitVecs() *rateLimitVecs {
	return &rateLimitVecs{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_rate_limit_decisions_total",
			Help: "Rate limit decisions, by limit, key source and result (admitted, limited, shadow_limited).",
		}, []string{"limit", "key_class", "result"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_rate_limit_fallbacks_total",
			Help: "Decisions of global limits that Redis did not make in time, decided by the limit's on_failure policy.",
		}, []string{"limit"}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_rate_limit_evictions_total",
			Help: "Keys a rate limit forgot to stay within its max_keys.",
		}, []string{"limit"}),
		limits: map[[2]string]*RateLimit{},
	}
}

func (v *rateLimitVecs) collectors() []prometheus.Collector {
	return []prometheus.Collector{v.decisions, v.fallbacks, v.evictions}
}

// RateLimit is the pre-resolved metrics of one limit. Its methods are safe
// for concurrent use, allocate nothing, and do nothing on a nil
// *RateLimit.
type RateLimit struct {
	results   [len(rateLimitResults)]prometheus.Counter
	fallbacks prometheus.Counter
	evictions prometheus.Counter
}

// RateLimit returns the metrics handle of the limit called limit, whose key
// comes from keyClass (client_ip, header, ...). Handles are cached: a
// reload that keeps a limit keeps its series. A nil m returns nil.
func (m *Metrics) RateLimit(limit, keyClass string) *RateLimit {
	if m == nil {
		return nil
	}
	v := m.rateLimit
	v.mu.Lock()
	defer v.mu.Unlock()
	k := [2]string{limit, keyClass}
	if r := v.limits[k]; r != nil {
		return r
	}
	r := &RateLimit{
		fallbacks: v.fallbacks.WithLabelValues(limit),
		evictions: v.evictions.WithLabelValues(limit),
	}
	for i, res := range rateLimitResults {
		r.results[i] = v.decisions.WithLabelValues(limit, keyClass, res)
	}
	v.limits[k] = r
	return r
}

// Decided counts a decision with result (RateLimitAdmitted, ...).
func (r *RateLimit) Decided(result int) {
	if r != nil {
		r.results[result].Inc()
	}
}

// Fallback counts a decision the on_failure policy made.
func (r *RateLimit) Fallback() {
	if r != nil {
		r.fallbacks.Inc()
	}
}

// Evicted counts a key forgotten to stay within max_keys.
func (r *RateLimit) Evicted() {
	if r != nil {
		r.evictions.Inc()
	}
}

// ResultCounter returns the counter of result, for tests.
func (r *RateLimit) ResultCounter(result int) prometheus.Counter { return r.results[result] }
