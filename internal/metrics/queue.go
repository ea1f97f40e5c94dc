package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// QueueResults are the result label values of penstock_queue_requests_total:
// admitted, queue_full (the level's max_queue or max_tenants reached),
// queue_timeout (waited the level's max_wait), deadline_unreachable (refused
// on arrival: its deadline could not be met), deadline_expired (its deadline
// came while it waited) and canceled (the client left while it waited). The
// order is admission.Result's.
var QueueResults = [...]string{"admitted", "queue_full", "queue_timeout", "canceled", "deadline_unreachable", "deadline_expired"}

// queueVecs holds the priority queue metrics and the handles resolved from
// them.
type queueVecs struct {
	requests *prometheus.CounterVec
	wait     *prometheus.HistogramVec
	length   *prometheus.GaugeVec
	tenant   *prometheus.CounterVec
	tenWait  *prometheus.HistogramVec

	mu      sync.Mutex
	levels  map[[2]string]*QueueLevel
	tenants map[[2]string]*QueueTenant
}

var queueBuckets = []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func newQueueVecs() *queueVecs {
	return &queueVecs{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_queue_requests_total",
			Help: "Requests of routes with a priority queue, by route, level and result (admitted, or the reason of a refusal).",
		}, []string{"route", "level", "result"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_queue_wait_seconds",
			Help:    "Time admitted requests waited in a route's priority queue, by route and level.",
			Buckets: queueBuckets,
		}, []string{"route", "level"}),
		length: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_queue_length",
			Help: "Requests waiting in a route's priority queue, by route and level (as last seen by a request of the level).",
		}, []string{"route", "level"}),
		tenant: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_queue_tenant_requests_total",
			Help: "Requests of routes with a priority queue, by route, tenant (those the configuration names; others are \"other\") and result.",
		}, []string{"route", "tenant", "result"}),
		tenWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_queue_tenant_wait_seconds",
			Help:    "Time admitted requests waited in a route's priority queue, by route and tenant (those the configuration names; others are \"other\").",
			Buckets: queueBuckets,
		}, []string{"route", "tenant"}),
		levels:  make(map[[2]string]*QueueLevel),
		tenants: make(map[[2]string]*QueueTenant),
	}
}

func (v *queueVecs) collectors() []prometheus.Collector {
	return []prometheus.Collector{v.requests, v.wait, v.length, v.tenant, v.tenWait}
}

// QueueLevel is one level of a route's priority queue: its metrics,
// resolved once.
type QueueLevel struct {
	// Results counts requests by result, indexed as QueueResults.
	Results [len(QueueResults)]prometheus.Counter
	// Wait observes admitted requests' wait, in seconds.
	Wait prometheus.Observer
	// Length is the level's waiting requests.
	Length prometheus.Gauge
}

// QueueTenant is one tenant of a route's priority queue.
type QueueTenant struct {
	// Results counts requests by result, indexed as QueueResults.
	Results [len(QueueResults)]prometheus.Counter
	// Wait observes admitted requests' wait, in seconds.
	Wait prometheus.Observer
}

// QueueLevel returns the metrics of level of the route named route.
func (m *Metrics) QueueLevel(route, level string) *QueueLevel {
	v := m.queue
	v.mu.Lock()
	defer v.mu.Unlock()
	k := [2]string{route, level}
	if l := v.levels[k]; l != nil {
		return l
	}
	l := &QueueLevel{Wait: v.wait.WithLabelValues(route, level), Length: v.length.WithLabelValues(route, level)}
	for i, r := range QueueResults {
		l.Results[i] = v.requests.WithLabelValues(route, level, r)
	}
	v.levels[k] = l
	return l
}

// QueueTenant returns the metrics of tenant of the route named route.
func (m *Metrics) QueueTenant(route, tenant string) *QueueTenant {
	v := m.queue
	v.mu.Lock()
	defer v.mu.Unlock()
	k := [2]string{route, tenant}
	if t := v.tenants[k]; t != nil {
		return t
	}
	t := &QueueTenant{Wait: v.tenWait.WithLabelValues(route, tenant)}
	for i, r := range QueueResults {
		t.Results[i] = v.tenant.WithLabelValues(route, tenant, r)
	}
	v.tenants[k] = t
	return t
}
