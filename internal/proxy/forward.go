// Package proxy is the last stage of every route: it forwards the exchange to
// an endpoint of the route's upstream pool and streams the response back.
//
// One attempt loop (attempt.go) serves every pool whatever its protocol: it
// talks to each endpoint through the endpoint's upstream.Client and decides
// from the client's typed errors (upstream.Error) and the response status
// alone what passive health and the metrics record, what the client is
// told (outcome.go), and what the route's retry policy sends again, to
// another endpoint, within the route's retry budget (retry.go, budget.go,
// replay.go). Hedged requests race two attempts (hedge.go).
package proxy

import (
	"log/slog"
	"slices"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/tracecontext"
	"github.com/penstock-dev/penstock/internal/tracing"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// Forwarder sends exchanges to one upstream pool. It is built once per route
// when a config is compiled and is safe for concurrent use.
type Forwarder struct {
	// Pool is the route's upstream. Required.
	Pool *upstream.Pool
	// NoWebSocket refuses to tunnel WebSocket upgrades (the route's
	// upgrades list is empty): such a request goes upstream as a plain
	// one, Upgrade removed.
	NoWebSocket bool
	// ConnectTimeout bounds dialing an endpoint; 0 means no bound beyond the
	// request's own.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the response headers after
	// the request was sent; 0 means none.
	ResponseHeaderTimeout time.Duration
	// RequestTimeout bounds the whole exchange, body streaming included; 0
	// means none.
	RequestTimeout time.Duration
	// Logger receives one WARN line per failed exchange, at most warnBurst
	// at once and warnPerSecond a second after that; the next line written
	// carries the number suppressed meanwhile. Nil means slog.Default.
	Logger *slog.Logger
	// Tracer records a client span per attempt. Nil records none.
	Tracer *tracing.Tracer
	// EndpointMetrics are the pre-resolved metrics of each endpoint of Pool.
	// Missing entries record nothing.
	EndpointMetrics map[*upstream.Endpoint]*metrics.Upstream
	// Retry says which failed attempts go to another endpoint (retry.go).
	// Nil retries failures to connect on up to three endpoints, without
	// backoff or budget.
	Retry *RetryPolicy
	// Streams, when set, counts the WebSocket tunnels, so that a draining
	// process can let them finish (shutdown.stream_drain_timeout).
	Streams *Streams

	// warnings limits the failure lines. Only failures take its lock.
	warnings logLimiter
}

// nextAttempt picks the endpoint of the first attempt and records it in
// tried and x's state. When there is none it answers x through the error
// funnel (503) and returns nil. The endpoints of later attempts are picked
// by retry.
func (f *Forwarder) nextAttempt(x *exchange.Exchange, tried *[maxAttempts]*upstream.Endpoint, n int) *upstream.Endpoint {
	now := time.Now().UnixNano()
	if n == 0 && !f.Pool.Admit(now) {
		f.fail(x, failure.CircuitOpen, f.Pool.BreakerError(now))
		return nil
	}
	ep := f.pick(now, tried[:n])
	if ep == nil {
		f.noEndpoint(x, now)
		return nil
	}
	tried[n] = ep
	x.State.Endpoint = ep.Address
	x.State.Attempts++
	return ep
}

// pick chooses an endpoint not tried yet for this request, or nil.
func (f *Forwarder) pick(now int64, tried []*upstream.Endpoint) *upstream.Endpoint {
	// The balancer may offer a tried endpoint again (it is still healthy
	// until max_fails is reached); ask a few times before giving up.
	for range 2 * len(f.Pool.Endpoints) {
		ep := f.Pool.Pick(now)
		if ep == nil || !slices.Contains(tried, ep) {
			return ep
		}
	}
	return nil
}

// fail answers x through the error funnel with code and logs the failure
// (rate limited).
func (f *Forwarder) fail(x *exchange.Exchange, code failure.Code, err error) {
	if err != nil {
		x.State.Error = err.Error()
	}
	f.warn(x, "proxy failure", string(code), code.Status(), err)
	failure.Fail(x, code)
}

// refuse answers x through the error funnel for a failure that is the
// client's own (its request body), logged at debug level only: a client
// must not be able to fill the log with warnings, nor blame the upstream.
func (f *Forwarder) refuse(x *exchange.Exchange, code failure.Code, err error) {
	x.State.Error = err.Error()
	// The request body is in an unknown state: the connection cannot carry
	// another request.
	x.W.Header().Set("Connection", "close")
	f.log().Debug("request body failed", "request_id", x.State.RequestID, "route", x.State.RouteName,
		"status", code.Status(), "error_kind", string(code), "error", err.Error())
	failure.Fail(x, code)
}

// warn writes one failure line, unless too many were written lately.
func (f *Forwarder) warn(x *exchange.Exchange, msg, kind string, status int, err error) {
	ok, suppressed := f.warnings.allow(time.Now())
	if !ok {
		return
	}
	attrs := []any{"request_id", x.State.RequestID, "route", x.State.RouteName,
		"upstream", f.Pool.Name, "endpoint", x.State.Endpoint, "status", status, "error_kind", kind}
	if err != nil {
		attrs = append(attrs, "error", err.Error())
	}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	f.log().Warn(msg, attrs...)
}

func (f *Forwarder) log() *slog.Logger {
	if f.Logger != nil {
		return f.Logger
	}
	return slog.Default()
}

// setTraceHeaders writes the trace context for the upstream: always W3C
// traceparent (replacing the client's, whose parent is now penstock's span),
// tracestate passed on unchanged, and B3 when the client spoke B3.
func setTraceHeaders(h *exchange.Header, tc *tracecontext.Context, span [8]byte) {
	var buf [64]byte
	h.Del("Traceparent")
	h.Add("Traceparent", bytesString(tc.AppendTraceparent(buf[:0], span)))
	if tc.State != "" {
		h.Set("Tracestate", tc.State)
	}
	if tc.From == tracecontext.B3Single || tc.From == tracecontext.B3Multi {
		for _, k := range [...]string{"X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-B3-Flags"} {
			h.Del(k)
		}
		h.Del("B3")
		h.Add("B3", bytesString(tc.AppendB3(buf[:0], span)))
	}
}
