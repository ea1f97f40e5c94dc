package exchange

import (
	"net/netip"
	"time"

	"github.com/penstock-dev/penstock/internal/tracecontext"
)

// Route is the handle an exchange keeps on the compiled route it matched:
// the gateway's route implements it. The exchange package knows routes only
// through it, so that it imports nothing above it.
type Route interface {
	// RouteName returns the route's configured name (also in
	// State.RouteName).
	RouteName() string
}

// Span is the handle an exchange keeps on the server span the tracer
// (internal/tracing) records for it; only the tracer looks inside.
type Span interface {
	// IsRecording reports whether the span still records, as
	// OpenTelemetry's trace.Span.IsRecording does.
	IsRecording() bool
}

// State is the pipeline's per-request scratch space, kept inside the pooled
// Exchange so that routing and accounting allocate nothing.
type State struct {
	// Route is the compiled route that matched (set by the router stage),
	// or nil.
	Route Route
	// RouteName and Pattern identify the matched route ("predict",
	// "/v1/models/:model/predict") for logs and metrics.
	RouteName, Pattern string
	// Params are the path parameters of the match.
	Params Params
	// RequestID is the X-Request-Id of the exchange (taken from the client or
	// generated).
	RequestID string
	// Status is the final status written to the client (0 until written).
	Status int
	// BytesOut counts response body bytes written to the client.
	BytesOut int64
	// Endpoint is the upstream endpoint address last tried.
	Endpoint string
	// Attempts counts upstream attempts.
	Attempts int
	// Arm is the split arm that served the request (internal/split), or ""
	// on a route without a split.
	Arm string
	// TrustedPeer is set when the client address is one of the listener's
	// trusted_proxies, so its forwarding headers are kept.
	TrustedPeer bool
	// ClientAddr is the client's address: the socket peer's, or, from a
	// trusted proxy, the one X-Forwarded-For names (its rightmost address
	// that is not itself a trusted proxy). Rate and concurrency limits key
	// on it. Set by the front handler before routing.
	ClientAddr netip.Addr
	// Trace is the request's trace context: from the client, or new.
	Trace tracecontext.Context
	// TraceFound is set when the client sent a valid trace context.
	TraceFound bool
	// UpstreamWait is the time from sending the request upstream to receiving
	// the response headers (the model's share of the latency), summed over
	// attempts.
	UpstreamWait time.Duration
	// BytesIn counts request body bytes received from the client.
	BytesIn int64
	// ErrorKind is the error funnel's code for a failed exchange
	// ("upstream_timeout"), or "" when none.
	ErrorKind string
	// Error is a failure's message, for the access log, or "".
	Error string
	// Span is the tracer's server span while one is recorded, else nil.
	Span Span
	// Aborted asks the engine to cut the response (HTTP/1.1: close the
	// connection; HTTP/2 and HTTP/3: reset the stream) because its body could
	// not be completed after the status was sent.
	Aborted bool

	// GRPC is set by the forwarder when the request is a gRPC call
	// (Content-Type application/grpc...): its status then comes in the
	// grpc-status trailer, and failures are answered in gRPC's terms.
	GRPC bool

	// grpcStatus is a gRPC call's status code plus one, 0 while none is
	// known (see SetGRPCStatus).
	grpcStatus uint8

	// idBuf backs RequestID when penstock generates it.
	idBuf [32]byte
	// scratch backs small bodies penstock writes itself (error responses),
	// which would otherwise escape to the heap through the writer interface.
	scratch [256]byte
}

// IDBuffer returns scratch space for a generated request id.
func (s *State) IDBuffer() []byte { return s.idBuf[:] }

// Scratch returns 256 bytes of per-exchange scratch space for a body the
// pipeline composes itself. Its contents are not reset between exchanges.
func (s *State) Scratch() []byte { return s.scratch[:0] }

// SetGRPCStatus records the status code (0 to 254) a gRPC call ended
// with, for metrics and the access log: the upstream's grpc-status, or
// the one penstock answered with itself.
func (s *State) SetGRPCStatus(code int) {
	if code >= 0 && code < 255 {
		s.grpcStatus = uint8(code + 1)
	}
}

// GRPCStatus returns the status code recorded by SetGRPCStatus; ok is
// false for requests that are not gRPC calls, or whose status never came.
func (s *State) GRPCStatus() (code int, ok bool) {
	return int(s.grpcStatus) - 1, s.grpcStatus != 0
}

func (s *State) reset() {
	s.Route = nil
	s.RouteName, s.Pattern = "", ""
	s.Params.Reset()
	s.RequestID = ""
	s.Status = 0
	s.BytesOut = 0
	s.Endpoint = ""
	s.Attempts = 0
	s.Arm = ""
	s.TrustedPeer = false
	s.ClientAddr = netip.Addr{}
	s.Trace.Reset()
	s.TraceFound = false
	s.UpstreamWait = 0
	s.BytesIn = 0
	s.ErrorKind = ""
	s.Error = ""
	s.Span = nil
	s.Aborted = false
	s.GRPC = false
	s.grpcStatus = 0
}
