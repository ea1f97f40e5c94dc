package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// BatchResults are the result label values of
// penstock_batch_requests_total: batched (sent as part of a batch
// request), alone (forwarded on its own: not batchable, or the only one
// of its batch) and refused (the batch queue was full).
var BatchResults = [...]string{"batched", "alone", "refused"}

// Batch results, indexes into BatchResults.
const (
	BatchBatched = iota
	BatchAlone
	BatchRefused
)

// batchVecs holds the dynamic batching metrics and the handles resolved
// from them.
type batchVecs struct {
	requests *prometheus.CounterVec
	size     *prometheus.HistogramVec
	fill     *prometheus.HistogramVec
	delay    *prometheus.HistogramVec

	mu     sync.Mutex
	routes map[string]*Batch
}

func newBatchVecs() *batchVecs {
	return &batchVecs{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_batch_requests_total",
			Help: "Requests of batching routes, by route and result (batched, alone, refused).",
		}, []string{"route", "result"}),
		size: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_batch_size",
			Help:    "Items per batch request sent upstream, by route.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}, []string{"route"}),
		fill: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_batch_fill_ratio",
			Help:    "Items per batch request over the route's max_batch_size.",
			Buckets: []float64{0.1, 0.25, 0.5, 0.75, 0.9, 1},
		}, []string{"route"}),
		delay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_batch_queue_wait_seconds",
			Help:    "Time from a batch's first item to the batch being sent, by route.",
			Buckets: []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1},
		}, []string{"route"}),
		routes: make(map[string]*Batch),
	}
}

func (v *batchVecs) collectors() []prometheus.Collector {
	return []prometheus.Collector{v.requests, v.size, v.fill, v.delay}
}

// Batch is a batching route's metrics, resolved once per route.
type Batch struct {
	// Requests counts requests by result, indexed by BatchBatched,
	// BatchAlone and BatchRefused.
	Requests [len(BatchResults)]prometheus.Counter
	// Size observes the items of each batch sent.
	Size prometheus.Observer
	// Fill observes each batch's items over max_batch_size.
	Fill prometheus.Observer
	// Wait observes each batch's time in the queue, in seconds.
	Wait prometheus.Observer
}

// Batch returns the batching metrics of the route named route. Handles
// are cached, so a reload keeps the route's series.
func (m *Metrics) Batch(route string) *Batch {
	v := m.batch
	v.mu.Lock()
	defer v.mu.Unlock()
	if b := v.routes[route]; b != nil {
		return b
	}
	b := &Batch{
		Size: v.size.WithLabelValues(route),
		Fill: v.fill.WithLabelValues(route),
		Wait: v.delay.WithLabelValues(route),
	}
	for i, r := range BatchResults {
		b.Requests[i] = v.requests.WithLabelValues(route, r)
	}
	v.routes[route] = b
	return b
}
