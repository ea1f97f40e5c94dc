package server_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// handedListener passes connections from one socket to whichever server
// serves it now: closing it ends that server's Accept, not the socket, so
// a server can be shut down gracefully and replaced with no moment at which
// a connection is refused.
type handedListener struct {
	conns  <-chan net.Conn
	addr   net.Addr
	closed chan struct{}
	once   sync.Once
}

func (l *handedListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handedListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handedListener) Addr() net.Addr { return l.addr }

// TestH2UpstreamGoAwayRetriesUnprocessedStreams sends GETs and POSTs
// through penstock to an h2c upstream whose server is shut down gracefully
// (GOAWAY, in-flight streams finish) and replaced three times under load.
// Streams the upstream never processed, those opened after its GOAWAY was
// sent, are retried on a new connection, POSTs included (RFC 9113 §6.8:
// they were not processed, so a retry cannot repeat them): no client sees
// a failure.
func TestH2UpstreamGoAwayRetriesUnprocessedStreams(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	var upstreamConns atomic.Int64
	serve := func() *http.Server {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		srv := &http.Server{
			Protocols: &p,
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				time.Sleep(2 * time.Millisecond)
				fmt.Fprintf(w, "%s %d", r.Method, len(b))
			}),
			ConnState: func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					upstreamConns.Add(1)
				}
			},
		}
		go srv.Serve(&handedListener{conns: conns, addr: ln.Addr(), closed: make(chan struct{})})
		return srv
	}
	srv := serve()
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, protocol: h2c, endpoints: [{address: %s}]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
`, ln.Addr()))
	base := baseURL(g, "main")

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			deadline := time.Now().Add(60 * time.Second) // a bound, not an expectation
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				method, body, want := http.MethodGet, "", "GET 0"
				if (w+i)%2 == 1 {
					method, body, want = http.MethodPost, "hello", "POST 5"
				}
				req, _ := http.NewRequest(method, base+"/x", strings.NewReader(body))
				resp, err := c.Do(req)
				sent.Add(1)
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && (resp.StatusCode != 200 || string(b) != want) {
						err = fmt.Errorf("%s: status %d body %q", method, resp.StatusCode, b)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		})
	}
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		old := srv
		srv = serve()
		go old.Shutdown(t.Context())
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	srv.Close()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed across 3 upstream GOAWAYs; first: %v", n, sent.Load(), firstErr.Load())
	}
	if n := upstreamConns.Load(); n < 4 {
		t.Errorf("the upstream saw %d connections: the GOAWAYs did not move penstock to new ones", n)
	}
	t.Logf("%d requests, %d upstream connections", sent.Load(), upstreamConns.Load())
}

// TestH2UpstreamMultiplexesStreams sends 64 concurrent requests through
// penstock to an h2c upstream it has no connection to yet: they travel as
// streams of one connection, not one connection each as HTTP/1.1 would
// need, nor one per request in flight while the first dials.
func TestH2UpstreamMultiplexesStreams(t *testing.T) {
	var conns, inFlight, most atomic.Int64
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	up := &http.Server{
		Protocols: &p,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n := inFlight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(100 * time.Millisecond)
			inFlight.Add(-1)
			io.WriteString(w, "ok")
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, protocol: h2c, endpoints: [{address: %s}]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
`, ln.Addr()))
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	// The burst meets a cold pool: its first request dials, the others
	// wait for that connection (StdClient's cold gate) instead of dialing
	// one each.
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 64 {
		wg.Go(func() {
			resp, err := c.Get(baseURL(g, "main") + "/x")
			if err != nil {
				failed.Add(1)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of 64 requests failed", n)
	}
	t.Logf("64 requests, at most %d at once at the upstream, over %d connections", most.Load(), conns.Load())
	if n := conns.Load(); n != 1 {
		t.Errorf("64 concurrent requests on a cold pool took %d upstream connections, want 1 (multiplexed)", n)
	}
	if most.Load() < 16 {
		t.Errorf("at most %d requests were at the upstream at once: they did not run concurrently", most.Load())
	}
}
