// Package exchangetest is the stand-in engine of the pipeline's unit tests:
// a response writer that keeps what was written and pooled exchanges that
// go back to the pool when the test ends. Only tests import it: it is a
// package, not a _test.go file, so that the tests of several packages share
// it.
package exchangetest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// Recorder is an exchange.ResponseWriter that keeps what it was given. It
// stands in for an engine, not for a network peer.
type Recorder struct {
	Hdr      exchange.Header
	Statuses []int // every WriteHeader call, 1xx included
	Body     []byte
}

func (r *Recorder) Header() *exchange.Header { return &r.Hdr }
func (r *Recorder) WriteHeader(status int)   { r.Statuses = append(r.Statuses, status) }
func (r *Recorder) Write(p []byte) (int, error) {
	if len(r.Statuses) == 0 {
		r.WriteHeader(200)
	}
	r.Body = append(r.Body, p...)
	return len(p), nil
}
func (r *Recorder) Flush() error { return nil }
func (r *Recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, exchange.ErrNotHijackable
}

// Reset empties r and keeps its memory.
func (r *Recorder) Reset() {
	r.Hdr.Reset()
	r.Statuses = r.Statuses[:0]
	r.Body = r.Body[:0]
}

// NewExchange returns a pooled HTTP/1.1 exchange for method on "/",
// answered by a Recorder; the exchange goes back to the pool when the test
// ends.
func NewExchange(t testing.TB, method string) (*exchange.Exchange, *Recorder) {
	t.Helper()
	x := exchange.Acquire()
	rec := &Recorder{}
	x.W = rec
	x.Req.Proto = exchange.HTTP11
	x.Req.Method = method
	x.Req.Path = "/"
	x.Req.Body = io.NopCloser(strings.NewReader(""))
	t.Cleanup(func() { exchange.Release(x) })
	return x, rec
}

// HeaderValues lists every value of name in h, in order.
func HeaderValues(h *exchange.Header, name string) []string {
	var out []string
	h.Values(name, func(v string) bool {
		out = append(out, v)
		return true
	})
	return out
}
