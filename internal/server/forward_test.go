package server_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
)

// The attempt loop under client and upstream faults, through both upstream
// clients (native and client: stdhttp) and both listener engines.

// rawRequest writes raw on a new connection to addr and returns the status
// of the response and whether the connection was closed after it.
func rawRequest(t *testing.T, addr, raw string) (status int, closed bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	// A kept connection would wait for the next request: the deadline
	// turns that into an error other than EOF.
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err = br.ReadByte()
	return resp.StatusCode, err == io.EOF
}

// TestMalformedRequestBodyIsTheClients sends chunked request bodies whose
// framing is broken: the client gets 400 and its connection closed; the
// endpoint is not blamed (no upstream failure counted, passive health
// untouched, so the next request to the single-endpoint pool succeeds), and
// an upstream that received part of the request sees its connection closed,
// never a complete request.
func TestMalformedRequestBodyIsTheClients(t *testing.T) {
	var mu sync.Mutex
	var completed []string // malformed requests the upstream read in full
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err == nil && strings.HasSuffix(r.URL.Path, "/x") {
			mu.Lock()
			completed = append(completed, r.URL.Path)
			mu.Unlock()
		}
		io.WriteString(w, "ok")
	}))
	o := startObserved(t, lines(`listeners:
  - {name: native, address: "127.0.0.1:0"}
  - {name: std, address: "127.0.0.1:0", engine: stdhttp}
upstreams:
  - {name: native, endpoints: [{address: %s}], passive_health: {max_fails: 1, fail_timeout: 1m}}
  - {name: std, client: stdhttp, endpoints: [{address: %s}], passive_health: {max_fails: 1, fail_timeout: 1m}}
routes:
  - {name: native, match: {path_prefix: /native/}, upstream: native}
  - {name: std, match: {path_prefix: /std/}, upstream: std}
`, up, up))

	bodies := []struct {
		name string
		body string
		// nativeOnly: net/http's server (engine: stdhttp) accepts it.
		nativeOnly bool
	}{
		{name: "negative chunk size", body: "-5\r\nhello\r\n0\r\n\r\n"},
		{name: "0x prefix", body: "0x5\r\nhello\r\n0\r\n\r\n"},
		{name: "plus sign", body: "+5\r\nhello\r\n0\r\n\r\n"},
		{name: "overflowing chunk size", body: "fffffffffffffffff5\r\nhello\r\n0\r\n\r\n"},
		{name: "chunk data not followed by CRLF", body: "5\r\nhelloXX0\r\n\r\n"},
		{name: "obs-fold in a trailer", body: "5\r\nhello\r\n0\r\nX-A: 1\r\n 2\r\n\r\n", nativeOnly: true},
	}
	for _, listener := range []string{"native", "std"} {
		for _, client := range []string{"native", "std"} {
			for _, b := range bodies {
				if b.nativeOnly && listener != "native" {
					continue
				}
				t.Run(listener+" engine/"+client+" client/"+b.name, func(t *testing.T) {
					raw := "POST /" + client + "/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b.body
					status, closed := rawRequest(t, o.g.Addr(listener).String(), raw)
					if status != 400 || !closed {
						t.Errorf("status %d, connection closed %v; want 400 and closed", status, closed)
					}
					// The endpoint is still in rotation.
					resp, body := do(t, httpClient, "GET", baseURL(o.g, listener)+"/"+client+"/after", nil, nil)
					if resp.StatusCode != 200 {
						t.Errorf("next request: %d %s, want 200 (the endpoint was blamed)", resp.StatusCode, body)
					}
				})
			}
		}
	}
	for _, outcome := range []string{"error", "timeout", "connect_error", "truncated"} {
		for _, pool := range []string{"native", "std"} {
			if v := seriesValue(t, o.reg, "penstock_upstream_attempts_total", map[string]string{"upstream": pool, "outcome": outcome}); v != 0 {
				t.Errorf("upstream %s: %g attempts with outcome %s, want 0 (the client's fault)", pool, v, outcome)
			}
		}
	}
	mu.Lock()
	if len(completed) > 0 {
		t.Errorf("the upstream read malformed requests as complete: %q", completed)
	}
	mu.Unlock()
	for _, l := range o.lines(t) {
		if l["status"] == float64(502) {
			t.Errorf("access log line with 502: %v", l)
		}
	}
}

// httpClient is a client without keep-alive, so each request is on a new
// connection.
var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// TestTruncatedResponseIsAFailure: a response whose body ends early, after
// its status went to the client, is cut for the client and logged and
// counted as the failure it is: error kind upstream_truncated in the access
// log, upstream outcome "truncated" (not "ok").
func TestTruncatedResponseIsAFailure(t *testing.T) {
	stall := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { close(stall); ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 1000))
				if strings.HasSuffix(req.URL.Path, "/stall") {
					// Until the request timeout fires mid-body.
					<-stall
				}
			})
		}
	})
	o := startObserved(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: native, endpoints: [{address: %s}]}
  - {name: std, client: stdhttp, endpoints: [{address: %s}]}
