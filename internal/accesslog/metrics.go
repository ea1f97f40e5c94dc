package accesslog

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a Log call in penstock_access_log_lines_total.
const (
	resultWritten     = "written"
	resultBufferFull  = "dropped_buffer_full"
	resultRateLimited = "dropped_rate_limit"
	resultSampledOut  = "sampled_out"
)

// metrics are the access log's counters. The series used on every request
// are resolved once, so counting is an atomic add.
type metrics struct {
	lines   *prometheus.CounterVec
	sampled *prometheus.CounterVec
	failed  prometheus.Counter

	written, bufferFull, rateLimited, sampledOut prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_access_log_lines_total",
			Help: "Access log lines by result: written, dropped_buffer_full, dropped_rate_limit (max_lines_per_second), sampled_out (by a sampling rule).",
		}, []string{"result"}),
		sampled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_access_log_sampled_total",
			Help: "Access log sampling decisions made by a rule, by rule name and decision (keep, drop).",
		}, []string{"rule", "decision"}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "penstock_access_log_write_errors_total",
			Help: "Access log lines lost because writing them to the output failed.",
		}),
	}
	if reg != nil {
		var err error
		if m.lines, err = register(reg, m.lines); err != nil {
			return nil, err
		}
		if m.sampled, err = register(reg, m.sampled); err != nil {
			return nil, err
		}
		if m.failed, err = register(reg, m.failed); err != nil {
			return nil, err
		}
	}
	// Every result exists from the start, so that rate() and alerts see
	// zeros rather than absent series.
	m.written = m.lines.WithLabelValues(resultWritten)
	m.bufferFull = m.lines.WithLabelValues(resultBufferFull)
	m.rateLimited = m.lines.WithLabelValues(resultRateLimited)
	m.sampledOut = m.lines.WithLabelValues(resultSampledOut)
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name: a Logger re-created in the same process (a restart of the
// gateway's serving loop, tests) keeps counting on the same series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}
