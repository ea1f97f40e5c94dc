package accesslog

import (
	"net/netip"
	"time"

	"github.com/penstock-dev/penstock/internal/router"
)

// Record is one request as the access log sees it, filled by the gateway
// when the response completes. [Logger.Log] reads it synchronously and keeps
// no reference to it or to its strings, so the caller may reuse it (and the
// Params it points to) as soon as Log returns.
type Record struct {
	// Time is when the request started; written in UTC.
	Time time.Time
	// TraceID and SpanID are the request's trace context (penstock's span).
	TraceID [16]byte
	SpanID  [8]byte
	// Sampled is the trace sampling decision. It is not written; sampling
	// rules with keep_by trace_id reach the same decision from TraceID.
	Sampled bool
	// RequestID is the request's id as sent to the upstream.
	RequestID string
	// Proto is the protocol version: "HTTP/1.1", "HTTP/2.0" or "HTTP/3.0".
	Proto string
	// TLSVersion is the negotiated TLS version (tls.VersionTLS13…), 0 on
	// plain connections.
	TLSVersion uint16
	// Method and Host are the request's method and Host (or :authority), as
	// sent by the client.
	Method, Host string
	// Route is the matched route's name, "" when no route matched.
	Route string
	// Pattern is the matched route's path pattern
	// ("/v1/models/:model/predict"), "" when no route matched.
	Pattern string
	// Path is the raw request path without the query; Query is the raw
	// query without "?".
	Path, Query string
	// Params are the path parameters of the match; nil when none.
	Params *router.Params
	// Status is the response status code sent to the client.
	Status int
	// Duration is the whole request, from start to the end of the response.
	Duration time.Duration
	// UpstreamWait is the time spent waiting for the upstream's response
	// headers (all attempts).
	UpstreamWait time.Duration
	// Endpoint is the upstream endpoint of the last attempt ("10.0.0.5:8080").
	Endpoint string
	// Attempts is how many times the request was sent upstream.
	Attempts int
	// Arm is the split arm that served the request, "" on a route without
	// a split (the field is then left out).
	Arm string
	// BytesIn and BytesOut are the request and response body sizes.
	BytesIn, BytesOut int64
	// Client is the client's address.
	Client netip.AddrPort
	// ErrorKind classifies a failure ("upstream_timeout", "client_abort");
	// Error describes it. Both are empty on success.
	ErrorKind, Error string
	// GRPCService and GRPCMethod name a gRPC call's service and method
	// (from its path), and GRPCStatus is the grpc-status it ended with;
	// all "" for other requests (GRPCStatus also for a call cut short).
	GRPCService, GRPCMethod, GRPCStatus string
}
