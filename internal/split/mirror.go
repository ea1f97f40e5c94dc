package split

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/rollout"
)

// Mirror copies a share of a split route's requests to a shadow pool and
// discards the shadow's responses. The client's exchange never waits for a
// copy: the copy is an exchange of its own, sent from a goroutine, and at
// most MaxQueue copies are waiting or in flight at once; one more is
// dropped (and counted) rather than queued. A request without a body is
// copied at once; a request body is kept, up to MaxBody, as it streams to
// the arm, and its copy is sent once the client's exchange is done (Send).
//
// Each copy's status and latency, and those of the arm's response to the
// same request, go to a live comparison (Compare): the shadow judged
// against the arm with the rollout tests, over the last minute.
type Mirror struct {
	// Route and Upstream name the split route and the shadow pool.
	Route, Upstream string
	// Next serves the copies: the shadow pool's forwarder.
	Next exchange.Handler
	// Percent is the share of requests copied (0–100).
	Percent float64
	// Timeout bounds each copy's exchange.
	Timeout time.Duration
	// MaxBody bounds the body a copy carries; 0 copies only requests
	// without one.
	MaxBody int64
	// Copied, Dropped and Skipped count the requests chosen for a copy
	// that were copied, dropped (queue full) and skipped (a body over
	// MaxBody, or not read to its end by the arm). Nil counts none.
	Copied, Dropped, Skipped Counter

	// slots holds one token per copy waiting or in flight.
	slots   chan struct{}
	counts  [3]atomic.Int64 // copied, dropped, skipped
	monitor *rollout.Monitor
	seed    atomic.Uint64
	bodies  sync.Pool
}

// Mirror comparison windows: the last minute, in one-second sub-windows.
const (
	mirrorSlot  = time.Second
	mirrorSlots = 60
)

// NewMirror returns a mirror that holds at most maxQueue copies at once.
func NewMirror(next exchange.Handler, percent float64, maxQueue int, timeout time.Duration, maxBody int64) *Mirror {
	m := &Mirror{Next: next, Percent: percent, Timeout: timeout, MaxBody: maxBody, slots: make(chan struct{}, maxQueue),
		monitor: rollout.NewMonitor(2, mirrorSlots, mirrorSlot, time.Now())}
	m.bodies.New = func() any { return new(bodyCopy) }
	return m
}

// Offer decides whether x is copied. A request without a body is copied
// and sent at once; for one with a body, Offer starts keeping the body as
// the arm reads it and returns the copy for Send, once x is served. It
// reports whether x was chosen (so that the arm's answer is compared).
func (m *Mirror) Offer(x *exchange.Exchange) (*bodyCopy, bool) {
	if m.Percent < 100 && rand.Float64()*100 >= m.Percent {
		return nil, false
	}
	cl := x.Req.ContentLength
	if cl != 0 && (m.MaxBody == 0 || cl > m.MaxBody) {
		m.count(mirrorSkipped, m.Skipped)
		return nil, false
	}
	select {
	case m.slots <- struct{}{}:
	default:
		m.count(mirrorDropped, m.Dropped)
		return nil, false
	}
	y := copyExchange(x)
	if cl == 0 {
		m.count(mirrorCopied, m.Copied)
		m.send(y, nil)
		return nil, true
	}
	b := m.bodies.Get().(*bodyCopy)
	b.y, b.r, b.max = y, x.Req.Body, m.MaxBody
	x.Req.Body = b
	return b, true
}

// Send sends the copy Offer prepared for x (nil: nothing to send), now
// that x is served, and compares the arm's answer with the shadow's.
func (m *Mirror) Send(b *bodyCopy, x *exchange.Exchange, chosen bool) {
	if !chosen {
		return
	}
	m.observe(rollout.Baseline, x)
	if b == nil {
		return
	}
	x.Req.Body = b.r
	b.r = nil
	y := b.y
	if !b.eof || b.over {
		// The arm did not read the body to its end (it answered early,
		// or failed), or it was longer than MaxBody: no copy.
		m.count(mirrorSkipped, m.Skipped)
		exchange.Release(y)
		m.releaseBody(b)
		<-m.slots
		return
	}
	y.Req.ContentLength = int64(len(b.buf))
	b.rd.Reset(b.buf)
	y.Req.Body = io.NopCloser(&b.rd)
	m.count(mirrorCopied, m.Copied)
	m.send(y, b)
}

