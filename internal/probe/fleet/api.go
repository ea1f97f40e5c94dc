package fleet

import (
	"encoding/json"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/probe"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// metrics are the controller's Prometheus metrics, in its own registry.
type metrics struct {
	results                           *prometheus.CounterVec
	moved, duplicates, resent, cycles prometheus.Counter
	cycle                             prometheus.Gauge
	lastMu                            sync.Mutex
	last                              map[string]map[string]VantageResult
}

// VantageResult is a target's last result seen from one vantage point.
type VantageResult struct {
	Success  bool         `json:"success"`
	Reason   probe.Reason `json:"reason,omitempty"`
	Duration float64      `json:"duration_seconds"`
	At       time.Time    `json:"at"`
}

func newMetrics(c *Controller, reg *prometheus.Registry) *metrics {
	m := &metrics{
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "penstock_probe_results_total",
			Help: "Results kept by the controller, by module, failure reason (empty: success) and the agent's vantage point"}, []string{"module", "reason", "vantage"}),
		moved: prometheus.NewCounter(prometheus.CounterOpts{Name: "penstock_probe_fleet_leases_moved_total",
			Help: "Shard leases that timed out or were given back and went to the queue again"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{Name: "penstock_probe_fleet_duplicate_results_total",
			Help: "Results dropped because their target's result in that cycle had already come"}),
		resent: prometheus.NewCounter(prometheus.CounterOpts{Name: "penstock_probe_fleet_resent_batches_total",
			Help: "Result batches an agent sent again after reconnecting that had already been applied"}),
		cycles: prometheus.NewCounter(prometheus.CounterOpts{Name: "penstock_probe_fleet_cycles_total", Help: "Cycles completed"}),
		cycle:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "penstock_probe_fleet_cycle", Help: "The number of the current (or last) cycle"}),
		last:   map[string]map[string]VantageResult{},
	}
	agents := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "penstock_probe_fleet_agent_up",
		Help: "1 for an agent heard of within the lease timeout, 0 for one gone, by vantage point and agent id"}, []string{"vantage", "agent"})
	reg.MustRegister(m.results, m.moved, m.duplicates, m.resent, m.cycles, m.cycle, agentCollector{fill: func(ch chan<- prometheus.Metric) {
		agents.Reset()
		for _, a := range c.Agents() {
			v := 0.0
			if a.Healthy {
				v = 1
			}
			agents.WithLabelValues(a.Vantage, a.ID).Set(v)
		}
		agents.Collect(ch)
	}, gauge: agents})
	return m
}

// addTarget records a target's result from a vantage point.
func (m *metrics) addTarget(target, vantage string, r *probe.Result) {
	m.lastMu.Lock()
	defer m.lastMu.Unlock()
	byV := m.last[target]
	if byV == nil {
		byV = map[string]VantageResult{}
		m.last[target] = byV
	}
	byV[vantage] = VantageResult{Success: r.Success, Reason: r.Reason, Duration: time.Duration(r.Duration).Seconds(), At: r.Start}
}

// agentCollector fills the agents' gauge from the controller's table at
// each collection.
type agentCollector struct {
	fill  func(chan<- prometheus.Metric)
	gauge *prometheus.GaugeVec
}

func (a agentCollector) Collect(ch chan<- prometheus.Metric) { a.fill(ch) }
func (a agentCollector) Describe(ch chan<- *prometheus.Desc) { a.gauge.Describe(ch) }

func (c *Controller) metricsHandler() http.Handler {
	return promhttp.HandlerFor(c.reg, promhttp.HandlerOpts{})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func (c *Controller) serveAgents(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, c.Agents())
}

// ResultsInfo is /results: the cycles done, the current one's progress,
// and the counts by module, reason and vantage point.
type ResultsInfo struct {
	Cycle    uint64         `json:"cycle"`
	Received uint64         `json:"received"`
	Targets  uint64         `json:"targets"`
	Done     []CycleSummary `json:"cycles_done"`
	Counts   []Count        `json:"counts"`
}

// Count is the number of results of one module, reason and vantage.
type Count struct {
	Module  string  `json:"module"`
	Reason  string  `json:"reason,omitempty"`
	Vantage string  `json:"vantage"`
	Results float64 `json:"results"`
}

func (c *Controller) serveResults(w http.ResponseWriter, r *http.Request) {
	if t := r.URL.Query().Get("target"); t != "" {
		// One target, seen from each vantage point.
		c.m.lastMu.Lock()
		byV := c.m.last[t]
		out := make(map[string]VantageResult, len(byV))
		for k, v := range byV {
			out[k] = v
		}
		c.m.lastMu.Unlock()
		if len(out) == 0 {
			http.Error(w, "no result for this target yet", http.StatusNotFound)
			return
		}
		writeJSON(w, map[string]any{"target": t, "vantages": out})
		return
	}
	info := ResultsInfo{Done: c.Cycles()}
	info.Cycle, info.Received = c.Received()
	c.mu.Lock()
	info.Targets = c.set.targets.Len()
	c.mu.Unlock()
	ch := make(chan prometheus.Metric, 64)
	go func() { c.m.results.Collect(ch); close(ch) }()
	for m := range ch {
		var pb dto.Metric
		if m.Write(&pb) != nil {
			continue
		}
		cnt := Count{Results: pb.GetCounter().GetValue()}
		for _, l := range pb.GetLabel() {
			switch l.GetName() {
			case "module":
				cnt.Module = l.GetValue()
			case "reason":
				cnt.Reason = l.GetValue()
			case "vantage":
				cnt.Vantage = l.GetValue()
			}
		}
		info.Counts = append(info.Counts, cnt)
	}
	sort.Slice(info.Counts, func(i, j int) bool {
		a, b := info.Counts[i], info.Counts[j]
		if a.Module != b.Module {
			return a.Module < b.Module
		}
		if a.Vantage != b.Vantage {
			return a.Vantage < b.Vantage
		}
		return a.Reason < b.Reason
	})
	writeJSON(w, info)
}
