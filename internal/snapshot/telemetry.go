package snapshot

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/accesslog"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/tracing"
)

// Telemetry is the part of observability that outlives snapshots: the
// metric families (a registry cannot be rebuilt per reload without
// resetting counters; metrics.* changes need a restart, see
// config.Static) and what a new access log output or tracer registers on.
type Telemetry struct {
	// Metrics are the process's metrics. Required.
	Metrics *metrics.Metrics
	// Registerer receives the access log's counters. Nil means none are
	// exported.
	Registerer prometheus.Registerer
	// Version is penstock's version, recorded on spans.
	Version string
}

// observe gives s its tracer and access log: prev's when the parts that
// make them (exporter, endpoint and service name; output, format, buffer
// and enabled) did not change, else new ones, so that a reload changing
// tracing.exporter or access_log.output takes effect. Retire closes the
// ones a later snapshot does not take over.
func (s *Snapshot) observe(cfg *config.Config, prev *Snapshot, tel *Telemetry) error {
	var err error
	if prev != nil && sameExporter(prev.Config.Tracing, cfg.Tracing) {
		s.Tracer = prev.Tracer
	} else if s.Tracer, err = tracing.New(context.Background(), cfg.Tracing, tel.Version); err != nil {
		return err
	}
	if prev != nil && sameOutput(prev.Config.AccessLog, cfg.AccessLog) {
		s.AccessLog, err = prev.AccessLog.WithRules(cfg)
	} else {
		s.AccessLog, err = accesslog.New(cfg, tel.Registerer)
	}
	return err
}

// sameExporter reports whether a and b make the same tracer; propagation
// and sample_ratio are read per request from the snapshot.
func sameExporter(a, b config.Tracing) bool {
	return a.Exporter == b.Exporter && a.Endpoint == b.Endpoint && a.ServiceName == b.ServiceName
}

// sameOutput reports whether a and b write access log lines the same way;
// the rest (sampling, path, rate cap) is compiled per snapshot (WithRules).
func sameOutput(a, b config.AccessLog) bool {
	return a.On() == b.On() && a.Output == b.Output && a.Format == b.Format && a.Buffer == b.Buffer
}