routes:
  - {name: native, match: {path_prefix: /native/}, upstream: native, timeouts: {request: 300ms}}
  - {name: std, match: {path_prefix: /std/}, upstream: std, timeouts: {request: 300ms}}
`, ln.Addr(), ln.Addr()))

	paths := []string{"/native/close", "/native/stall", "/std/close", "/std/stall"}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			resp, err := httpClient.Get(baseURL(o.g, "main") + path)
			if err != nil {
				t.Fatal(err)
			}
			n, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil || n >= 100000 {
				t.Errorf("client read %d bytes, error %v; want the body cut short", n, err)
			}
		})
	}
	for _, pool := range []string{"native", "std"} {
		for outcome, want := range map[string]float64{"truncated": 2, "ok": 0} {
			if v := seriesValue(t, o.reg, "penstock_upstream_attempts_total", map[string]string{"upstream": pool, "outcome": outcome}); v != want {
				t.Errorf("upstream %s: %g attempts with outcome %s, want %g", pool, v, outcome, want)
			}
		}
	}
	var kinds []string
	for _, l := range o.lines(t) {
		kinds = append(kinds, fmt.Sprint(l["error_kind"]))
	}
	if want := strings.Repeat("upstream_truncated ", len(paths)); strings.Join(kinds, " ")+" " != want {
		t.Errorf("access log error kinds = %q, want upstream_truncated for each", kinds)
	}
}

// TestRetryOnReusedConnectionsClosedBeforeResponse: an upstream that
// closes every kept-alive connection when the next request arrives, without
// answering (a restart, a short keep-alive timeout racing the request).
// Requests that can be replayed are sent again on a new connection, even
// when every pooled connection turns out dead; a request whose body was
// sent is not (it may have been applied) and gets 502.
func TestRetryOnReusedConnectionsClosedBeforeResponse(t *testing.T) {
	const warm = 3
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	// The warm-up requests are answered only once all of them arrived, so
	// that each has a connection of its own to leave in the pool.
	var arrived atomic.Pointer[sync.WaitGroup]
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				if strings.HasSuffix(req.URL.Path, "/warm") {
					all := arrived.Load()
					all.Done()
					all.Wait()
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				// The next request on this connection is read, then
				// the connection closed with no answer.
				if req, err := http.ReadRequest(br); err == nil {
					io.Copy(io.Discard, req.Body)
				}
			})
		}
	})
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: native, endpoints: [{address: %s}]}
  - {name: std, client: stdhttp, endpoints: [{address: %s}]}
routes:
  - {name: native, match: {path_prefix: /native/}, upstream: native}
  - {name: std, match: {path_prefix: /std/}, upstream: std}
`, ln.Addr(), ln.Addr()))
	base := baseURL(g, "main")

	tests := []struct {
		name, method string
		header       map[string]string
		body         string
		want         int
	}{
		{name: "GET", method: "GET", want: 200},
		{name: "POST with an Idempotency-Key", method: "POST", header: map[string]string{"Idempotency-Key": "k1"}, want: 200},
		{name: "POST whose body was sent is not replayed", method: "POST", body: "data", want: 502},
	}
	for _, pool := range []string{"native", "std"} {
		for _, tt := range tests {
			t.Run(pool+"/"+tt.name, func(t *testing.T) {
				all := new(sync.WaitGroup)
				all.Add(warm)
				arrived.Store(all)
				var ready sync.WaitGroup
				for range warm {
					ready.Go(func() { do(t, httpClient, "GET", base+"/"+pool+"/warm", nil, nil) })
				}
				ready.Wait()
				var body io.Reader
				if tt.body != "" {
					body = strings.NewReader(tt.body)
				}
				resp, got := do(t, httpClient, tt.method, base+"/"+pool+"/x", tt.header, body)
				if resp.StatusCode != tt.want {
					t.Errorf("%s: %d %s, want %d", tt.method, resp.StatusCode, got, tt.want)
				}
			})
		}
	}
}

// TestProxyFailureLinesAreRateLimited: an outage fails every request, and
// each failure would write a WARN line; a route writes a burst of them and
// then about one a second, so an outage does not bury the rest of the log.
func TestProxyFailureLinesAreRateLimited(t *testing.T) {
	const requests = 50
	cfg, err := config.Parse([]byte(lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: dead, endpoints: [{address: %s}], passive_health: {max_fails: 1000}}]
routes: [{name: r, match: {path_prefix: /}, upstream: dead}]
`, closedAddr(t))), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	var logged lockedBuffer
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })
	for range requests {
		if resp, body := do(t, httpClient, "GET", baseURL(g, "main")+"/", nil, nil); resp.StatusCode != 502 {
			t.Fatalf("%d %s, want 502", resp.StatusCode, body)
		}
	}
	n := strings.Count(logged.String(), `msg="proxy failure"`)
	if n == 0 || n >= requests {
		t.Errorf("%d failure lines for %d failed requests, want at least one and fewer than one each", n, requests)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
