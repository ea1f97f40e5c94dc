package split

import (
	"bufio"
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// Mirror copies a share of a split route's requests to a shadow pool and
// discards the shadow's responses. The client's exchange never waits for a
// copy: Offer copies the request into an exchange of its own and sends it
// from a goroutine, and at most MaxQueue copies are waiting or in flight
// at once; one more is dropped (and counted) rather than queued. Only
// requests without a body are copied: the client's body is streamed to
// its arm as it arrives and is not kept.
type Mirror struct {
	// Next serves the copies: the shadow pool's forwarder.
	Next exchange.Handler
	// Percent is the share of requests copied (0–100).
	Percent float64
	// Timeout bounds each copy's exchange.
	Timeout time.Duration
	// Copied, Dropped and Skipped count the requests chosen for a copy
	// that were copied, dropped (queue full) and skipped (with a body).
	// Nil counts none.
	Copied, Dropped, Skipped Counter

	// slots holds one token per copy waiting or in flight.
	slots chan struct{}
}

// NewMirror returns a mirror that holds at most maxQueue copies at once.
func NewMirror(next exchange.Handler, percent float64, maxQueue int, timeout time.Duration) *Mirror {
	return &Mirror{Next: next, Percent: percent, Timeout: timeout, slots: make(chan struct{}, maxQueue)}
}

// Offer sends a copy of x's request to the shadow pool if x is chosen
// for one, and returns at once.
func (m *Mirror) Offer(x *exchange.Exchange) {
	if m.Percent < 100 && rand.Float64()*100 >= m.Percent {
		return
	}
	if x.Req.ContentLength != 0 {
		inc(m.Skipped)
		return
	}
	select {
	case m.slots <- struct{}{}:
	default:
		inc(m.Dropped)
		return
	}
	inc(m.Copied)
	y := copyExchange(x)
	ctx, cancel := context.WithTimeout(context.Background(), m.Timeout)
	y.Ctx = ctx
	go func() {
		defer func() {
			cancel()
			exchange.Release(y)
			<-m.slots
		}()
		m.Next.ServeExchange(y)
	}()
}

// Pending returns the copies waiting or in flight.
func (m *Mirror) Pending() int { return len(m.slots) }

func inc(c Counter) {
	if c != nil {
		c.Inc()
	}
}

// copyExchange returns a new exchange with a copy of x's request (whose
// strings alias the engine's memory only until x's handler returns), its
// request id and trace context, answering into a discarding writer.
func copyExchange(x *exchange.Exchange) *exchange.Exchange {
	y := exchange.Acquire()
	h := y.Req.Header
	x.Req.Header.Range(func(name, value string) bool {
		h.Add(name, value)
		return true
	})
	y.Req = exchange.Request{
		Proto:      x.Req.Proto,
		Method:     strings.Clone(x.Req.Method),
		Scheme:     x.Req.Scheme,
		Host:       strings.Clone(x.Req.Host),
		Path:       strings.Clone(x.Req.Path),
		Query:      strings.Clone(x.Req.Query),
		Header:     h,
		Body:       http.NoBody,
		RemoteAddr: x.Req.RemoteAddr,
	}
	y.Start = time.Now()
	y.W = &discard{}
	st := &y.State
	st.RouteName, st.Pattern = x.State.RouteName, x.State.Pattern
	st.RequestID = strings.Clone(x.State.RequestID)
	st.TrustedPeer = x.State.TrustedPeer
	st.Trace = x.State.Trace
	st.Trace.State = strings.Clone(x.State.Trace.State)
	return y
}

// discard is the shadow's response writer: it keeps nothing.
type discard struct{ h exchange.Header }

func (d *discard) Header() *exchange.Header    { return &d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) Flush() error                { return nil }
func (d *discard) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, exchange.ErrNotHijackable
}
