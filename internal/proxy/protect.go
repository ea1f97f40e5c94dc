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
