package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// outcomes are the outcome label values of upstream attempts.
var outcomes = [...]string{"ok", "connect_error", "timeout", "truncated", "error"}

type upstreamKey struct{ pool, endpoint string }

// Upstream is the pre-resolved metrics of one endpoint of one upstream
// pool. Its methods are safe for concurrent use.
type Upstream struct {
	byOutcome [len(outcomes)]struct {
		duration prometheus.Observer
		attempts prometheus.Counter
	}
}

// Upstream returns the metrics handle of endpoint in pool, cached by
// (pool, endpoint). Its series for every outcome exist from this call on,
// so a rate over failures reads 0 rather than nothing before the first
// failure.
func (m *Metrics) Upstream(pool, endpoint string) *Upstream {
	k := upstreamKey{pool, endpoint}
	m.mu.Lock()
	defer m.mu.Unlock()
	if u := m.upstreams[k]; u != nil {
		return u
	}
	u := &Upstream{}
	for i, o := range outcomes {
		u.byOutcome[i].duration = m.upDuration.WithLabelValues(pool, endpoint, o)
		u.byOutcome[i].attempts = m.upAttempts.WithLabelValues(pool, endpoint, o)
	}
	m.upstreams[k] = u
	return u
}

// Attempt records one upstream attempt: its duration until response
// headers (or failure) and its outcome, one of "ok" (a response arrived,
// whatever its status, and its body was read to the end), "connect_error",
// "timeout", "truncated" (the response body ended early) and "error"; any
// other outcome is recorded as "error".
func (u *Upstream) Attempt(d time.Duration, outcome string) {
	i := len(outcomes) - 1
	switch outcome {
	case "ok":
		i = 0
	case "connect_error":
		i = 1
	case "timeout":
		i = 2
	case "truncated":
		i = 3
	}
	o := &u.byOutcome[i]
	o.duration.Observe(d.Seconds())
	o.attempts.Inc()
}
