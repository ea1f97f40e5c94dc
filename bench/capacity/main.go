// Command capacity is the upstream of bench/adaptive.sh: a server with a
// fixed number of workers, like a model server with a fixed number of batch
// slots or GPUs. Each request holds a worker for the service time; requests
// beyond the workers wait for one in arrival order, so the latency grows
// with the requests in flight once they exceed the workers, and grows
// without bound when requests arrive faster than the workers finish them.
// With -slow-after, the service time grows by -slow-factor after that long:
// an upstream that slows down under way.
//
// Usage:
//
//	capacity -addr 127.0.0.1:18082 -workers 16 -service 40ms
package main

import (
	"flag"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:18082", "host:port to listen on (use a loopback address)")
	workers := flag.Int("workers", 8, "requests served at once; the rest wait for a worker")
	service := flag.Duration("service", 20*time.Millisecond, "time a request holds a worker")
	jitter := flag.Float64("jitter", 0.1, "service time varies uniformly by ± this fraction")
	slowAfter := flag.Duration("slow-after", 0, "after this long, the service time becomes -slow-factor times longer (0: never)")
	slowFactor := flag.Float64("slow-factor", 2, "the service time's factor after -slow-after")
	flag.Parse()
	if *workers < 1 || *service <= 0 || *jitter < 0 || *jitter >= 1 {
		log.Fatal("capacity: -workers must be ≥ 1, -service > 0, 0 ≤ -jitter < 1")
	}

	// A buffered channel is the pool of workers: a request sends to take
	// one and receives to give it back. Blocked senders are woken in the
	// order they blocked, so waiting requests are served first come first
	// served.
	start := time.Now()
	pool := make(chan struct{}, *workers)
	body := []byte(`{"ok":true}` + "\n")
	clen := strconv.Itoa(len(body))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case pool <- struct{}{}:
		case <-r.Context().Done():
			return
		}
		base := float64(*service)
		if *slowAfter > 0 && time.Since(start) >= *slowAfter {
			// The model got slower (a larger batch, a throttled GPU).
			base *= *slowFactor
		}
		d := time.Duration(base * (1 + *jitter*(2*rand.Float64()-1)))
		time.Sleep(d)
		<-pool
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", clen)
		w.Write(body)
	})

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("capacity: %v", err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	log.Printf("capacity: %d workers, %s per request (±%.0f%%), on %s", *workers, *service, *jitter*100, ln.Addr())
	log.Fatal(srv.Serve(ln))
}
