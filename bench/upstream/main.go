// Command upstream is the origin server of penstock's proxy benchmarks: a
// small, fast HTTP/1.1 server that answers every path with the same 64-byte
// JSON body, so that what a benchmark measures is the proxy in front of it.
//
// Usage:
//
//	upstream -addr 127.0.0.1:18081
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"
)

// body is exactly 64 bytes: a small response, as in most API traffic.
var body = []byte(`{"ok":true,"service":"bench-upstream","payload":"0123456789abc"}`)

func main() {
	addr := flag.String("addr", "127.0.0.1:18081", "host:port to listen on (use a loopback address)")
	flag.Parse()

	if len(body) != 64 {
		log.Fatalf("upstream: body is %d bytes, want 64", len(body))
	}
	contentLength := strconv.Itoa(len(body))

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{contentLength}
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("upstream: %v", err)
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	log.Printf("upstream: listening on %s (%d-byte body)", ln.Addr(), len(body))
	if err := srv.Serve(ln); err != nil {
		log.Fatalf("upstream: %v", err)
	}
}
