package gateway

import (
	"strings"
	"sync/atomic"
	"unsafe"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/requestid"
	"github.com/penstock-dev/penstock/internal/tracecontext"
)

// front is the first handler of every listener: it assigns the request id,
// rejects request targets penstock will not route, looks the request up in
// the current snapshot and runs the matched route's pipeline.
type front struct {
	snap    *atomic.Pointer[Snapshot]
	obs     *observability
	trusted listener.TrustedSet
	// draining is set during graceful shutdown; responses then carry
	// "Connection: close" so HTTP/1.1 clients move on.
	draining *atomic.Bool
	// altSvc advertises the listener's HTTP/3 endpoint, or is nil.
	altSvc *altSvc
}

func (f *front) ServeExchange(x *exchange.Exchange) {
	s := f.snap.Load()
	requestid.Assign(x)
	x.State.TraceFound = tracecontext.Extract(&x.Req.Header, s.w3c, s.b3, &x.State.Trace)
	x.State.Trace.Decide(s.sampleRatio)
	if len(f.trusted) > 0 {
		x.State.TrustedPeer = f.trusted.Contains(x.Req.RemoteAddr.Addr())
	}
	if f.draining.Load() && x.Req.Proto < exchange.HTTP2 {
		x.W.Header().Set("Connection", "close")
	}
	if f.altSvc != nil {
		f.altSvc.add(x)
	}
	if !routablePath(x.Req.Path) {
		f.unrouted(x, s, failure.BadRequest)
		return
	}
	res := s.Router.Lookup(x.Req.Host, x.Req.Method, x.Req.Path, &x.Req.Header, &x.State.Params)
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
		r.metrics.TraceContextMissing()
	}
	r.metrics.Start()
	f.obs.tracer.StartServer(x, r.paramAttributes)
	r.Handler.ServeExchange(x)
	f.obs.finish(x, r.metrics)
}

// unrouted answers a request no route takes, and records it under the
// "none" route.
func (f *front) unrouted(x *exchange.Exchange, s *Snapshot, code failure.Code) {
	if !x.State.TraceFound {
		s.noRoute.TraceContextMissing()
	}
	s.noRoute.Start()
	f.obs.tracer.StartServer(x, false)
	failure.Fail(x, code)
	f.obs.finish(x, s.noRoute)
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