// send serves y from a goroutine, then frees its slot and its body.
func (m *Mirror) send(y *exchange.Exchange, b *bodyCopy) {
	ctx, cancel := context.WithTimeout(context.Background(), m.Timeout)
	y.Ctx = ctx
	y.Start = time.Now()
	go func() {
		defer func() {
			cancel()
			m.observe(rollout.Canary, y)
			exchange.Release(y)
			if b != nil {
				m.releaseBody(b)
			}
			<-m.slots
		}()
		m.Next.ServeExchange(y)
	}()
}

// observe counts x's answer in the comparison: arm Baseline is the arm
// that served the client, Canary the shadow.
func (m *Mirror) observe(arm int, x *exchange.Exchange) {
	now := time.Now()
	m.monitor.Advance(now)
	m.monitor.Observe(arm, now.Sub(x.Start), failed(x), 0)
}

func (m *Mirror) releaseBody(b *bodyCopy) {
	if cap(b.buf) > 1<<20 {
		b.buf = nil // do not keep large buffers pooled
	}
	*b = bodyCopy{buf: b.buf[:0]}
	m.bodies.Put(b)
}

// Pending returns the copies waiting or in flight.
func (m *Mirror) Pending() int { return len(m.slots) }

// Mirror count indexes.
const (
	mirrorCopied = iota
	mirrorDropped
	mirrorSkipped
)

func (m *Mirror) count(i int, c Counter) {
	m.counts[i].Add(1)
	inc(c)
}

// MirrorStats is a mirror's state, for the admin API.
type MirrorStats struct {
	Route    string  `json:"route"`
	Upstream string  `json:"upstream"`
	Percent  float64 `json:"percent"`
	Copied   int64   `json:"copied"`
	Dropped  int64   `json:"dropped"`
	Skipped  int64   `json:"skipped"`
	Pending  int     `json:"pending"`
	// Comparison judges the shadow (canary) against the arms' answers to
	// the same requests (baseline) over the last minute, with the rollout
	// tests (no error-rate increase above one point, P99 at most 25 %
	// slower, no significant latency regression beyond 15 %).
	Comparison rollout.Verdict `json:"comparison"`
}

// MirrorSLO is what Stats judges the shadow by.
var MirrorSLO = rollout.SLO{MaxErrorRateIncrease: 0.01, MaxP99Increase: 0.25, MaxLatencyShift: 0.15}

// Stats returns the mirror's counts and its comparison over the last
// minute.
func (m *Mirror) Stats() MirrorStats {
	m.monitor.Advance(time.Now())
	cur := m.monitor.Current()
	from := cur - mirrorSlots + 1
	base, shadow := m.monitor.Window(rollout.Baseline, from, cur), m.monitor.Window(rollout.Canary, from, cur)
	v := rollout.Analyze(base, shadow, MirrorSLO, rollout.Analysis{MinRequests: 50}, m.seed.Add(1))
	v.Finite()
	return MirrorStats{Route: m.Route, Upstream: m.Upstream, Percent: m.Percent,
		Copied: m.counts[mirrorCopied].Load(), Dropped: m.counts[mirrorDropped].Load(), Skipped: m.counts[mirrorSkipped].Load(),
		Pending: m.Pending(), Comparison: v}
}

func inc(c Counter) {
	if c != nil {
		c.Inc()
	}
}

// bodyCopy keeps a request body as the arm reads it, for the copy.
type bodyCopy struct {
	y   *exchange.Exchange
	r   io.ReadCloser
	max int64
	buf []byte
	rd  bytes.Reader
	eof bool
	// over is set when the body grew past max: it is not kept.
	over bool
}

func (b *bodyCopy) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 && !b.over {
		if int64(len(b.buf)+n) > b.max {
			b.over, b.buf = true, b.buf[:0]
		} else {
			b.buf = append(b.buf, p[:n]...)
		}
	}
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

func (b *bodyCopy) Close() error { return b.r.Close() }

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
