package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// concurrencyResults are the result label values of
// penstock_concurrency_requests_total, in admission.Result order.
var concurrencyResults = [...]string{"admitted", "rejected", "queue_timeout", "canceled"}

// ConcurrencyState is what a concurrency limit reports when scraped.
type ConcurrencyState struct {
	// Limit is the current limit (per key for a keyed limit).
	Limit int
	// InFlight and Queued are the requests holding and waiting for a slot
	// (summed over keys for a keyed limit).
	InFlight, Queued int
	// MinRTT is the adaptive limit's no-load latency; 0 for a fixed limit.
	MinRTT time.Duration
}

// concurrencyCollector exports the concurrency limits' counters, and
// their gauges read from the limits themselves when scraped: the request
// path updates no gauge.
type concurrencyCollector struct {
	requests *prometheus.CounterVec
	limit    *prometheus.Desc
	inFlight *prometheus.Desc
	queued   *prometheus.Desc
	minRTT   *prometheus.Desc

	mu     sync.Mutex
	limits map[concurrencyKey]*Concurrency
}

type concurrencyKey struct{ scope, name string }

func newConcurrencyCollector() *concurrencyCollector {
	labels := []string{"scope", "name"}
	return &concurrencyCollector{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_concurrency_requests_total",
			Help: "Requests that met a concurrency limit, by result (admitted, rejected, queue_timeout, canceled).",
		}, []string{"scope", "name", "result"}),
		limit: prometheus.NewDesc("penstock_concurrency_limit",
			"Current concurrency limit (adaptive limits move; per key for keyed limits).", labels, nil),
		inFlight: prometheus.NewDesc("penstock_concurrency_in_flight",
			"Requests holding a slot of the concurrency limit.", labels, nil),
		queued: prometheus.NewDesc("penstock_concurrency_queued",
			"Requests waiting in the concurrency limit's queue.", labels, nil),
		minRTT: prometheus.NewDesc("penstock_concurrency_min_rtt_seconds",
			"No-load latency measured by the adaptive concurrency limit's last probe.", labels, nil),
		limits: map[concurrencyKey]*Concurrency{},
	}
}

// Describe implements prometheus.Collector.
func (c *concurrencyCollector) Describe(ch chan<- *prometheus.Desc) {
	c.requests.Describe(ch)
	ch <- c.limit
	ch <- c.inFlight
	ch <- c.queued
	ch <- c.minRTT
}

// Collect implements prometheus.Collector.
func (c *concurrencyCollector) Collect(ch chan<- prometheus.Metric) {
	c.requests.Collect(ch)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, h := range c.limits {
		h.mu.Lock()
		src, adaptive := h.src, h.adaptive
		h.mu.Unlock()
		if src == nil {
			continue
		}
		s := src()
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, k.scope, k.name)
		}
		gauge(c.limit, float64(s.Limit))
		gauge(c.inFlight, float64(s.InFlight))
		gauge(c.queued, float64(s.Queued))
		if adaptive {
			gauge(c.minRTT, s.MinRTT.Seconds())
		}
	}
}

// Concurrency is the pre-resolved metrics of one concurrency limit. Its
// methods are safe for concurrent use; Count allocates nothing.
type Concurrency struct {
	results [len(concurrencyResults)]prometheus.Counter

	mu       sync.Mutex
	src      func() ConcurrencyState
	adaptive bool
}

// Concurrency returns the metrics of the concurrency limit of scope
// ("route" or "upstream") called name. Handles are cached, so a reload
// that keeps the limit keeps its series.
func (m *Metrics) Concurrency(scope, name string) *Concurrency {
	c := m.concurrency
	c.mu.Lock()
	defer c.mu.Unlock()
	k := concurrencyKey{scope, name}
	if h := c.limits[k]; h != nil {
		return h
	}
	h := &Concurrency{}
	for i, r := range concurrencyResults {
		h.results[i] = c.requests.WithLabelValues(scope, name, r)
	}
	c.limits[k] = h
	return h
}

// Count counts one request with result i, an admission.Result (0
// admitted, 1 rejected, 2 queue_timeout, 3 canceled).
func (c *Concurrency) Count(i int) { c.results[i].Inc() }

// Observe sets where the limit's gauges are read when scraped: the limit
// of the latest configuration. adaptive adds the min RTT gauge.
func (c *Concurrency) Observe(src func() ConcurrencyState, adaptive bool) {
	c.mu.Lock()
	c.src, c.adaptive = src, adaptive
	c.mu.Unlock()
}
