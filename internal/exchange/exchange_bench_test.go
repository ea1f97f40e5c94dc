package exchange

import (
	"bytes"
	"net/http"
	"testing"
)

// The header block of a typical model-serving request, as an HTTP/1.1
// engine reads it off the wire.
var rawHeaders = []byte("Host: api.example.com\r\n" +
	"User-Agent: model-client/2.3 (linux; amd64)\r\n" +
	"Accept: application/json\r\n" +
	"Content-Type: application/json\r\n" +
	"Content-Length: 312\r\n" +
	"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n" +
	"X-Request-Id: 7d9c1f0e2b3a4c5d\r\n" +
	"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.ZRrHA1JJJW8opsbCGfG_HACGpVUMN_a9IV7pAx_Zmeo\r\n\r\n")

// forEachHeader splits a header block into name/value pairs without
// allocating, as an HTTP/1.1 engine's parser would.
func forEachHeader(b []byte, fn func(name, value []byte)) {
	for len(b) > 2 {
		i := bytes.Index(b, []byte("\r\n"))
		line := b[:i]
		b = b[i+2:]
		c := bytes.IndexByte(line, ':')
		fn(line[:c], bytes.TrimLeft(line[c+1:], " "))
	}
}

// BenchmarkFillExchangeHeader is what an engine pays to hand a request's
// headers to the pipeline through penstock's own Header: copies into a
// reused buffer.
func BenchmarkFillExchangeHeader(b *testing.B) {
	b.ReportAllocs()
	x := Acquire()
	for b.Loop() {
		x.Req.Header.Reset()
		forEachHeader(rawHeaders, x.Req.Header.AddBytes)
		if _, ok := x.Req.Header.Get("traceparent"); !ok {
			b.Fatal("lost header")
		}
	}
}

// BenchmarkFillPooledHTTPRequest is the alternative design: reuse a pooled
// *http.Request and its http.Header map. The map's buckets survive clear(),
// but every key and value must become a string the map can keep.
func BenchmarkFillPooledHTTPRequest(b *testing.B) {
	b.ReportAllocs()
	r := &http.Request{Header: make(http.Header, 16)}
	for b.Loop() {
		clear(r.Header)
		forEachHeader(rawHeaders, func(name, value []byte) {
			k := http.CanonicalHeaderKey(string(name))
			r.Header[k] = append(r.Header[k], string(value))
		})
		if r.Header.Get("Traceparent") == "" {
			b.Fatal("lost header")
		}
	}
}
