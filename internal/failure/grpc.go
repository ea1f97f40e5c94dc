package failure

import (
	"net/http"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/grpccall"
)

// GRPCStatus returns the gRPC status code a failure kind maps to when the
// request is a gRPC call. The table follows what each failure means to a
// gRPC client rather than grpc/grpc's HTTP-to-gRPC mapping of the HTTP
// status (which turns every 429 and 503 into UNAVAILABLE): a client
// retries UNAVAILABLE at once, and should back off on RESOURCE_EXHAUSTED.
func (c Code) GRPCStatus() int {
	switch c {
	case NoRoute, MethodNotAllowed:
		// No route serves this service or method.
		return grpccall.Unimplemented
	case NoHealthyEndpoint, UpstreamConnect, ShuttingDown, CircuitOpen, TooEarly,
		FunctionCrashed, FunctionInitFailed:
		return grpccall.Unavailable
	case UpstreamTimeout, DeadlineExpired, DeadlineUnreachable, FunctionTimeout:
		return grpccall.DeadlineExceeded
	case RateLimited, ConcurrencyLimited, QueueFull, QueueTimeout, FunctionQueueFull, FunctionQueueTimeout,
		BodyTooLarge:
		return grpccall.ResourceExhausted
	case BadRequest:
		return grpccall.Internal
	case UpstreamProtocol, FunctionError, FunctionBadResponse:
		return grpccall.Internal
	}
	return grpccall.Unknown
}

// failGRPC answers a gRPC call with a trailers-only response
// (PROTOCOL-HTTP2.md): status 200, the call's content type, and
// grpc-status and grpc-message in the header, with no body. On HTTP/2 and
// HTTP/3 that is one HEADERS frame ending the stream; gRPC-Web clients
// read it the same way. The message is the failure kind, so a client sees
// the same code operators search the logs for.
func failGRPC(x *exchange.Exchange, code Code, k grpccall.Kind) {
	grpcStatus := code.GRPCStatus()
	x.State.Status = http.StatusOK
	x.State.ErrorKind = string(code)
	x.State.SetGRPCStatus(grpcStatus)
	h := x.W.Header()
	h.Del("Content-Length")
	switch k {
	case grpccall.Web:
		h.Set("Content-Type", "application/grpc-web+proto")
	case grpccall.WebText:
		h.Set("Content-Type", "application/grpc-web-text+proto")
	default:
		h.Set("Content-Type", "application/grpc")
	}
	h.Set("Grpc-Status", grpccall.StatusString(grpcStatus))
	h.AddBytes([]byte("Grpc-Message"), grpccall.AppendMessage(x.State.Scratch(), string(code)))
	x.W.WriteHeader(http.StatusOK)
}
