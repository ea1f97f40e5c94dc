package h1_test

import (
	"bytes"
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/engine/h1"
	"github.com/penstock-dev/penstock/internal/engine/stdhttp"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// engine is a server under benchmark: h1 or stdhttp.
type engine interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

var engines = []struct {
	name string
	new  func(h1.Options, exchange.Handler) engine
}{
	{"native", func(o h1.Options, h exchange.Handler) engine { return h1.NewServer(o, h) }},
	{"stdhttp", func(o h1.Options, h exchange.Handler) engine { return stdhttp.NewServer(o.Options, h) }},
}

// okHandler is the trivial handler of the benchmarks: a 2-byte body with
// its length, as the pipeline's own answers are written.
var okHandler = exchange.HandlerFunc(func(x *exchange.Exchange) {
	h := x.W.Header()
	h.Set("Content-Type", "text/plain")
	h.Set("Content-Length", "2")
	x.W.WriteHeader(200)
	x.W.Write(okBody)
})

var okBody = []byte("ok")

func serveEngine(b *testing.B, newEngine func(h1.Options, exchange.Handler) engine, h exchange.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := newEngine(benchOptions(), h)
	go srv.Serve(ln)
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ln.Close()
	})
	return ln.Addr().String()
}

// benchOptions are penstock's listener defaults.
func benchOptions() h1.Options {
	return h1.Options{Options: stdhttp.Options{HTTP1: true, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 64 << 10}}
}

var benchRequest = []byte("GET /v1/models/m/predict?x=1 HTTP/1.1\r\nHost: api.example\r\nUser-Agent: bench/1.0\r\n" +
	"Accept: */*\r\nX-Request-Id: 0123456789abcdef\r\n\r\n")

// roundTrip writes one request and reads until the response's body ("ok")
// arrived; the client side allocates nothing, so allocs/op is the server's.
func roundTrip(b *testing.B, c net.Conn, buf []byte) {
	if _, err := c.Write(benchRequest); err != nil {
		b.Fatal(err)
	}
	readOK(b, c, buf)
}

// readOK reads until a response ending in "ok" arrived.
func readOK(b *testing.B, c net.Conn, buf []byte) {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			b.Fatal(err)
		}
		n += m
		if n >= 2 && bytes.HasSuffix(buf[:n], okBody) && bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
			return
		}
	}
}

// cpuTime is the process's user plus system CPU time in nanoseconds. Per
// request it is a steadier figure than wall time on a shared machine, and
// it is what a saturated gateway pays: client and server together here.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkServerKeepAlive measures one keep-alive request/response over a
// real loopback connection: parsing, the exchange, the response writer and
// the socket system calls, for the native engine and net/http side by side.
// allocs/op counts the whole process (the client allocates nothing).
func BenchmarkServerKeepAlive(b *testing.B) {
	for _, e := range engines {
		b.Run("engine="+e.name, func(b *testing.B) {
			addr := serveEngine(b, e.new, okHandler)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			buf := make([]byte, 4096)
			for range 100 { // warm the pools
				roundTrip(b, c, buf)
			}
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				roundTrip(b, c, buf)
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkServerKeepAlivePost is BenchmarkServerKeepAlive with a 1 KiB
// request body, Content-Length and chunked, that the handler reads.
func BenchmarkServerKeepAlivePost(b *testing.B) {
	payload := bytes.Repeat([]byte("p"), 1024)
	bodies := map[string][]byte{
		"length":  append([]byte("POST /v1/models/m/predict HTTP/1.1\r\nHost: api.example\r\nContent-Length: 1024\r\n\r\n"), payload...),
		"chunked": append(append([]byte("POST /v1/models/m/predict HTTP/1.1\r\nHost: api.example\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n"), payload...), "\r\n0\r\n\r\n"...),
	}
	sink := make([]byte, 512) // one connection at a time: shared is fine
	readAll := exchange.HandlerFunc(func(x *exchange.Exchange) {
		for {
			if _, err := x.Req.Body.Read(sink); err != nil {
				break
			}
		}
		okHandler(x)
	})
	for _, framing := range []string{"length", "chunked"} {
		for _, e := range engines {
			b.Run("framing="+framing+"/engine="+e.name, func(b *testing.B) {
				addr := serveEngine(b, e.new, readAll)
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				buf := make([]byte, 4096)
				req := bodies[framing]
				post := func() {
					if _, err := c.Write(req); err != nil {
						b.Fatal(err)
					}
					readOK(b, c, buf)
				}
				for range 100 {
					post()
				}
				b.ReportAllocs()
				for b.Loop() {
					post()
				}
			})
		}
	}
}

// BenchmarkServerKeepAliveParallel is BenchmarkServerKeepAlive with one
// connection per parallel client goroutine.
func BenchmarkServerKeepAliveParallel(b *testing.B) {
	for _, e := range engines {
		b.Run("engine="+e.name, func(b *testing.B) {
			addr := serveEngine(b, e.new, okHandler)
			b.ReportAllocs()
			cpu := cpuTime()
			defer func() { b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op") }()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				buf := make([]byte, 4096)
				for pb.Next() {
					roundTrip(b, c, buf)
				}
			})
		})
	}
}
