package proxy

import (
	"errors"
	"strconv"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/grpccall"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// notTrailer lists the fields a sender must not put in a trailer section,
// or that a recipient must not act on there (RFC 9110 §6.5.1): framing,
// routing, request modifiers, authentication, and the fields that describe
// how to process the content. An upstream's trailer with one of them is
// not passed on.
var notTrailer = [...]string{
	"Authorization",
	"Cache-Control",
	"Content-Encoding",
	"Content-Length",
	"Content-Range",
	"Content-Type",
	"Expect",
	"Host",
	"Max-Forwards",
	"Pragma",
	"Range",
	"Set-Cookie",
	"Www-Authenticate",
}

// trailerAllowed reports whether a trailer field may be relayed.
func trailerAllowed(name string) bool {
	if isHopByHop(name) {
		return false
	}
	for _, n := range notTrailer {
		if exchange.EqualFold(n, name) {
			return false
		}
	}
	return true
}

// relayTrailers passes the upstream response's trailer fields on to the
// client, if its engine and protocol can carry them (exchange.TrailerWriter).
// A response without trailers costs one length check.
func relayTrailers(x *exchange.Exchange, resp *upstream.Response) {
	if resp.Trailer.Len() == 0 {
		return
	}
	tw, ok := x.W.(exchange.TrailerWriter)
	if !ok {
		return
	}
	dst := tw.Trailer()
	resp.Trailer.Range(func(name, value string) bool {
		if trailerAllowed(name) {
			dst.Add(name, value)
		}
		return true
	})
}

// announceTrailers passes on the client's Trailer field, which names the
// request trailers to come (RFC 9110 §6.6.2): outgoingHeader drops it with
// the hop-by-hop fields, but an upstream may keep only the trailers it was
// told about (net/http's servers do), so it goes with a request that can
// carry them.
func announceTrailers(in, out *exchange.Header) {
	in.Values("Trailer", func(v string) bool {
		out.Add("Trailer", v)
		return true
	})
}

// ReadTrailer implements exchange.TrailerReader for the upstream client:
// the client's request trailers, less the fields a trailer must not carry.
func (st *forwardState) ReadTrailer(dst *exchange.Header) {
	h := &st.trailer
	h.Reset()
	st.clientTrailer.ReadTrailer(h)
	h.Range(func(name, value string) bool {
		if trailerAllowed(name) {
			dst.Add(name, value)
		}
		return true
	})
}

// endGRPC ends a gRPC call whose upstream response broke off after it
// had started with a status in the trailers rather than a reset stream,
// so that the client learns why: DEADLINE_EXCEEDED when the call's
// deadline passed (grpc-timeout, timeouts.request), UNAVAILABLE otherwise.
// Only on HTTP/2 and HTTP/3, whose trailers always reach the client; on
// HTTP/1.1 the stream is cut as for any response. It reports whether it
// ended the call.
func endGRPC(x *exchange.Exchange, err error) bool {
	if x.Req.Proto != exchange.HTTP2 && x.Req.Proto != exchange.HTTP3 {
		return false
	}
	tw, ok := x.W.(exchange.TrailerWriter)
	if !ok {
		return false
	}
	code, msg := grpccall.Unavailable, errorKindTruncated
	var ue *upstream.Error
	if errors.As(err, &ue) && ue.Kind == upstream.KindTimeout {
		code, msg = grpccall.DeadlineExceeded, "upstream_timeout"
	}
	t := tw.Trailer()
	t.Set("Grpc-Status", grpccall.StatusString(code))
	t.Set("Grpc-Message", msg)
	x.State.SetGRPCStatus(code)
	return true
}

// recordGRPCStatus records the status a gRPC call ended with: the
// grpc-status trailer, or the header's in a trailers-only response.
func recordGRPCStatus(x *exchange.Exchange, resp *upstream.Response) {
	v, ok := resp.Trailer.Get("Grpc-Status")
	if !ok {
		v, ok = resp.Header.Get("Grpc-Status")
	}
	if !ok {
		return
	}
	if code, ok := grpccall.ParseStatus(v); ok {
		x.State.SetGRPCStatus(code)
	}
}

// grpcDeadline makes a gRPC call's grpc-timeout its deadline upstream
// (when it is sooner than the route's request timeout), counted from when
// penstock had the request, and rewrites the field for the upstream with
// the time that is left, so the service sees the client's deadline less
// what was spent getting to it (PROTOCOL-HTTP2.md, "Timeout").
func grpcDeadline(x *exchange.Exchange, req *upstream.Request) {
	v, ok := x.Req.Header.Get("Grpc-Timeout")
	if !ok {
		return
	}
	d, ok := grpccall.ParseTimeout(v)
	if !ok {
		// A malformed timeout is not the client's deadline: the upstream
		// judges it as it would without penstock.
		return
	}
	start := x.Start
	if start.IsZero() {
		start = time.Now()
	}
	dl := start.Add(d)
	if dl.Before(start) { // overflow: no deadline worth keeping
		return
	}
	if req.Deadline.IsZero() || dl.Before(req.Deadline) {
		req.Deadline = dl
	}
	left := time.Until(req.Deadline)
	if left < 0 {
		left = 0
	}
	var buf [16]byte
	req.Header.Del("Grpc-Timeout")
	req.Header.AddBytes([]byte("Grpc-Timeout"), appendTimeout(buf[:0], left))
}

// appendTimeout writes d as a grpc-timeout value: at most 8 digits, in the
// finest unit that fits, rounded up so that a time left is never sent as
// none (penstock itself enforces the exact deadline).
func appendTimeout(b []byte, d time.Duration) []byte {
	const max = 99999999
	units := [...]struct {
		d time.Duration
		c byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}, {time.Hour, 'H'}}
	for _, u := range units {
		n := d / u.d
		if d%u.d != 0 {
			n++
		}
		if n <= max {
			b = strconv.AppendInt(b, int64(n), 10)
			return append(b, u.c)
		}
	}
	b = strconv.AppendInt(b, max, 10)
	return append(b, 'H')
}
