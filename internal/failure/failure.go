// Package failure is the one error funnel through which every failure
// reaches the client: the front handler (no route, bad target), the route
// stages (body too large, too early) and the forwarder (upstream failures)
// all answer with Fail, so every failure gets the same status mapping, the
// same small JSON body and the same error kind in the logs and metrics.
package failure

import (
	"errors"
	"strconv"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/grpccall"
	"github.com/penstock-dev/penstock/internal/requestid"
)

// Code names a failure kind. It is the "error" field of the JSON body and the
// key operators search logs for.
type Code string

// Failure kinds and the status each maps to (see Status).
const (
	NoRoute           Code = "no_route"                // 404
	MethodNotAllowed  Code = "method_not_allowed"      // 405
	BodyTooLarge      Code = "request_body_too_large"  // 413
	NoHealthyEndpoint Code = "no_healthy_endpoint"     // 503
	UpstreamConnect   Code = "upstream_connect_failed" // 502
	UpstreamProtocol  Code = "upstream_bad_response"   // 502
	UpstreamTimeout   Code = "upstream_timeout"        // 504
	BadRequest        Code = "bad_request"             // 400
	ShuttingDown      Code = "shutting_down"           // 503
	TooEarly          Code = "too_early"               // 425
	CircuitOpen       Code = "circuit_open"            // 503
	// ConcurrencyLimited: the route's concurrency limit (fixed or adaptive)
	// was reached and its queue was full or timed out (the concurrency
	// stage).
	ConcurrencyLimited Code = "concurrency_limited" // 503
	RateLimited        Code = "rate_limited"        // 429
	// QueueFull, QueueTimeout, DeadlineUnreachable and DeadlineExpired:
	// the route's priority queue refused the request (the concurrency
	// stage's queue): its level was full, it waited max_wait, its deadline
	// could not be met, or its deadline came while it waited.
	QueueFull           Code = "queue_full"           // 503
	QueueTimeout        Code = "queue_timeout"        // 503
	DeadlineUnreachable Code = "deadline_unreachable" // 503
	DeadlineExpired     Code = "deadline_expired"     // 503

	// Function invocations (internal/function): the function's queue was
	// full or the wait in it too long; the invocation overran its timeout;
	// the function reported an error, its instance exited or failed to
	// start, or it returned what is not an HTTP response.
	FunctionQueueFull    Code = "function_queue_full"    // 429
	FunctionQueueTimeout Code = "function_queue_timeout" // 503
	FunctionTimeout      Code = "function_timeout"       // 504
	FunctionError        Code = "function_error"         // 502
	FunctionCrashed      Code = "function_crashed"       // 502
	FunctionInitFailed   Code = "function_init_failed"   // 502
	FunctionBadResponse  Code = "function_bad_response"  // 502
)

// ErrBodyTooLarge is returned by a limited request body once the client has
// sent more than the route allows (the body_limit stage). The forwarder maps
// it to BodyTooLarge.
var ErrBodyTooLarge = errors.New("request body exceeds the route's max_request_body")

// Status returns the HTTP status a failure kind maps to.
func (c Code) Status() int {
	switch c {
	case NoRoute:
		return 404
	case MethodNotAllowed:
		return 405
	case BodyTooLarge:
		return 413
	case NoHealthyEndpoint, ShuttingDown:
		return 503
	case ConcurrencyLimited, QueueFull, QueueTimeout, DeadlineUnreachable, DeadlineExpired:
		return 503
	case UpstreamTimeout:
		return 504
	case BadRequest:
		return 400
	case TooEarly:
		return 425
	case CircuitOpen:
		return 503
	case RateLimited:
		return 429
	case FunctionQueueFull:
		return 429
	case FunctionQueueTimeout:
		return 503
	case FunctionTimeout:
		return 504
	}
	return 502
}

// Fail answers x with code's status and a small JSON body carrying the
// request id, unless a response has already started (then the only honest
// signal left is to cut the stream, which the engine does when the handler
// returns without completing the body). It records the status in x.State.
func Fail(x *exchange.Exchange, code Code) {
	if x.State.Status != 0 {
		return
	}
	if k := grpccall.Classify(&x.Req); k != grpccall.None {
		failGRPC(x, code, k)
		return
	}
	status := code.Status()
	x.State.Status = status
	x.State.ErrorKind = string(code)
	h := x.W.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	// The exchange's scratch space keeps the funnel allocation-free: the
	// request id is at most 64 bytes of [0-9a-zA-Z._-] (see
	// requestid.Assign) and the rest is short and constant, so it fits.
	b := append(x.State.Scratch(), `{"error":"`...)
	b = append(b, code...)
	b = append(b, `","status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"request_id":"`...)
	b = appendJSONSafe(b, x.State.RequestID)
	b = append(b, "\"}\n"...)
	var clen [20]byte
	h.Del("Content-Length")
	h.AddBytes([]byte("Content-Length"), strconv.AppendInt(clen[:0], int64(len(b)), 10))
	x.W.WriteHeader(status)
	if x.Req.Method != "HEAD" {
		n, _ := x.W.Write(b)
		x.State.BytesOut += int64(n)
	}
}

// appendJSONSafe appends s keeping only characters that need no JSON escape
// and are valid in a request id, so a hostile client-supplied id cannot break
// the body.
func appendJSONSafe(b []byte, s string) []byte {
	for i := 0; i < len(s) && i < 64; i++ {
		if c := s[i]; requestid.ValidByte(c) {
			b = append(b, c)
		}
	}
	return b
}
