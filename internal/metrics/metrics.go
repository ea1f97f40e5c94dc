// Package metrics defines penstock's Prometheus metrics and the handles the
// request path records them through.
//
// Names use base units and follow OpenTelemetry's HTTP semantic conventions
// where Prometheus allows (a label cannot contain a dot, so http.route is
// "route" and so on). Routes are labelled by their configured name, never by
// the raw path.
//
//	Metric                                          Type       Labels
//	penstock_http_server_request_duration_seconds   histogram  route, [host,] method, status_class
//	penstock_http_server_request_body_size_bytes    histogram  route, [host,] method, status_class
//	penstock_http_server_response_body_size_bytes   histogram  route, [host,] method, status_class
//	penstock_http_server_active_requests            gauge      route
//	penstock_trace_context_missing_total            counter    route
//	penstock_upstream_request_duration_seconds      histogram  upstream, endpoint, outcome
//	penstock_upstream_attempts_total                counter    upstream, endpoint, outcome
//	penstock_retries_total                          counter    route, reason, result
//	penstock_hedge_attempts_canceled_total          counter    route
//	penstock_connections_open                       gauge      listener, protocol
//	penstock_tls_handshakes_total                   counter    listener, version, resumed
//	penstock_tls_reloads_total                      counter    listener, kind, result
//	penstock_tls_certificate_not_after_timestamp_seconds  gauge  listener, cert_file
//	penstock_quic_handshakes_total                  counter    listener, result
//	penstock_quic_retries_total                     counter    listener
//	penstock_quic_smoothed_rtt_seconds              histogram  listener
//	penstock_quic_packets_sent_total                counter    listener
//	penstock_quic_packets_lost_total                counter    listener
//	penstock_cache_lookups_total                    counter    route, result
//	penstock_cache_evictions_total                  counter    route
//	penstock_cache_size_bytes                       gauge      route
//	penstock_cache_entries                          gauge      route
//	penstock_concurrency_requests_total             counter    scope, name, result
//	penstock_concurrency_limit                      gauge      scope, name
//	penstock_concurrency_in_flight                  gauge      scope, name
//	penstock_concurrency_queued                     gauge      scope, name
//	penstock_concurrency_min_rtt_seconds            gauge      scope, name
//	penstock_rate_limit_decisions_total             counter    limit, key_class, result
//	penstock_rate_limit_fallbacks_total             counter    limit
//	penstock_rate_limit_evictions_total             counter    limit
//	penstock_upstream_health_checks_total           counter    upstream, endpoint, result
//	penstock_upstream_endpoint_up                   gauge      upstream, endpoint
//	penstock_upstream_breaker_state                 gauge      upstream, endpoint
//	penstock_upstream_breaker_transitions_total     counter    upstream, endpoint, state
//	penstock_upstream_ejections_total               counter    upstream, endpoint, reason
//
// Label values, all from bounded sets:
//   - route: the route's name; "none" for requests that matched no route.
//   - host: only with metrics.per_host; the route's host pattern, "*" for a
//     route that serves any host.
//   - method: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, or _OTHER for
//     any other method (as OpenTelemetry does).
//   - status_class: 1xx to 5xx; a status outside 100–599 counts as 5xx.
//   - outcome: ok (a response arrived, whatever its status), connect_error,
//     timeout, truncated (the response body ended early) or error.
//   - version: TLS version "1.0" to "1.3"; resumed: "true" or "false".
//   - kind: certificates, client_cas or session_ticket_keys; result of
//     penstock_tls_reloads_total: success or failure.
//   - cert_file: the certificate's configured cert_file, "self_signed" for
//     a generated one.
//   - protocol: "http/1.1" or "h2" (ALPN), "tcp" (plain), "h3" (QUIC).
//   - result of penstock_quic_handshakes_total: "ok" (handshake completed)
//     or "failed" (the connection ended first).
//   - reason of penstock_retries_total: connect_failure, reset, timeout,
//     502, 503, 504 or hedge; result: sent or budget_exhausted.
//
// QUIC connections (HTTP/3) count in penstock_connections_open with
// protocol="h3"; their RTT and packet counts are recorded when they close.
//   - result of penstock_cache_lookups_total: hit, miss or revalidated (a stale entry the upstream
//     confirmed with 304).
//   - scope, name of the concurrency metrics: "route" and the route's name,
//     or "upstream" and the pool's name (a limit shared by its routes);
//     result: admitted, rejected (limit and queue full), queue_timeout or
//     canceled (the client left while queued).
//   - limit: a rate limit's name; key_class: what its key is made from
//     (client_ip, header, param, jwt_claim, constant); result of
//     penstock_rate_limit_decisions_total: admitted, limited or
//     shadow_limited.
//   - endpoint of the breaker metrics: "" for the pool's own breaker;
//     state: closed, open or half_open; reason of ejections:
//     consecutive_5xx, consecutive_gateway_failure, success_rate or latency;
//     result of health checks: passed or failed.
//
// Request durations carry an exemplar {trace_id="<32 hex>"} when the trace
// was sampled; exemplars are exposed in the OpenMetrics format only.
// Series are created on first use and never deleted: a route removed by a
// reload keeps its last values until the process restarts.
package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/config"
)

