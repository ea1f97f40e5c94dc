package proxy

import (
	"errors"
	"strconv"

	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// outcome is what one attempt came to. classify decides it from the
// client's error alone, and the table below says, per outcome, what the
// attempt loop does: the metric recorded, passive health, whether another
// endpoint may be tried (the retry condition it meets), and the failure the
// client is answered with. This is where retry policies, breakers and
// hedging read an attempt's result.
type outcome uint8

const (
	// outcomeOK: a response arrived (whatever its status) and its body, if
	// read, ended cleanly.
	outcomeOK outcome = iota
	// outcomeConnect: no connection could be made; nothing was sent.
	outcomeConnect
	// outcomeConnectTimeout: connecting took too long; nothing was sent.
	outcomeConnectTimeout
	// outcomeTimeout: no response head in time (response header timeout,
	// request deadline, no free connection slot).
	outcomeTimeout
	// outcomeReset: the connection broke before any byte of a response
	// arrived (and the client could not safely send it again itself).
	outcomeReset
	// outcomeFailed: the response was malformed.
	outcomeFailed
	// outcomeTruncated: the response started but its body ended early.
	outcomeTruncated
	// outcomeClientBody: the client's request body failed (malformed
	// framing, a body limit). The upstream is not at fault.
	outcomeClientBody
	// outcomeCanceled: the client went away (or the server is stopping).
	outcomeCanceled
	// outcomeHeld: a response head arrived with a status the route
	// retries (502, 503, 504); it is held unsent until the loop knows
	// whether another attempt follows (then it is discarded) or not (then
	// it is relayed).
	outcomeHeld
)

// outcomeRule is what an outcome means for the attempt loop.
type outcomeRule struct {
	// metric is the upstream outcome label; "" records nothing (the
	// upstream had no part in it).
	metric string
	// down: passive health counts a failure of the endpoint. (A success
	// is counted when a response head arrives.)
	down bool
	// retry is the retry condition the outcome meets (zero: none):
	// the route's retry policy says whether the request goes to another
	// endpoint (retry.go).
	retry retryReason
	// code answers the client when no other attempt follows.
	code failure.Code
}

var outcomeRules = [...]outcomeRule{
	outcomeOK:             {metric: "ok"},
	outcomeConnect:        {metric: "connect_error", down: true, retry: reasonConnect, code: failure.UpstreamConnect},
	outcomeConnectTimeout: {metric: "timeout", down: true, retry: reasonConnect, code: failure.UpstreamTimeout},
	outcomeTimeout:        {metric: "timeout", retry: reasonTimeout, code: failure.UpstreamTimeout},
	outcomeReset:          {metric: "error", retry: reasonReset, code: failure.UpstreamProtocol},
	outcomeFailed:         {metric: "error", code: failure.UpstreamProtocol},
	outcomeTruncated:      {metric: "truncated"},
	outcomeClientBody:     {code: failure.BadRequest},
	outcomeCanceled:       {},
	// The held response's status decides the reason (statusReason).
	outcomeHeld: {metric: "ok"},
}

func (o outcome) rule() *outcomeRule { return &outcomeRules[o] }

// String names o for the debug log: its metric label, or the status of a
// held response (resp).
func (o outcome) String(resp *upstream.Response) string {
	if o == outcomeHeld {
		return strconv.Itoa(resp.Status)
	}
	return o.rule().metric
}

// answered reports an attempt after which the client has its answer: a
// response was relayed, in full or cut short.
func (o outcome) answered() bool { return o == outcomeOK || o == outcomeTruncated }

// errorKindTruncated is the error kind logged for a response cut short
// after its status was sent. It never goes through the error funnel (the
// client already has a status), so it is not a failure.Code.
const errorKindTruncated = "upstream_truncated"

// classify maps an attempt's error to its outcome. clientGone reports that
// the exchange's context ended: whatever the client returned, nobody is
// left to answer.
func classify(err error, clientGone bool) outcome {
	if err == nil {
		return outcomeOK
	}
	if clientGone {
		return outcomeCanceled
	}
	switch upstream.KindOf(err) {
	case upstream.KindConnect:
		return outcomeConnect
	case upstream.KindConnectTimeout:
		return outcomeConnectTimeout
	case upstream.KindTimeout:
		return outcomeTimeout
	case upstream.KindTruncated:
		return outcomeTruncated
	case upstream.KindClientBody:
		return outcomeClientBody
	case upstream.KindCanceled:
		return outcomeCanceled
	case upstream.KindReset:
		return outcomeReset
	}
	return outcomeFailed
}

// clientBodyCode is the answer to a client whose request body failed: 413
// past a body limit, 400 otherwise (malformed chunked framing, a body
// shorter than its Content-Length).
func clientBodyCode(err error) failure.Code {
	if errors.Is(err, failure.ErrBodyTooLarge) {
		return failure.BodyTooLarge
	}
	return failure.BadRequest
}
