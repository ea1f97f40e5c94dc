package pipeline

import (
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// EarlyDataHeader marks a request forwarded from TLS early data (RFC 8470
// §5.1); its only value is "1".
const EarlyDataHeader = "Early-Data"

// earlyData decides what happens to requests that may be replays: those the
// engine received in TLS 1.3 early data (HTTP/3 0-RTT, exchange.State
// EarlyData), and those a trusted proxy marked "Early-Data: 1".
//
//   - Unsafe methods (anything but GET, HEAD, OPTIONS) get 425 Too Early
//     (RFC 8470 §5.2): the client retries once its handshake is done, and
//     no side effect is ever replayed.
//   - Safe methods on a route with early_data: true go upstream at once,
//     carrying "Early-Data: 1" so the upstream can answer 425 itself; such a
//     425 is passed on to the client, which then retries after the handshake
//     (RFC 8470 §5.2 lets an intermediary forward it in all cases).
//   - Safe methods on other routes wait for the handshake to complete and then
//     proceed as ordinary requests; a request marked by a proxy cannot wait
//     for another machine's handshake, so it gets 425.
//
// An Early-Data header from any peer but a trusted proxy is removed: only the
// TLS terminator can know whether a request arrived early.
type earlyData struct {
	accept bool
	next   exchange.Handler
}

func newEarlyData(r *config.Route, next exchange.Handler) (exchange.Handler, error) {
	return &earlyData{accept: r.EarlyData, next: next}, nil
}

func (e *earlyData) ServeExchange(x *exchange.Exchange) {
	h := &x.Req.Header
	marked := false
	if x.State.TrustedPeer {
		v, ok := h.Get(EarlyDataHeader)
		marked = ok && v == "1"
	} else {
		h.Del(EarlyDataHeader)
	}
	if !x.State.EarlyData && !marked {
		e.next.ServeExchange(x)
		return
	}
	switch {
	case !safeMethod(x.Req.Method):
		Fail(x, TooEarly)
		return
	case e.accept:
		if !marked {
			h.Add(EarlyDataHeader, "1")
		}
	case marked:
		Fail(x, TooEarly)
		return
	default:
		select {
		case <-x.State.HandshakeDone:
			x.State.EarlyData = false
		case <-x.Ctx.Done():
			// The client gave up (or the connection died) before its
			// handshake completed.
			Fail(x, TooEarly)
			return
		}
	}
	e.next.ServeExchange(x)
}

// safeMethod reports the methods RFC 8470 §4 and RFC 9110 §9.2.1 let a
// server process from early data: safe ones.
func safeMethod(m string) bool {
	return m == "GET" || m == "HEAD" || m == "OPTIONS"
}