// Metrics holds every collector and the cached Route and Upstream handles.
// Its methods are safe for concurrent use.
type Metrics struct {
	perHost bool

	reqDuration  *prometheus.HistogramVec
	reqSize      *prometheus.HistogramVec
	respSize     *prometheus.HistogramVec
	active       *prometheus.GaugeVec
	traceMissing *prometheus.CounterVec

	upDuration *prometheus.HistogramVec
	upAttempts *prometheus.CounterVec

	connsOpen    *prometheus.GaugeVec
	sendTimeouts *prometheus.CounterVec
	http2Calmed  *prometheus.CounterVec
	// http2WindowGrown counts receive windows grown (HTTP2WindowGrown).
	http2WindowGrown *prometheus.CounterVec
	tlsHandshakes    *prometheus.CounterVec
	tlsReloads       *prometheus.CounterVec
	tlsNotAfter      *prometheus.GaugeVec

	quic quicMetrics

	cache *cacheVecs
	retry *retryVecs

	protection *protectionVecs

	concurrency *concurrencyCollector

	rateLimit *rateLimitVecs

	split *splitVecs

	batch  *batchVecs
	queue  *queueVecs
	tokens *tokenVecs
	grpc   *grpcVecs

	mu        sync.Mutex
	routes    map[routeKey]*Route
	upstreams map[upstreamKey]*Upstream
	caches    map[string]*Cache
}

// sizeBuckets are the body size histograms' upper bounds: 64 B to 64 MiB,
// ×4 each step.
var sizeBuckets = prometheus.ExponentialBuckets(64, 4, 11)

