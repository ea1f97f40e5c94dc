package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// configMetrics are the gateway's own metrics: configuration loads and reloads.
type configMetrics struct {
	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	generation  prometheus.Gauge
}

func newConfigMetrics(reg prometheus.Registerer) *configMetrics {
	m := &configMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_config_reloads_total",
			Help: "Configuration reloads by result (success, failure).",
		}, []string{"result"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "penstock_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load.",
		}),
		generation: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "penstock_config_generation",
			Help: "Configurations loaded since start: 1 for the first, +1 per successful reload.",
		}),
	}
	// Both results exist from the start so rate() and alerts see zeros.
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("failure")
	if reg != nil {
		reg.MustRegister(m.reloads, m.lastSuccess, m.generation)
	}
	return m
}

// loaded records a successful load of configuration generation gen.
func (m *configMetrics) loaded(gen uint64) {
	if gen > 1 {
		m.reloads.WithLabelValues("success").Inc()
	}
	m.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
	m.generation.Set(float64(gen))
}

// failed records a reload that was refused.
func (m *configMetrics) failed() { m.reloads.WithLabelValues("failure").Inc() }
