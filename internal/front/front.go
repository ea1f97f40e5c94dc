// Package front is the first handler of every listener, whatever its
// engine: it assigns the request id, reads the trace context, rejects
// request targets penstock will not route, looks the request up in the
// current configuration snapshot, runs the matched route's pipeline and
// records the finished request (metrics, span, access log line).
//
// It is on the request path of every request: one atomic load reaches the
// snapshot, and nothing here allocates or takes a lock.
package front

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/pipeline"
	"github.com/penstock-dev/penstock/internal/requestid"
	"github.com/penstock-dev/penstock/internal/router"
	"github.com/penstock-dev/penstock/internal/snapshot"
	"github.com/penstock-dev/penstock/internal/tracecontext"
)

// Handler is one listener's front handler. Its fields are set before it
// serves and not changed afterwards.
type Handler struct {
	// Snapshot is the current configuration, loaded once per request.
	// Required.
	Snapshot *atomic.Pointer[snapshot.Snapshot]
	// Trusted are the peers whose forwarding headers are kept.
	Trusted listener.TrustedSet
	// Draining is set during graceful shutdown; responses then carry
	// "Connection: close" so HTTP/1.1 clients move on. Required.
	Draining *atomic.Bool
	// AltSvc advertises the listener's HTTP/3 endpoint, or is nil.
	AltSvc *AltSvc
}

// ServeExchange serves one request (it is an exchange.Handler).
func (f *Handler) ServeExchange(x *exchange.Exchange) {
	s := f.Snapshot.Load()
	x.State.ClientAddr = x.Req.RemoteAddr.Addr().Unmap()
	if len(f.Trusted) > 0 {
		x.State.TrustedPeer = f.Trusted.Contains(x.Req.RemoteAddr.Addr())
		if x.State.TrustedPeer {
			x.State.ClientAddr = forwardedClient(f.Trusted, &x.Req.Header, x.State.ClientAddr)
		}
	}
	requestid.Assign(x)
	x.State.TraceFound = tracecontext.Extract(&x.Req.Header, s.W3C, s.B3, &x.State.Trace)
	x.State.Trace.Decide(s.SampleRatio)
	if f.Draining.Load() && x.Req.Proto < exchange.HTTP2 {
		x.W.Header().Set("Connection", "close")
	}
	if f.AltSvc != nil {
		f.AltSvc.add(x)
	}
	if !routablePath(x.Req.Path) {
		f.unrouted(x, s, failure.BadRequest)
		return
	}
	res := lookup(s, x)
	if !res.Found {
		if res.MethodNotAllowed {
			x.W.Header().Set("Allow", res.Allow)
			f.unrouted(x, s, failure.MethodNotAllowed)
			return
		}
		f.unrouted(x, s, failure.NoRoute)
		return
	}
	r := res.Value
	x.State.Route = r
	x.State.RouteName, x.State.Pattern = r.Name, r.Pattern
	if !x.State.TraceFound {
		r.Metrics.TraceContextMissing()
	}
	r.Metrics.Start()
	s.Tracer.StartServer(x, r.ParamAttributes)
	r.Handler.ServeExchange(x)
	finish(x, s, r.Metrics)
}

// lookup finds the request's route. A CORS preflight goes to the route of
// the request it announces (Access-Control-Request-Method) when that route
// answers preflights (it has a cors policy): the preflight asks about that
// request, and a route matching only POST, as a gRPC route does, would
// otherwise never see it. Other preflights are routed as any OPTIONS
// request, to whatever answers CORS today.
func lookup(s *snapshot.Snapshot, x *exchange.Exchange) router.Result[*snapshot.Route] {
	if x.Req.Method == "OPTIONS" {
		if m, ok := pipeline.IsPreflight(&x.Req); ok {
			res := s.Router.Lookup(x.Req.Host, m, x.Req.Path, &x.Req.Header, &x.State.Params)
			if res.Found && res.Value.Preflight {
				return res
			}
		}
	}
	return s.Router.Lookup(x.Req.Host, x.Req.Method, x.Req.Path, &x.Req.Header, &x.State.Params)
}

// unrouted answers a request no route takes, and records it under the
// "none" route.
func (f *Handler) unrouted(x *exchange.Exchange, s *snapshot.Snapshot, code failure.Code) {
	if !x.State.TraceFound {
		s.NoRoute.TraceContextMissing()
	}
	s.NoRoute.Start()
	s.Tracer.StartServer(x, false)
	failure.Fail(x, code)
	finish(x, s, s.NoRoute)
}

// routablePath rejects targets whose meaning an upstream could read
// differently from the router: anything not starting with "/", and dot
// segments ("/a/../b", also percent-encoded), which would let a request match
// one route's prefix and reach another path upstream. Clients normalise dot
// segments before sending (RFC 3986 §5.2.4), so legitimate traffic never
// carries them.
func routablePath(p string) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case 0:
			return false
		case '/':
			seg := p[i+1:]
			if j := strings.IndexByte(seg, '/'); j >= 0 {
				seg = seg[:j]
			}
			if isDotSegment(seg) {
				return false
			}
		}
	}
	return true
}

func isDotSegment(seg string) bool {
	if len(seg) == 0 || len(seg) > 6 {
		return false
	}
	// Decode %2e/%2E in place on a small stack buffer.
	var buf [6]byte
	n := 0
	for i := 0; i < len(seg); i++ {
		if seg[i] == '%' && i+2 < len(seg) && seg[i+1] == '2' && (seg[i+2] == 'e' || seg[i+2] == 'E') {
			buf[n] = '.'
			i += 2
		} else {
			buf[n] = seg[i]
		}
		n++
	}
	s := unsafe.String(&buf[0], n)
	return s == "." || s == ".."
}

// forwardedClient is the client a trusted proxy forwarded for: the
// rightmost X-Forwarded-For address that is not itself a trusted proxy
// (each proxy appends the peer it saw, so everything right of the first
// untrusted address was written by proxies we trust; NGINX's
// real_ip_recursive). When every address is trusted, the leftmost; when
// the header has no address, peer.
func forwardedClient(trusted listener.TrustedSet, h *exchange.Header, peer netip.Addr) netip.Addr {
	var first, last netip.Addr
	h.Values("X-Forwarded-For", func(v string) bool {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			a, err := netip.ParseAddr(strings.TrimSpace(item))
			if err != nil {
				continue
			}
			a = a.Unmap()
			if !first.IsValid() {
				first = a
			}
			if !trusted.Contains(a) {
				last = a
			}
		}
		return true
	})
	switch {
	case last.IsValid():
		return last
	case first.IsValid():
		return first
	}
	return peer
}
