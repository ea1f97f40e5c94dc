package pipeline

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"sync"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/grpccall"
)

// GRPCWebSettings are the grpc_web stage's route fields.
type GRPCWebSettings struct {
	// GRPCWeb translates gRPC-Web calls from browsers (Content-Type
	// application/grpc-web, application/grpc-web+proto, and the base64
	// text mode application/grpc-web-text) into gRPC for the upstream: the
	// request's messages pass through unchanged (decoded from base64 in
	// text mode), and the response's trailers (grpc-status, grpc-message,
	// trailing metadata) are sent as gRPC-Web's trailer frame at the end
	// of the body. The upstream must speak gRPC (protocol: h2 or h2c). A
	// page on another origin also needs CORS answers (cors on the same
	// route). Other requests pass untouched. Default false.
	GRPCWeb bool `yaml:"grpc_web"`
}

// SetDefaults implements Settings: off by default.
func (s *GRPCWebSettings) SetDefaults() {}

// Check implements Settings: a boolean has nothing to check.
func (s *GRPCWebSettings) Check(*Route) {}

// grpcWeb is the stage of a route with grpc_web: true.
type grpcWeb struct{ next exchange.Handler }

func newGRPCWeb(s *GRPCWebSettings, _ *Route, next exchange.Handler) (exchange.Handler, error) {
	if !s.GRPCWeb {
		return next, nil
	}
	return &grpcWeb{next: next}, nil
}

var webWriterPool = sync.Pool{New: func() any { return new(webWriter) }}

func (g *grpcWeb) ServeExchange(x *exchange.Exchange) {
	kind := grpccall.Classify(&x.Req)
	if kind != grpccall.Web && kind != grpccall.WebText {
		g.next.ServeExchange(x)
		return
	}
	w := webWriterPool.Get().(*webWriter)
	w.inner, w.text = x.W, kind == grpccall.WebText
	h := &x.Req.Header
	// The message codec after '+' (proto, json...) is kept:
	// application/grpc-web+json becomes application/grpc+json.
	codec := "application/grpc"
	if ct, _ := h.Get("Content-Type"); hasCodec(ct, "+json") {
		codec = "application/grpc+json"
	} else if hasCodec(ct, "+proto") {
		codec = "application/grpc+proto"
	}
	h.Set("Content-Type", codec)
	// gRPC servers may insist on it (PROTOCOL-HTTP2.md); browsers cannot
	// send it.
	h.Set("Te", "trailers")
	if w.text {
		w.dec.Reset(x.Req.Body)
		w.body = x.Req.Body
		x.Req.Body = w
		x.Req.ContentLength = -1
		h.Del("Content-Length")
	}
	x.W = w
	g.next.ServeExchange(x)
	w.finish(x)
	x.W = w.inner
	w.reset()
	webWriterPool.Put(w)
}

// hasCodec reports a content type's codec suffix (before any parameter).
func hasCodec(ct, suffix string) bool {
	for i := 0; i+len(suffix) <= len(ct); i++ {
		if ct[i] == ';' {
			return false
		}
		if exchange.EqualFold(ct[i:i+len(suffix)], suffix) {
			return true
		}
	}
	return false
}

// webWriter answers a gRPC-Web call: it relabels the gRPC response for the
// browser, keeps its trailers and writes them as the last frame of the
// body, and in text mode base64-encodes every write. It is also the text
// mode's request body (Read decodes base64), pooled with the writer.
type webWriter struct {
	inner       exchange.ResponseWriter
	text        bool
	wroteHeader bool
	status      int
	trailer     exchange.Header
	// dec decodes the text mode's request body, read from body.
	dec  grpccall.TextDecoder
	body io.ReadCloser
	// enc holds base64 output (text mode) and the trailer frame.
	enc []byte
}

func (w *webWriter) reset() {
	w.inner, w.text, w.wroteHeader, w.status = nil, false, false, 0
	w.trailer.Reset()
	w.dec.Reset(nil)
	w.body = nil
	if cap(w.enc) > 64<<10 {
		w.enc = nil
	}
	w.enc = w.enc[:0]
}

// Read implements the text mode's request body.
func (w *webWriter) Read(p []byte) (int, error) { return w.dec.Read(p) }

// Close implements the text mode's request body.
func (w *webWriter) Close() error { return w.body.Close() }

func (w *webWriter) Header() *exchange.Header { return w.inner.Header() }

// Trailer implements exchange.TrailerWriter: the fields end up in the
// body's trailer frame.
func (w *webWriter) Trailer() *exchange.Header { return &w.trailer }

func (w *webWriter) WriteHeader(status int) {
	if status >= 200 && !w.wroteHeader {
		w.wroteHeader, w.status = true, status
		h := w.inner.Header()
		if ct, ok := h.Get("Content-Type"); ok && grpccall.KindOf(ct) == grpccall.GRPC {
			web := "application/grpc-web+proto"
			if w.text {
				web = "application/grpc-web-text+proto"
			}
			h.Set("Content-Type", web)
		}
		// The body gains the trailer frame (and base64 in text mode).
		h.Del("Content-Length")
	}
	w.inner.WriteHeader(status)
}

func (w *webWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(200)
	}
	if !w.text {
		return w.inner.Write(p)
	}
	w.enc = base64.StdEncoding.AppendEncode(w.enc[:0], p)
	if _, err := w.inner.Write(w.enc); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (w *webWriter) Flush() error { return w.inner.Flush() }

func (w *webWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, exchange.ErrNotHijackable
}

// finish writes the trailer frame of a response that has trailers. A
// trailers-only response (grpc-status in the header, as penstock's own
// refusals are) needs none: gRPC-Web clients read the status there.
func (w *webWriter) finish(x *exchange.Exchange) {
	if !w.wroteHeader || w.status != 200 || x.State.Aborted || w.trailer.Len() == 0 {
		return
	}
	frame := grpccall.AppendTrailerFrame(nil, &w.trailer)
	n, err := w.Write(frame)
	x.State.BytesOut += int64(n)
	if err != nil {
		x.State.Aborted = true
	}
}
