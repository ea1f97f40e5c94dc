// Package stdhttp is penstock's net/http engine: it serves HTTP/1.1, HTTP/2
// over TLS and h2c with the standard library's server and hands each request
// to the route pipeline as an *exchange.Exchange.
//
// It serves every protocol on listeners with "engine: stdhttp", and HTTP/2
// for the native engine (internal/engine/h1), which hands HTTP/2 connections
// to net/http with this package's Adapter. Converting between http.Header and
// exchange.Header costs allocations here; that cost belongs to this engine,
// not to the pipeline, which stays allocation-free.
package stdhttp

import (
	"bufio"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// Adapter serves net/http requests through an exchange.Handler.
type Adapter struct {
	// Handler serves every exchange. Required.
	Handler exchange.Handler
}

var writerPool = sync.Pool{New: func() any { return new(responseWriter) }}

// ServeHTTP implements http.Handler.
func (a *Adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := exchange.Acquire()
	rw := writerPool.Get().(*responseWriter)
	rw.w, rw.http2 = w, r.ProtoMajor >= 2
	x.W = rw
	x.Ctx = r.Context()
	x.Start = time.Now()
	fill(&x.Req, r)

	a.Handler.ServeExchange(x)
	aborted := x.State.Aborted

	exchange.Release(x)
	rw.reset()
	writerPool.Put(rw)
	if aborted {
		// net/http's documented way to abort a response: the connection (or
		// HTTP/2 stream) is reset and nothing is logged.
		panic(http.ErrAbortHandler)
	}
}

// fill copies what the pipeline needs from r into req.
func fill(req *exchange.Request, r *http.Request) {
	switch {
	case r.ProtoMajor == 3:
		req.Proto = exchange.HTTP3
	case r.ProtoMajor == 2:
		req.Proto = exchange.HTTP2
	case r.ProtoMinor == 0:
		req.Proto = exchange.HTTP10
	default:
		req.Proto = exchange.HTTP11
	}
	req.Method = r.Method
	req.Scheme = "http"
	if r.TLS != nil {
		req.Scheme = "https"
	}
	req.Host = r.Host
	// RequestURI is the target exactly as the client sent it, so the path is
	// forwarded byte for byte; absolute-form and HTTP/2 targets fall back to
	// the parsed URL.
	if uri := r.RequestURI; len(uri) > 0 && uri[0] == '/' {
		if i := strings.IndexByte(uri, '?'); i >= 0 {
			req.Path, req.Query = uri[:i], uri[i+1:]
		} else {
			req.Path = uri
		}
	} else {
		req.Path, req.Query = r.URL.EscapedPath(), r.URL.RawQuery
	}
	for name, values := range r.Header {
		for _, v := range values {
			req.Header.Add(name, v)
		}
	}
	req.Body = r.Body
	req.ContentLength = r.ContentLength
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		req.RemoteAddr = ap
	}
	req.TLS = r.TLS
}

// responseWriter implements exchange.ResponseWriter over http.ResponseWriter.
type responseWriter struct {
	w           http.ResponseWriter
	hdr         exchange.Header
	http2       bool
	wroteHeader bool
}

func (rw *responseWriter) reset() {
	rw.w = nil
	rw.hdr.Reset()
	rw.wroteHeader = false
}

func (rw *responseWriter) Header() *exchange.Header { return &rw.hdr }

func (rw *responseWriter) WriteHeader(status int) {
	if rw.wroteHeader {
		return
	}
	h := rw.w.Header()
	clear(h)
	// net/http keeps the map past this call, and our header's strings alias a
	// reused buffer: clone them.
	rw.hdr.Range(func(name, value string) bool {
		k := http.CanonicalHeaderKey(strings.Clone(name))
		h[k] = append(h[k], strings.Clone(value))
		return true
	})
	if status >= 200 || status == http.StatusSwitchingProtocols {
		rw.wroteHeader = true
	}
	rw.w.WriteHeader(status)
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	return rw.w.Write(p)
}

func (rw *responseWriter) Flush() error {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(rw.w).Flush()
}

func (rw *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if rw.http2 {
		return nil, nil, exchange.ErrNotHijackable
	}
	return http.NewResponseController(rw.w).Hijack()
}
