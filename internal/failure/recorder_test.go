package failure

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// recorder is an exchange.ResponseWriter that keeps what the pipeline wrote.
// It stands in for an engine, not for a network peer.
type recorder struct {
	hdr      exchange.Header
	statuses []int // every WriteHeader call, 1xx included
	body     []byte
}

func (r *recorder) Header() *exchange.Header { return &r.hdr }
func (r *recorder) WriteHeader(status int)   { r.statuses = append(r.statuses, status) }
func (r *recorder) Write(p []byte) (int, error) {
	if len(r.statuses) == 0 {
		r.WriteHeader(200)
	}
	r.body = append(r.body, p...)
	return len(p), nil
}
func (r *recorder) Flush() error { return nil }
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, exchange.ErrNotHijackable
}

// reset empties r and keeps its memory.
func (r *recorder) reset() {
	r.hdr.Reset()
	r.statuses = r.statuses[:0]
	r.body = r.body[:0]
}

// newExchange returns a pooled exchange for method answered by a recorder;
// the exchange goes back to the pool when the test ends.
func newExchange(t *testing.T, method string) (*exchange.Exchange, *recorder) {
	t.Helper()
	x := exchange.Acquire()
	rec := &recorder{}
	x.W = rec
	x.Req.Proto = exchange.HTTP11
	x.Req.Method = method
	x.Req.Path = "/"
	x.Req.Body = io.NopCloser(strings.NewReader(""))
	t.Cleanup(func() { exchange.Release(x) })
	return x, rec
}

// headerValues lists every value of name in h, in order.
func headerValues(h *exchange.Header, name string) []string {
	var out []string
	h.Values(name, func(v string) bool {
		out = append(out, v)
		return true
	})
	return out
}
