package upstream

import (
	"context"
	"errors"
	"net"
	"os"
)

// ErrorKind classifies why an exchange with an endpoint failed. The proxy
// decides from it alone what the client is told, whether the request may go
// to another endpoint and what passive health and the metrics record, so a
// client reports every failure as one of these kinds whatever the protocol
// or library underneath.
type ErrorKind uint8

// Failure kinds. Their String forms are stable: they appear in logs and as
// the client span's error.type.
const (
	// KindConnect: the connection (TCP, TLS handshake, QUIC handshake)
	// could not be made. Nothing was sent.
	KindConnect ErrorKind = iota + 1
	// KindConnectTimeout: connecting took longer than the connect timeout.
	// Nothing was sent.
	KindConnectTimeout
	// KindTimeout: the response head did not arrive within the response
	// header timeout, the request deadline passed, or no connection slot
	// freed up in time (pool.max_per_endpoint).
	KindTimeout
	// KindReset: the connection was closed or reset before any byte of a
	// response arrived, and the request could not safely be sent again.
	KindReset
	// KindProtocol: the upstream's response does not follow the protocol
	// (malformed head or framing).
	KindProtocol
	// KindTruncated: the response body ended early (the connection closed
	// or reset inside it, or the request deadline passed while it
	// streamed). Reported by Response.Read.
	KindTruncated
	// KindClientBody: reading the client's request body failed (malformed
	// framing, a body limit, the client went away). The endpoint is not at
	// fault.
	KindClientBody
	// KindCanceled: the request's context ended (the client went away or
	// the server is shutting down).
	KindCanceled
)

// String returns the kind's stable name.
func (k ErrorKind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindConnectTimeout:
		return "connect_timeout"
	case KindTimeout:
		return "timeout"
	case KindReset:
		return "reset"
	case KindProtocol:
		return "protocol"
	case KindTruncated:
		return "truncated"
	case KindClientBody:
		return "client_body"
	case KindCanceled:
		return "canceled"
	}
	return "unknown"
}

// Error is how a Client reports a failed exchange: its kind, the endpoint,
// and the underlying error.
type Error struct {
	Kind     ErrorKind
	Endpoint string
	Err      error
}

func (e *Error) Error() string {
	return "upstream endpoint " + e.Endpoint + ": " + e.Kind.String() + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorType is the kind's name, the OpenTelemetry error.type of the
// attempt's client span.
func (e *Error) ErrorType() string { return e.Kind.String() }

// KindOf returns the kind of err if it is (or wraps) an *Error, else 0.
func KindOf(err error) ErrorKind {
	var ue *Error
	if errors.As(err, &ue) {
		return ue.Kind
	}
	return 0
}

// ErrResponseHeaderTimeout reports that the response head did not arrive
// within Request.ResponseHeaderTimeout (a KindTimeout Error wraps it).
var ErrResponseHeaderTimeout = errors.New("upstream response header timeout")

// errorf wraps err as an Error of kind for endpoint e, keeping an Error
// already made.
func (e *Endpoint) errorf(kind ErrorKind, err error) error {
	var ue *Error
	if errors.As(err, &ue) {
		return err
	}
	return &Error{Kind: kind, Endpoint: e.Address, Err: err}
}

// dialKind tells a connect timeout from another failure to connect.
func dialKind(err error) ErrorKind {
	if isTimeout(err) {
		return KindConnectTimeout
	}
	return KindConnect
}

// isTimeout reports a deadline that passed: a context's, or a socket's.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
