package metrics

import (
	"encoding/hex"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of a Route that is not a configured route, or of a route
// without a host pattern. An empty label value is the same as a missing
// label to Prometheus, and some tools reject it.
const (
	unmatchedRoute = "none"
	anyHost        = "*"
)

// methods are the method label values; Done maps a method to its index
// with methodIndex. The last one collects every other method, which keeps
// the label's cardinality bounded whatever clients send.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "_OTHER"}

var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

type routeKey struct{ name, host string }

// Route is the pre-resolved metrics of one route. Its methods are safe for
// concurrent use.
type Route struct {
	m            *Metrics
	name, host   string
	active       prometheus.Gauge
	traceMissing prometheus.Counter
	// series is filled on first use of each (method, status class), so a
	// route exports only the combinations it has served.
	series [len(methods)][len(statusClasses)]atomic.Pointer[routeSeries]
	// grpc holds the gRPC call counters by status code (GRPCDone).
	grpc [grpcCodes + 2]atomic.Pointer[prometheus.Counter]
}

type routeSeries struct {
	duration prometheus.Observer
	exemplar prometheus.ExemplarObserver // duration, if it takes exemplars
	reqSize  prometheus.Observer
	respSize prometheus.Observer
}

// Route returns the metrics handle of the route named name, whose host
// pattern is host (used only with metrics.per_host; "" means any host and
// is labelled "*"). Route("", "") is the handle for requests that matched
// no route, labelled route="none". Handles are cached by (name, host):
// a reload that keeps a route gets the same handle and the same series.
func (m *Metrics) Route(name, host string) *Route {
	if name == "" {
		name = unmatchedRoute
	}
	if !m.perHost {
		host = ""
	} else if host == "" {
		host = anyHost
	}
	k := routeKey{name, host}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r := m.routes[k]; r != nil {
		return r
	}
	r := &Route{
		m:            m,
		name:         name,
		host:         host,
		active:       m.active.WithLabelValues(name),
		traceMissing: m.traceMissing.WithLabelValues(name),
	}
	m.routes[k] = r
	return r
}

// Start records a request entering the route: active requests +1. Every
// Start must be followed by one Done.
func (r *Route) Start() { r.active.Inc() }

// Done records a finished request: active requests -1, and its duration
// and body sizes (negative sizes count as 0) under its method and status
// class. When sampled is true and traceID is not nil, the duration carries
// the exemplar {trace_id="<32 hex>"}. Done does not allocate unless it adds
// an exemplar or serves a (method, status class) for the first time.
func (r *Route) Done(method string, status int, d time.Duration, bytesIn, bytesOut int64, traceID *[16]byte, sampled bool) {
	r.active.Dec()
	s := r.seriesFor(methodIndex(method), statusClassIndex(status))
	secs := d.Seconds()
	if sampled && traceID != nil && s.exemplar != nil {
		// Exemplars allocate (a label map and the hex string): they are for
		// sampled traces only.
		s.exemplar.ObserveWithExemplar(secs, prometheus.Labels{"trace_id": hex.EncodeToString(traceID[:])})
	} else {
		s.duration.Observe(secs)
	}
	s.reqSize.Observe(float64(max(bytesIn, 0)))
	s.respSize.Observe(float64(max(bytesOut, 0)))
}

// TraceContextMissing counts a request of the route that carried no usable
// trace context.
func (r *Route) TraceContextMissing() { r.traceMissing.Inc() }

func (r *Route) seriesFor(mi, ci int) *routeSeries {
	slot := &r.series[mi][ci]
	if s := slot.Load(); s != nil {
		return s
	}
	labels := []string{r.name, methods[mi], statusClasses[ci]}
	if r.m.perHost {
		labels = []string{r.name, r.host, methods[mi], statusClasses[ci]}
	}
	s := &routeSeries{
		duration: r.m.reqDuration.WithLabelValues(labels...),
		reqSize:  r.m.reqSize.WithLabelValues(labels...),
		respSize: r.m.respSize.WithLabelValues(labels...),
	}
	s.exemplar, _ = s.duration.(prometheus.ExemplarObserver)
	// Two first requests may race here: both resolve the same children, so
	// whichever store wins is equivalent.
	if !slot.CompareAndSwap(nil, s) {
		return slot.Load()
	}
	return s
}

// methodIndex maps a request method to its index in methods. Methods are
// case-sensitive (RFC 9110, section 9.1): "get" is _OTHER.
func methodIndex(method string) int {
	switch method {
	case "GET":
		return 0
	case "HEAD":
		return 1
	case "POST":
		return 2
	case "PUT":
		return 3
	case "DELETE":
		return 4
	case "PATCH":
		return 5
	case "OPTIONS":
		return 6
	}
	return len(methods) - 1
}

// statusClassIndex maps a status code to its index in statusClasses. A code
// outside 100–599 is not a valid HTTP status; it counts as a server error.
func statusClassIndex(status int) int {
	if status < 100 || status > 599 {
		return len(statusClasses) - 1
	}
	return status/100 - 1
}
