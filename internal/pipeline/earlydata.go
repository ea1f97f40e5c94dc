package pipeline

import (
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
)

// EarlyDataSettings are the early_data stage's route fields.
type EarlyDataSettings struct {
	// EarlyData lets the route serve GET, HEAD and OPTIONS requests received
	// in TLS 1.3 early data (HTTP/3 0-RTT on a listener with
	// http3.zero_rtt: true) at once (bool); they reach the upstream with
	// "Early-Data: 1" (RFC 8470), and if the upstream answers 425 Too Early,
	// penstock waits for the client's handshake and sends the request once
	// more without the header. Only for requests that are safe to replay.
	// Without it, early requests wait for the handshake (safe methods) or get
	// 425 (others). An Early-Data header from a client is removed unless it
	// comes from a trusted_proxies peer. Default false.
	EarlyData bool `yaml:"early_data"`
}

// SetDefaults implements Settings: false is the default.
func (s *EarlyDataSettings) SetDefaults() {}

// Check implements Settings: any value is valid.
func (s *EarlyDataSettings) Check(*Route) {}

// EarlyDataHeader marks a request forwarded from TLS early data (RFC 8470
// §5.1); its only value is "1".
const EarlyDataHeader = "Early-Data"

// earlyData decides what happens to requests that may be replays: those the
// engine received in TLS 1.3 early data (HTTP/3 0-RTT, exchange.Request
// EarlyData), and those a trusted proxy marked "Early-Data: 1".
//
//   - Unsafe methods (anything but GET, HEAD, OPTIONS) get 425 Too Early
//     (RFC 8470 §5.2): the client retries once its handshake is done, and
//     no side effect is ever replayed.
//   - Safe methods on a route with early_data: true go upstream at once,
//     carrying "Early-Data: 1" so the upstream can answer 425 itself. Such a
//     425 is held back: penstock waits for the handshake and sends the
//     request once more, without the header (RFC 8470 §5.2 allows this
//     retry to the intermediary that received the request early). A 425 to
//     a request a proxy marked is passed on, as §5.2 requires.
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

func newEarlyData(s *EarlyDataSettings, _ *Route, next exchange.Handler) (exchange.Handler, error) {
	return &earlyData{accept: s.EarlyData, next: next}, nil
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
	if !x.Req.EarlyData && !marked {
		e.next.ServeExchange(x)
		return
	}
	switch {
	case !safeMethod(x.Req.Method):
		failure.Fail(x, failure.TooEarly)
		return
	case e.accept && marked:
	case e.accept:
		h.Add(EarlyDataHeader, "1")
		e.serveEarly(x)
		return
	case marked:
		failure.Fail(x, failure.TooEarly)
		return
	default:
		select {
		case <-x.Req.HandshakeDone:
			x.Req.EarlyData = false
		case <-x.Ctx.Done():
			// The client gave up (or the connection died) before its
			// handshake completed.
			failure.Fail(x, failure.TooEarly)
			return
		}
	}
	e.next.ServeExchange(x)
}

// serveEarly forwards x from early data and, if the upstream answers 425,
// retries it once after the handshake. Only early requests on opted-in
// routes get here, so the writer's allocation is not on the common path.
func (e *earlyData) serveEarly(x *exchange.Exchange) {
	client := x.W
	hold := &holdTooEarly{ResponseWriter: client}
	client.Header().Range(func(name, value string) bool {
		hold.hdr.Add(name, value)
		return true
	})
	x.W = hold
	e.next.ServeExchange(x)
	x.W = client
	if !hold.caught {
		return
	}
	select {
	case <-x.Req.HandshakeDone:
	case <-x.Ctx.Done():
		return
	}
	x.Req.Header.Del(EarlyDataHeader)
	x.Req.EarlyData = false
	x.State.Status, x.State.BytesOut = 0, 0
	x.State.ErrorKind, x.State.Error = "", ""
	e.next.ServeExchange(x)
}

// holdTooEarly is the client's response writer while an early request is
// upstream: it keeps the header on the side until the final status is
// known, swallows a 425 and its body, and passes anything else through.
type holdTooEarly struct {
	exchange.ResponseWriter
	hdr    exchange.Header
	caught bool // a 425 was held back
	passed bool // a final status other than 425 went to the client
}

func (w *holdTooEarly) Header() *exchange.Header {
	if w.passed {
		return w.ResponseWriter.Header()
	}
	return &w.hdr
}

func (w *holdTooEarly) WriteHeader(status int) {
	switch {
	case w.passed:
		w.ResponseWriter.WriteHeader(status)
		return
	case w.caught:
		return
	case status == 425:
		w.caught = true
		return
	}
	dst := w.ResponseWriter.Header()
	dst.Reset()
	w.hdr.Range(func(name, value string) bool {
		dst.Add(name, value)
		return true
	})
	w.passed = status >= 200
	w.ResponseWriter.WriteHeader(status)
}

func (w *holdTooEarly) Write(p []byte) (int, error) {
	if w.caught {
		return len(p), nil
	}
	if !w.passed {
		w.WriteHeader(200)
	}
	return w.ResponseWriter.Write(p)
}

func (w *holdTooEarly) Flush() error {
	if w.caught {
		return nil
	}
	if !w.passed {
		w.WriteHeader(200)
	}
	return w.ResponseWriter.Flush()
}

// safeMethod reports the methods RFC 8470 §4 and RFC 9110 §9.2.1 let a
// server process from early data: safe ones.
func safeMethod(m string) bool {
	return m == "GET" || m == "HEAD" || m == "OPTIONS"
}
