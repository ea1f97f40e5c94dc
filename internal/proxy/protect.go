package proxy

import (
	"errors"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// protectResult is what an attempt's outcome and response status teach the
// pool's circuit breakers and outlier detection: a 5xx response is a
// failure there, though passive health counts only failures to connect.
func protectResult(o outcome, status int) upstream.Result {
	switch o {
	case outcomeOK:
		if status >= 500 {
			return upstream.Result5xx
		}
		return upstream.ResultOK
	case outcomeConnect, outcomeConnectTimeout, outcomeTimeout, outcomeFailed, outcomeTruncated:
		return upstream.ResultGatewayFailure
	}
	return upstream.ResultNone
}

// recordRequest counts the request's final result, after every attempt,
// in the pool's breaker: what the client got, not what each attempt did.
func (f *Forwarder) recordRequest(x *exchange.Exchange) {
	r := upstream.ResultOK
	switch {
	case x.State.Status == 499:
		r = upstream.ResultNone
	case x.State.ErrorKind == errorKindTruncated || (x.State.ErrorKind != "" && x.State.Status >= 500):
		r = upstream.ResultGatewayFailure
	case x.State.Status >= 500:
		r = upstream.Result5xx
	}
	f.Pool.RecordRequest(r, x.State.UpstreamWait)
}

// noEndpoint answers a request for which no endpoint could be picked: 503
// circuit_open when the endpoints' breakers are what left none, 503
// no_healthy_endpoint otherwise.
func (f *Forwarder) noEndpoint(x *exchange.Exchange, now int64) {
	if f.Pool.BreakerRefused(now) {
		f.fail(x, failure.CircuitOpen, errEndpointBreakers)
		return
	}
	f.fail(x, failure.NoHealthyEndpoint, nil)
}

var errEndpointBreakers = errors.New("the circuit breakers of the pool's endpoints are open")
