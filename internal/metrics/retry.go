package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// RetryReasons are the reason label values of penstock_retries_total: the
// retry conditions of a route's retry policy, and hedge (a hedged attempt).
var RetryReasons = [...]string{"connect_failure", "reset", "timeout", "502", "503", "504", "hedge"}

// Retry reasons, indexes into RetryReasons, for Retries.Retry.
const (
	RetryConnectFailure = iota
	RetryReset
	RetryTimeout
	Retry502
	Retry503
	Retry504
	RetryHedge
)

// retryVecs holds penstock_retries_total and the handles resolved from it.
type retryVecs struct {
	retries        *prometheus.CounterVec
	hedgesCanceled *prometheus.CounterVec

	mu     sync.Mutex
	routes map[string]*Retries
}

func newRetryVecs() *retryVecs {
	return &retryVecs{
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_retries_total",
			Help: "Retries of failed upstream attempts, by route, reason and result (sent, or budget_exhausted: refused by the route's retry budget).",
		}, []string{"route", "reason", "result"}),
		hedgesCanceled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_hedge_attempts_canceled_total",
			Help: "Attempts of hedged requests canceled because another attempt's response head came first, by route.",
		}, []string{"route"}),
		routes: make(map[string]*Retries),
	}
}

// Retries is the pre-resolved retry metrics of one route. Its methods are
// safe for concurrent use and allocate nothing.
type Retries struct {
	sent, exhausted [len(RetryReasons)]prometheus.Counter
	hedgesCanceled  prometheus.Counter
}

// Retries returns the retry metrics of the route named route. Handles are
// cached by name, so a reload that keeps the route keeps its series; they
// exist from this call on, so a rate reads 0 rather than nothing.
func (m *Metrics) Retries(route string) *Retries {
	v := m.retry
	v.mu.Lock()
	defer v.mu.Unlock()
	if r := v.routes[route]; r != nil {
		return r
	}
	r := &Retries{hedgesCanceled: v.hedgesCanceled.WithLabelValues(route)}
	for i, reason := range RetryReasons {
		r.sent[i] = v.retries.WithLabelValues(route, reason, "sent")
		r.exhausted[i] = v.retries.WithLabelValues(route, reason, "budget_exhausted")
	}
	v.routes[route] = r
	return r
}

// Retry counts one retry for reason (an index into RetryReasons): sent, or
// refused by the budget.
func (r *Retries) Retry(reason int, sent bool) {
	if sent {
		r.sent[reason].Inc()
	} else {
		r.exhausted[reason].Inc()
	}
}

// HedgesCanceled counts n attempts of a hedged request canceled because
// another attempt answered first.
func (r *Retries) HedgesCanceled(n int) { r.hedgesCanceled.Add(float64(n)) }
