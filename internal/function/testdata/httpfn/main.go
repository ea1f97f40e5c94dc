// Command httpfn is a test function in http mode: an HTTP server on the
// address penstock gives it in PENSTOCK_LISTEN.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	addr := os.Getenv("PENSTOCK_LISTEN")
	network := "tcp"
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", p
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Fn", "http")
		fmt.Fprintf(w, "pid=%d deadline=%s", os.Getpid(), r.Header.Get("X-Penstock-Deadline-Ms"))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		for i := range 5 {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond)
		}
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(os.Stderr, "http function crashing on purpose")
		os.Exit(4)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) { <-make(chan struct{}) })
	http.Serve(ln, mux)
}
