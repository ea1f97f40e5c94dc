package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Exporter answers blackbox_exporter's /probe?target=…&module=… with one
// probe's metrics, in a fresh registry per scrape. Its modules are swapped
// whole by SetModules (a reload); scrapes in flight keep the modules they
// started with.
type Exporter struct {
	// Prober runs the probes.
	Prober *Prober
	// TimeoutOffset is subtracted from Prometheus's scrape timeout
	// (X-Prometheus-Scrape-Timeout-Seconds) to leave time for the answer.
	// Default 0.5 s, blackbox_exporter's.
	TimeoutOffset time.Duration

	modules atomic.Pointer[Modules]
	// Probes counts the probes served, by module and result, for the
	// exporter's own /metrics.
	probes *prometheus.CounterVec
}

// NewExporter makes an exporter serving mods and registers its own
// counters in reg (nil: none).
func NewExporter(mods *Modules, reg prometheus.Registerer) *Exporter {
	e := &Exporter{Prober: &Prober{}, TimeoutOffset: 500 * time.Millisecond}
	e.modules.Store(mods)
	e.probes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "penstock_probe_probes_total", Help: "Probes served by the exporter, by module and reason (empty: success)",
	}, []string{"module", "reason"})
	if reg != nil {
		reg.MustRegister(e.probes)
	}
	return e
}

// SetModules swaps the modules in.
func (e *Exporter) SetModules(m *Modules) { e.modules.Store(m) }

// Modules returns the modules in use.
func (e *Exporter) Modules() *Modules { return e.modules.Load() }

// ServeHTTP serves /probe. Parameters: target (required), module (default
// http_2xx, blackbox_exporter's) and debug=true for the probe's result as
// JSON instead of metrics.
func (e *Exporter) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	target := q.Get("target")
	if target == "" {
		http.Error(w, "Target parameter is missing", http.StatusBadRequest)
		return
	}
	name := q.Get("module")
	if name == "" {
		name = "http_2xx"
	}
	mods := e.modules.Load()
	m, ok := mods.Modules[name]
	if !ok {
		http.Error(w, fmt.Sprintf("Unknown module %q", name), http.StatusBadRequest)
		return
	}
	ctx := req.Context()
	if v := req.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"); v != "" {
		if s, err := strconv.ParseFloat(v, 64); err == nil && s > 0 {
			d := time.Duration(s*float64(time.Second)) - e.TimeoutOffset
			if d > 0 && d < time.Duration(m.Timeout) {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
		}
	}
	r := e.Prober.Probe(ctx, target, name, m)
	e.probes.WithLabelValues(name, string(r.Reason)).Inc()
	if q.Get("debug") == "true" {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(r)
		return
	}
	reg := prometheus.NewRegistry()
	Register(reg, r)
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(w, req)
}
