package metrics

import "github.com/prometheus/client_golang/prometheus"

// Upstream protection metrics (active health checks, outlier ejection,
// circuit breakers):
//
//	Metric                                          Type     Labels
//	penstock_upstream_health_checks_total           counter  upstream, endpoint, result
//	penstock_upstream_endpoint_up                   gauge    upstream, endpoint
//	penstock_upstream_breaker_state                 gauge    upstream, endpoint
//	penstock_upstream_breaker_transitions_total     counter  upstream, endpoint, state
//	penstock_upstream_ejections_total               counter  upstream, endpoint, reason
//	penstock_upstream_warmups_total                 counter  upstream, endpoint, result
//	penstock_upstream_warmup_requests_total         counter  upstream, endpoint
//
// result is "passed" or "failed"; penstock_upstream_endpoint_up is 1 while
// active checks keep the endpoint in rotation, 0 while they keep it out;
// penstock_upstream_breaker_state is 0 closed, 1 open, 2 half-open, and
// the transitions counter is labelled with the state entered. The pool's
// own breaker has endpoint="" (the label is absent). reason is
// consecutive_5xx, consecutive_gateway_failure, success_rate or latency.
// A warm-up's result is "passed" or "failed" (timed out, or the pool
// stopped).
// The series are written when something happens (a check, a transition, an
// ejection), never on the request path.

type protectionVecs struct {
	checks      *prometheus.CounterVec
	up          *prometheus.GaugeVec
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	ejections   *prometheus.CounterVec
	warmups     *prometheus.CounterVec
	warmupReqs  *prometheus.CounterVec
}

func newProtectionVecs() *protectionVecs {
	ep := []string{"upstream", "endpoint"}
	return &protectionVecs{
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_upstream_health_checks_total",
			Help: "Active health checks of upstream endpoints, by result (passed, failed).",
		}, append(ep, "result")),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_upstream_endpoint_up",
			Help: "1 while active health checks keep the endpoint in rotation, 0 while they keep it out.",
		}, ep),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_upstream_breaker_state",
			Help: "Circuit breaker state: 0 closed, 1 open, 2 half-open; endpoint is empty for the pool's breaker.",
		}, ep),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_upstream_breaker_transitions_total",
			Help: "Circuit breaker transitions, by the state entered (closed, open, half_open).",
		}, append(ep, "state")),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_upstream_ejections_total",
			Help: "Outlier ejections of upstream endpoints, by reason.",
		}, append(ep, "reason")),
		warmups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_upstream_warmups_total",
			Help: "Warm-ups of endpoints coming back into rotation, by result (passed, failed).",
		}, append(ep, "result")),
		warmupReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_upstream_warmup_requests_total",
			Help: "Warm-up requests sent to endpoints before they rejoined rotation.",
		}, ep),
	}
}

func (v *protectionVecs) collectors() []prometheus.Collector {
	return []prometheus.Collector{v.checks, v.up, v.state, v.transitions, v.ejections, v.warmups, v.warmupReqs}
}

// Protection records upstream protection events. It implements
// upstream.Observer; its methods are safe for concurrent use.
type Protection struct{ v *protectionVecs }

// Protection returns the handle pools report their protection events to.
func (m *Metrics) Protection() *Protection { return &Protection{m.protection} }

// HealthCheck counts one active health check.
func (p *Protection) HealthCheck(pool, endpoint string, passed bool) {
	result := "failed"
	if passed {
		result = "passed"
	}
	p.v.checks.WithLabelValues(pool, endpoint, result).Inc()
}

// HealthChanged sets the endpoint's up gauge.
func (p *Protection) HealthChanged(pool, endpoint string, up bool) {
	g := 0.0
	if up {
		g = 1
	}
	p.v.up.WithLabelValues(pool, endpoint).Set(g)
}

// BreakerChanged sets a breaker's state gauge and counts the transition.
func (p *Protection) BreakerChanged(pool, endpoint, state string) {
	g := 0.0
	switch state {
	case "open":
		g = 1
	case "half_open":
		g = 2
	}
	p.v.state.WithLabelValues(pool, endpoint).Set(g)
	p.v.transitions.WithLabelValues(pool, endpoint, state).Inc()
}

// BreakerStarted shows a new breaker as closed.
func (p *Protection) BreakerStarted(pool, endpoint string) {
	p.v.state.WithLabelValues(pool, endpoint).Set(0)
}

// Ejected counts an outlier ejection.
func (p *Protection) Ejected(pool, endpoint, reason string) {
	p.v.ejections.WithLabelValues(pool, endpoint, reason).Inc()
}

// Warmup counts one finished warm-up and the requests it sent.
func (p *Protection) Warmup(pool, endpoint string, passed bool, requests int) {
	result := "failed"
	if passed {
		result = "passed"
	}
	p.v.warmups.WithLabelValues(pool, endpoint, result).Inc()
	p.v.warmupReqs.WithLabelValues(pool, endpoint).Add(float64(requests))
}