// New creates penstock's metrics and registers them on reg. With a nil reg
// the metrics work but are not exported (tests, tools). cfg.DurationBuckets
// sets the bounds of both duration histograms (config's default when
// empty); cfg.PerHost adds the host label to request metrics.
//
// New registers every metric once: calling it twice with the same reg
// panics, as prometheus.MustRegister does.
func New(cfg config.Metrics, reg prometheus.Registerer) *Metrics {
	buckets := cfg.DurationBuckets
	if len(buckets) == 0 {
		buckets = config.DefaultDurationBuckets()
	}
	reqLabels := []string{"route", "method", "status_class"}
	if cfg.PerHost {
		reqLabels = []string{"route", "host", "method", "status_class"}
	}
	upLabels := []string{"upstream", "endpoint", "outcome"}

	m := &Metrics{
		perHost: cfg.PerHost,
		reqDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_http_server_request_duration_seconds",
			Help:    "Duration of HTTP server requests.",
			Buckets: buckets,
		}, reqLabels),
		reqSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_http_server_request_body_size_bytes",
			Help:    "Size of HTTP request bodies read by the gateway.",
			Buckets: sizeBuckets,
		}, reqLabels),
		respSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_http_server_response_body_size_bytes",
			Help:    "Size of HTTP response bodies written by the gateway.",
			Buckets: sizeBuckets,
		}, reqLabels),
		active: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_http_server_active_requests",
			Help: "HTTP server requests in flight.",
		}, []string{"route"}),
		traceMissing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_trace_context_missing_total",
			Help: "Requests that arrived without a usable trace context (the gateway started a new trace).",
		}, []string{"route"}),
		upDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_upstream_request_duration_seconds",
			Help:    "Duration of upstream attempts, until response headers or failure.",
			Buckets: buckets,
		}, upLabels),
		upAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_upstream_attempts_total",
			Help: "Upstream attempts by outcome (ok means a response arrived, whatever its status).",
		}, upLabels),
		connsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_connections_open",
			Help: "Client connections open, by listener and protocol.",
		}, []string{"listener", "protocol"}),
		sendTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_send_timeouts_total",
			Help: "HTTP/2 and HTTP/3 responses reset because they made no progress for limits.send_timeout (a client that keeps its flow-control window closed), by listener.",
		}, []string{"listener"}),
		http2Calmed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_http2_calm_goaways_total",
			Help: "HTTP/2 connections closed with GOAWAY ENHANCE_YOUR_CALM for resetting (or opening beyond the stream limit) too many streams (rapid reset), by listener.",
		}, []string{"listener"}),
		http2WindowGrown: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_http2_window_grows_total",
			Help: "Times an HTTP/2 connection's receive window for request bodies grew with its measured bandwidth-delay product (up to limits.http2_max_receive_window), by listener.",
		}, []string{"listener"}),
		tlsHandshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_tls_handshakes_total",
			Help: "Completed TLS handshakes, by listener, TLS version and session resumption.",
		}, []string{"listener", "version", "resumed"}),
		tlsReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_tls_reloads_total",
			Help: "Attempts to load changed TLS files (certificates, client CAs, session ticket keys), by result.",
		}, []string{"listener", "kind", "result"}),
		tlsNotAfter: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "penstock_tls_certificate_not_after_timestamp_seconds",
			Help: "Unix time at which the certificate a listener serves expires.",
		}, []string{"listener", "cert_file"}),
		quic:      newQUICMetrics(),
		cache:     newCacheVecs(),
		retry:     newRetryVecs(),
		rateLimit: newRateLimitVecs(),
		split:     newSplitVecs(),
		batch:     newBatchVecs(),
		queue:     newQueueVecs(),
		tokens:    newTokenVecs(),
		routes:    make(map[routeKey]*Route),
		upstreams: make(map[upstreamKey]*Upstream),
		caches:    make(map[string]*Cache),
	}
	m.protection = newProtectionVecs()
	m.grpc = newGRPCVecs()
	m.concurrency = newConcurrencyCollector()
	if reg != nil {
		reg.MustRegister(m.reqDuration, m.reqSize, m.respSize, m.active, m.traceMissing,
			m.upDuration, m.upAttempts, m.connsOpen, m.sendTimeouts, m.http2Calmed, m.http2WindowGrown, m.tlsHandshakes, m.tlsReloads, m.tlsNotAfter)
		m.quic.register(reg)
		reg.MustRegister(m.cache.collectors()...)
		reg.MustRegister(m.retry.retries, m.retry.hedgesCanceled)
		reg.MustRegister(m.protection.collectors()...)
		reg.MustRegister(m.concurrency)
		reg.MustRegister(m.rateLimit.collectors()...)
		reg.MustRegister(m.split.collectors()...)
		reg.MustRegister(m.batch.collectors()...)
		reg.MustRegister(m.queue.collectors()...)
		reg.MustRegister(m.tokens.collectors()...)
		reg.MustRegister(m.grpc.calls)
	}
	return m
}
