package h1_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/engine/h1"
	"github.com/penstock-dev/penstock/internal/engine/stdhttp"
	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/listener"
)

// testHandler answers by path; it is the engine's only view of the
// pipeline in these tests.
func testHandler(x *exchange.Exchange) {
	w := x.W
	switch x.Req.Path {
	case "/echo":
		// Echo the body and what the engine parsed.
		body, err := io.ReadAll(x.Req.Body)
		if err != nil {
			w.Header().Set("X-Body-Error", err.Error())
		}
		h := w.Header()
		h.Set("X-Method", x.Req.Method)
		h.Set("X-Host", x.Req.Host)
		h.Set("X-Path", x.Req.Path)
		h.Set("X-Query", x.Req.Query)
		h.Set("X-Proto", x.Req.Proto.String())
		h.Set("X-Scheme", x.Req.Scheme)
		h.Set("X-Content-Length", strconv.FormatInt(x.Req.ContentLength, 10))
		if v, ok := x.Req.Header.Get("X-Test"); ok {
			h.Set("X-Test-Echo", v)
		}
		w.Write(body)
	case "/stream":
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.Flush()
		}
	case "/slow":
		time.Sleep(100 * time.Millisecond)
		w.Write([]byte("slow"))
	case "/huge":
		// Far more than the socket buffers hold: the writer must wait
		// for the client to read.
		w.Header().Set("Content-Length", strconv.Itoa(hugeBody))
		w.WriteHeader(200)
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for n := 0; n < hugeBody; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				select {
				case hugeWriteFailed <- err:
				default:
				}
				return
			}
		}
	case "/length":
		w.Header().Set("Content-Length", "5")
		w.Write([]byte("hello"))
	case "/short":
		w.Header().Set("Content-Length", "10")
		w.Write([]byte("hello"))
	case "/early":
		w.Header().Add("Link", "</style.css>; rel=preload")
		w.WriteHeader(103)
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(200)
		w.Write([]byte("final"))
	case "/nocontent":
		w.WriteHeader(204)
	case "/notmodified":
		w.WriteHeader(304)
	case "/close":
		w.Header().Set("Connection", "close")
		w.Write([]byte("bye"))
	case "/noread":
		w.Write([]byte("ignored your body"))
	case "/abort":
		w.WriteHeader(200)
		w.Write([]byte("partial"))
		w.Flush()
		x.State.Aborted = true
	case "/big":
		chunk := strings.Repeat("x", 1000)
		for range 100 {
			w.Write([]byte(chunk))
		}
	case "/late":
		// Answer without reading the body and leave a reader behind, as
		// an HTTP client's body-writing goroutine can be.
		body := x.Req.Body
		go func() {
			time.Sleep(100 * time.Millisecond)
			_, err := body.Read(make([]byte, 16))
			lateRead <- err
		}()
		w.Write([]byte("early"))
	case "/ctx":
		// Whether the request's context is already done.
		state := "live"
		if x.Ctx.Err() != nil {
			state = "done"
		}
		w.Header().Set("X-Ctx", state)
		w.WriteHeader(200)
	case "/wait":
		// Wait for the client to go away; report it on clientGone.
		select {
		case <-x.Ctx.Done():
			clientGone <- true
		case <-time.After(5 * time.Second):
			clientGone <- false
		}
	case "/hijack":
		conn, brw, err := w.Hijack()
		if err != nil {
			w.WriteHeader(500)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		// Echo one line, read through the buffered reader so bytes sent
		// with the request are not lost.
		line, _ := brw.ReadString('\n')
		conn.Write([]byte("echo: " + line))
	default:
		w.Write([]byte("ok"))
	}
}

// lateRead receives the error of /late's read after the exchange ended.
var lateRead = make(chan error, 1)

// clientGone receives whether /wait saw its context cancelled.
var clientGone = make(chan bool, 1)

type serverOpts func(*h1.Options)

// startServer serves testHandler on a loopback listener until the test ends.
func startServer(t testing.TB, opts ...serverOpts) (addr string, srv *h1.Server) {
	t.Helper()
	o := h1.Options{Options: stdhttp.Options{HTTP1: true, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second, MaxHeaderBytes: 8 << 10}}
	// An IO of the test's own (where there is epoll), closed once the
	// server has shut down.
	if eio, err := epoll.NewIO(2); err == nil {
		o.IO = eio
		t.Cleanup(func() { eio.Close() })
	}
	for _, f := range opts {
		f(&o)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv = h1.NewServer(o, exchange.HandlerFunc(testHandler))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		ln.Close()
		<-done
	})
	return ln.Addr().String(), srv
}

// rawConn sends raw bytes and reads responses.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one response (1xx included) for a request with method.
func (c *rawConn) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil && err != io.ErrUnexpectedEOF {
		c.t.Fatalf("read body: %v", err)
	}
	resp.Body.Close()
	return resp, string(b)
}

// closed reports whether the server closed the connection (EOF, reset)
// within half a second.
func (c *rawConn) closed() bool {
	c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	_, err := c.br.ReadByte()
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestExchanges(t *testing.T) {
	addr, _ := startServer(t)
	tests := []struct {
		name     string
		req      string
		method   string
		status   int
		body     string
		header   map[string]string
		closes   bool
		chunked  bool
		noLength bool
	}{
		{name: "GET echo", req: "GET /echo?a=1 HTTP/1.1\r\nHost: example.com\r\nX-Test: yes\r\n\r\n",
			status: 200, header: map[string]string{"X-Method": "GET", "X-Host": "example.com", "X-Path": "/echo",
				"X-Query": "a=1", "X-Proto": "HTTP/1.1", "X-Test-Echo": "yes", "Content-Length": "0", "X-Scheme": "http"}},
		{name: "POST with Content-Length", req: "POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
			status: 200, body: "hello", header: map[string]string{"X-Content-Length": "5"}},
		{name: "POST chunked with extension and trailer",
			req:    "POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
			status: 200, body: "hello world", header: map[string]string{"X-Content-Length": "-1"}},
		{name: "absolute-form takes Host from the target", req: "GET http://Target.example:8080/echo?q HTTP/1.1\r\nHost: other\r\n\r\n",
			status: 200, header: map[string]string{"X-Host": "Target.example:8080", "X-Path": "/echo", "X-Query": "q"}},
		{name: "bare LF line endings accepted", req: "GET /echo HTTP/1.1\nHost: lf\n\n",
			status: 200, header: map[string]string{"X-Host": "lf"}},
		{name: "leading empty line ignored", req: "\r\nGET /echo HTTP/1.1\r\nHost: h\r\n\r\n", status: 200},
		{name: "HTTP/1.0 closes by default", req: "GET /echo HTTP/1.0\r\n\r\n", status: 200, closes: true,
			header: map[string]string{"X-Proto": "HTTP/1.0"}},
		{name: "HTTP/1.0 keep-alive", req: "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", status: 200,
			header: map[string]string{"Connection": "keep-alive"}},
		{name: "HTTP/1.0 stream is close-delimited", req: "GET /stream HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", status: 200,
			body: "data: 0\n\ndata: 1\n\ndata: 2\n\n", closes: true, noLength: true},
		{name: "client Connection: close", req: "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", status: 200, body: "ok", closes: true},
		{name: "handler Connection: close", req: "GET /close HTTP/1.1\r\nHost: h\r\n\r\n", status: 200, body: "bye", closes: true},
		{name: "flushed stream is chunked", req: "GET /stream HTTP/1.1\r\nHost: h\r\n\r\n", status: 200,
			body: "data: 0\n\ndata: 1\n\ndata: 2\n\n", chunked: true},
		{name: "unflushed body gets Content-Length", req: "GET /big HTTP/1.1\r\nHost: h\r\n\r\n", status: 200,
			body: strings.Repeat("x", 100000), chunked: true},
		{name: "handler Content-Length", req: "GET /length HTTP/1.1\r\nHost: h\r\n\r\n", status: 200, body: "hello",
			header: map[string]string{"Content-Length": "5"}},
		{name: "short body closes", req: "GET /short HTTP/1.1\r\nHost: h\r\n\r\n", status: 200, closes: true},
		{name: "HEAD has no body", req: "HEAD /length HTTP/1.1\r\nHost: h\r\n\r\n", method: "HEAD", status: 200,
			header: map[string]string{"Content-Length": "5"}},
		{name: "204 has no body", req: "GET /nocontent HTTP/1.1\r\nHost: h\r\n\r\n", status: 204},
		{name: "304 has no body", req: "GET /notmodified HTTP/1.1\r\nHost: h\r\n\r\n", status: 304},
		{name: "asterisk-form OPTIONS", req: "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", status: 200, body: "ok"},
		{name: "unread small body is drained", req: "POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc", status: 200},
		{name: "HTTP/1.2 is answered as 1.1", req: "GET /echo HTTP/1.2\r\nHost: h\r\n\r\n", status: 200,
			header: map[string]string{"X-Proto": "HTTP/1.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, addr)
			c.send(tt.req)
			method := tt.method
			if method == "" {
				method = "GET"
			}
			resp, body := c.response(method)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.body != "" && body != tt.body {
				t.Errorf("body %q, want %q", trunc(body), trunc(tt.body))
			}
			for k, v := range tt.header {
				if got := resp.Header.Get(k); got != v {
					if k == "Content-Length" && resp.ContentLength == mustInt(v) {
						continue
					}
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.chunked && (len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked") {
				t.Errorf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
			}
			if tt.noLength && resp.ContentLength >= 0 {
				t.Errorf("Content-Length %d, want none", resp.ContentLength)
			}
			if resp.Header.Get("Date") == "" {
				t.Error("no Date header")
			}
			if got := c.closed(); got != tt.closes {
				t.Errorf("connection closed = %v, want %v", got, tt.closes)
			}
		})
	}
}

func mustInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func trunc(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}

// TestSmugglingThroughSocket sends each refused request over a real
// connection: the answer is the status RFC 9112 calls for and the
// connection is closed, so no second request can ride on the first.
func TestSmugglingThroughSocket(t *testing.T) {
	addr, _ := startServer(t)
	for _, tt := range h1.ParseCases {
		if tt.Status == 200 {
			continue
		}
		t.Run(tt.Name, func(t *testing.T) {
			c := dial(t, addr)
			// A smuggled request follows; it must never be answered.
			c.send(tt.Req + "GET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n")
			resp, _ := c.response("GET")
			if resp.StatusCode != tt.Status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.Status)
			}
			if !c.closed() {
				t.Error("connection left open after a refused request")
			}
		})
	}
}

func TestPipelining(t *testing.T) {
	addr, _ := startServer(t)
	c := dial(t, addr)
	c.send("GET /echo?n=1 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"POST /echo?n=2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
		"POST /echo?n=3 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nde\r\n0\r\n\r\n" +
		"GET /echo?n=4 HTTP/1.1\r\nHost: h\r\n\r\n")
	for i, want := range []string{"", "abc", "de", ""} {
		resp, body := c.response("GET")
		if q := resp.Header.Get("X-Query"); q != "n="+strconv.Itoa(i+1) || body != want {
			t.Errorf("response %d: query %q body %q, want n=%d %q", i+1, q, body, i+1, want)
		}
	}
}

func TestLateBodyReadFails(t *testing.T) {
	addr, _ := startServer(t)
	c := dial(t, addr)
	c.send("POST /late HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nfirst")
	if resp, body := c.response("POST"); resp.StatusCode != 200 || body != "early" {
		t.Fatalf("first: %d %q", resp.StatusCode, body)
	}
	c.send("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nsecond")
	if err := <-lateRead; err == nil {
		t.Error("a read after the exchange ended succeeded")
	}
	if resp, body := c.response("POST"); resp.StatusCode != 200 || body != "second" {
		t.Fatalf("second: %d %q", resp.StatusCode, body)
	}
}

func TestExpectContinue(t *testing.T) {
	addr, _ := startServer(t)
	t.Run("100 Continue sent when the handler reads", func(t *testing.T) {
		c := dial(t, addr)
		c.send("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
		resp, _ := c.response("POST")
		if resp.StatusCode != 100 {
			t.Fatalf("status %d, want 100", resp.StatusCode)
		}
		c.send("body")
		resp, body := c.response("POST")
		if resp.StatusCode != 200 || body != "body" {
			t.Fatalf("final %d %q", resp.StatusCode, body)
		}
	})
	t.Run("no 100 Continue when the handler does not read", func(t *testing.T) {
		c := dial(t, addr)
		c.send("POST /noread HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
		resp, _ := c.response("POST")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200 without 100 first", resp.StatusCode)
		}
		if !resp.Close {
			t.Error("response does not announce Connection: close")
		}
	})
	t.Run("unknown expectation", func(t *testing.T) {
		c := dial(t, addr)
		c.send("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: teapot\r\n\r\nbody")
		resp, _ := c.response("POST")
		if resp.StatusCode != 417 {
			t.Fatalf("status %d, want 417", resp.StatusCode)
		}
	})
}

func TestEarlyHints(t *testing.T) {
	addr, _ := startServer(t)
	c := dial(t, addr)
	c.send("GET /early HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, _ := c.response("GET")
	if resp.StatusCode != 103 || resp.Header.Get("Link") == "" {
		t.Fatalf("first response %d Link %q, want 103 with Link", resp.StatusCode, resp.Header.Get("Link"))
	}
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || body != "final" {
		t.Fatalf("final response %d %q", resp.StatusCode, body)
	}
}

func TestAbortClosesConnection(t *testing.T) {
	addr, _ := startServer(t)
	c := dial(t, addr)
	c.send("GET /abort HTTP/1.1\r\nHost: h\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Error("aborted body read to a clean end; want a truncated chunked body")
	}
}

func TestHijack(t *testing.T) {
	addr, _ := startServer(t)
	c := dial(t, addr)
	// The line after the request arrives with it: it must reach the
	// handler through the hijacked reader.
	c.send("GET /hijack HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("status %v err %v, want 101", resp, err)
	}
	line, err := c.br.ReadString('\n')
	if err != nil || line != "echo: hello\n" {
		t.Fatalf("got %q %v", line, err)
	}
}

func TestClientHangUpCancelsContext(t *testing.T) {
	addr, _ := startServer(t)
	c := dial(t, addr)
	c.send("GET /wait HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	c.nc.Close()
	if !<-clientGone {
		t.Error("handler context not cancelled after the client closed")
	}
}

// Exchange state is pooled across connections: a context cancelled by one
// client hanging up must never reach another client's request.
func TestCancelledContextNotReused(t *testing.T) {
	addr, _ := startServer(t)
	for round := range 3 {
		c := dial(t, addr)
		c.send("GET /wait HTTP/1.1\r\nHost: h\r\n\r\n")
		time.Sleep(50 * time.Millisecond)
		c.nc.Close()
		if !<-clientGone {
			t.Fatalf("round %d: handler context not cancelled after the client closed", round)
		}
		for i := range 3 {
			d := dial(t, addr)
			d.send("GET /ctx HTTP/1.1\r\nHost: h\r\n\r\n")
			resp, _ := d.response("GET")
			if got := resp.Header.Get("X-Ctx"); got != "live" {
				t.Errorf("round %d, request %d: new connection's context is %q, want live", round, i, got)
			}
			d.nc.Close()
		}
	}
}

func TestClientHangUpCancelsContextTLS(t *testing.T) {
	cert, _, err := listener.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := startServer(t, func(o *h1.Options) {
		o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}
	})
	nc, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(nc, "GET /wait HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(100 * time.Millisecond)
	nc.Close()
	if !<-clientGone {
		t.Error("handler context not cancelled after the client closed")
	}
}

func TestHeaderTimeout(t *testing.T) {
	addr, _ := startServer(t, func(o *h1.Options) { o.ReadHeaderTimeout = 200 * time.Millisecond })
	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: h\r\n")
	// A slowloris client is told, as by NGINX and HAProxy, then closed.
	if resp, _ := c.response("GET"); resp.StatusCode != 408 || !resp.Close {
		t.Errorf("incomplete header at the timeout: %d close=%v, want 408 and Connection: close", resp.StatusCode, resp.Close)
	}
	if !c.closed() {
		t.Error("incomplete header still open")
	}
}

// TestUnfinishableHeadsAnsweredAtOnce: a header section that no further
// byte can make valid is answered when that is known, not when the header
// timeout (here a minute, beyond the client's 10 s deadline) ends the wait.
func TestUnfinishableHeadsAnsweredAtOnce(t *testing.T) {
	addr, _ := startServer(t, func(o *h1.Options) { o.ReadHeaderTimeout = time.Minute })
	tests := []struct {
		name   string
		req    string
		status int
	}{
		{"HTTP/0.9 request line", "GET /x\r\n", 400},
		{"HTTP/0.9 request line, LF", "GET /x\n", 400},
		{"HTTP/2.0 request line", "GET /x HTTP/2.0\r\n", 505},
		{"lines ended by bare CR", "GET / HTTP/1.1\rHost: h\r", 400},
		{"bare CR inside a field", "GET / HTTP/1.1\r\nHost: h\rX: y\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, addr)
			c.send(tt.req)
			resp, _ := c.response("GET")
			if resp.StatusCode != tt.status || !resp.Close {
				t.Errorf("status %d close=%v, want %d and Connection: close", resp.StatusCode, resp.Close, tt.status)
			}
			if !c.closed() {
				t.Error("connection still open")
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	addr, _ := startServer(t, func(o *h1.Options) { o.IdleTimeout = 200 * time.Millisecond })
	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	c.response("GET")
	if !c.closed() {
		t.Error("idle connection still open")
	}
}

// hugeBody is the size of /huge's response.
const hugeBody = 32 << 20

// hugeWriteFailed receives the error of a /huge write that failed.
var hugeWriteFailed = make(chan error, 1)

func TestRequestArrivingWhileActiveIsServed(t *testing.T) {
	// The descriptor's registration is edge-triggered: the edge for a
	// request that arrives while the worker still serves the previous one
	// comes only once, and must not be lost when the worker lets go.
	addr, _ := startServer(t)
	c := dial(t, addr)
	for i := range 3 {
		c.send("GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
		time.Sleep(30 * time.Millisecond) // the handler is sleeping now
		c.send("GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "slow" {
			t.Fatalf("round %d, first: %d %q", i, resp.StatusCode, body)
		}
		if resp, _ := c.response("GET"); resp.StatusCode != 200 {
			t.Fatalf("round %d, second: %d", i, resp.StatusCode)
		}
	}
}

func TestHalfClosedClientGetsItsResponse(t *testing.T) {
	// A client may close its sending side once the request is out (as
	// "nc -N" does) and still read the answer. Its exchange's context is
	// cancelled (the client hung up, as far as anyone can tell), but what
	// the handler writes is sent, then the connection closes.
	addr, _ := startServer(t)
	for _, req := range []string{
		"GET /echo HTTP/1.0\r\n\r\n",
		"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc",
	} {
		c := dial(t, addr)
		c.send(req)
		c.nc.(*net.TCPConn).CloseWrite()
		method, _, _ := strings.Cut(req, " ")
		resp, _ := c.response(method)
		if resp.StatusCode != 200 {
			t.Fatalf("%q: status %d", req, resp.StatusCode)
		}
		if !c.closed() {
			t.Errorf("%q: connection left open after the client's half-close", req)
		}
	}
}

func TestSlowReaderGetsWholeResponse(t *testing.T) {
	// The server's writes meet a full socket buffer and wait for the
	// client to read (in the poller, for a connection without net.Conn).
	addr, _ := startServer(t)
	c := dial(t, addr)
	// 32 MiB under the race detector on a loaded machine can take longer
	// than dial's 10 s: the test is about the response arriving whole, not
	// about its speed.
	c.nc.SetDeadline(time.Now().Add(2 * time.Minute))
	c.send("GET /huge HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(300 * time.Millisecond) // let the buffers fill
	resp, body := c.response("GET")
	if resp.StatusCode != 200 || len(body) != hugeBody {
		t.Fatalf("status %d, %d body bytes, want 200 and %d", resp.StatusCode, len(body), hugeBody)
	}
	// The connection is still good for the next request.
	c.send("GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := c.response("GET"); resp.StatusCode != 200 {
		t.Fatalf("next request: status %d", resp.StatusCode)
	}
}

func TestShutdownDeadlineInterruptsBlockedWrite(t *testing.T) {
	// A client that never reads holds its exchange in a write; Shutdown
	// past its deadline must end it rather than wait for ever.
	addr, srv := startServer(t)
	select {
	case <-hugeWriteFailed:
	default:
	}
	c := dial(t, addr)
	c.send("GET /huge HTTP/1.1\r\nHost: h\r\n\r\n")
	time.Sleep(200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown returned nil with a request still writing; want its deadline error")
	}
	// The handler's blocked write fails while the client still reads
	// nothing (reading would make room and wake the writer anyway).
	select {
	case <-hugeWriteFailed:
	case <-time.After(2 * time.Second):
		t.Fatal("the handler's write still waits 2 s after Shutdown gave up")
	}
	// The connection ends: the client reads what was sent, then EOF.
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, c.br)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after %d bytes: %v, want the connection closed", n, err)
	}
	if n >= hugeBody {
		t.Fatalf("read %d bytes: the whole response, want it cut short", n)
	}
}

// TestShutdownDrainsIdleAndFinishesActive: Shutdown finishes the request in
// flight, answers the next request of an idle keep-alive connection (a
// client may be sending it as the drain starts) with "Connection: close",
// and closes the connections still idle at the end of the drain grace.
func TestShutdownDrainsIdleAndFinishesActive(t *testing.T) {
	addr, srv := startServer(t, func(o *h1.Options) { o.DrainIdle = func() time.Duration { return 300 * time.Millisecond } })
	idle := dial(t, addr)
	idle.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	idle.response("GET")
	quiet := dial(t, addr)
	quiet.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	quiet.response("GET")

	active := dial(t, addr)
	active.send("POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nab")
	time.Sleep(100 * time.Millisecond)

	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	idle.send("GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, _ := idle.response("GET"); resp.StatusCode != 200 || !resp.Close {
		t.Errorf("request on an idle connection during the drain: %d close=%v, want 200 and Connection: close", resp.StatusCode, resp.Close)
	}
	if !idle.closed() {
		t.Error("connection open after its Connection: close response")
	}
	active.send("cd")
	resp, body := active.response("POST")
	if resp.StatusCode != 200 || body != "abcd" || !resp.Close {
		t.Errorf("in-flight request: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	if !quiet.closed() {
		t.Error("connection idle through the drain grace not closed")
	}
	if err := <-done; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestTLSAndHTTP2(t *testing.T) {
	cert, _, err := listener.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	addr, _ := startServer(t, func(o *h1.Options) { o.TLS = conf; o.HTTP2 = true })
	for _, proto := range []string{"h2", "http/1.1"} {
		t.Run(proto, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, NextProtos: []string{proto}},
				ForceAttemptHTTP2: proto == "h2"}
			if proto == "http/1.1" {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			for range 2 {
				resp, err := cl.Post("https://"+addr+"/echo", "text/plain", strings.NewReader("body"))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				wantProto := map[string]string{"h2": "HTTP/2.0", "http/1.1": "HTTP/1.1"}[proto]
				if resp.Proto != wantProto || string(b) != "body" || resp.Header.Get("X-Scheme") != "https" {
					t.Errorf("proto %s body %q scheme %q", resp.Proto, b, resp.Header.Get("X-Scheme"))
				}
			}
		})
	}
}

func TestH2C(t *testing.T) {
	addr, _ := startServer(t, func(o *h1.Options) { o.H2C = true })
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/echo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("proto %s status %d", resp.Proto, resp.StatusCode)
	}
	// HTTP/1.1 still works on the same listener.
	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if resp, body := c.response("GET"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("HTTP/1.1 next to h2c: %d %q", resp.StatusCode, body)
	}
}

func TestH2COnly(t *testing.T) {
	addr, _ := startServer(t, func(o *h1.Options) { o.H2C = true; o.HTTP1 = false })
	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	if !c.closed() {
		t.Error("HTTP/1.1 request on an h2c-only listener: connection still open")
	}
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("proto %s, want HTTP/2", resp.Proto)
	}
}

// A server whose IO cannot take its connections (here: closed before the
// first one) serves each on a goroutine of its own instead.
func TestServerWhoseIORefusesConnectionsStillServes(t *testing.T) {
	eio, err := epoll.NewIO(1)
	if err != nil {
		t.Skip("no epoll:", err)
	}
	addr, _ := startServer(t, func(o *h1.Options) { o.IO = eio })
	eio.Close()
	c := dial(t, addr)
	for i := range 2 {
		c.send("GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
		if resp, _ := c.response("GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
}

// TestIdleHTTP2ConnectionsHoldNoGoroutine: the HTTP/2 engine parks the
// idle connections the engine hands it (TLS and h2c) in the same IO: no
// goroutine reads them once idle, and their next request is served.
func TestIdleHTTP2ConnectionsHoldNoGoroutine(t *testing.T) {
	if _, err := epoll.NewIO(1); err != nil {
		t.Skip("no epoll:", err)
	}
	cert, _, err := listener.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		scheme string
		opts   serverOpts
		client func() *http.Transport
	}{
		{name: "TLS", scheme: "https", opts: func(o *h1.Options) {
			o.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}
			o.HTTP2 = true
		}, client: func() *http.Transport {
			return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
		}},
		{name: "h2c", scheme: "http", opts: func(o *h1.Options) { o.H2C = true }, client: func() *http.Transport {
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			return &http.Transport{Protocols: &p}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := startServer(t, tt.opts)
			tr := tt.client()
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
			for i := range 2 {
				resp, err := cl.Get(tt.scheme + "://" + addr + "/echo")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
					t.Fatalf("request %d: proto %s status %d", i, resp.Proto, resp.StatusCode)
				}
				if n := eventuallyNoReaders(); n != 0 {
					t.Fatalf("after request %d: %d HTTP/2 connection goroutines still read after 10s idle", i, n)
				}
			}
		})
	}
}

// eventuallyNoReaders waits up to 10 s for no goroutine to be in the HTTP/2
// engine's read loop, and returns how many are left.
func eventuallyNoReaders() int {
	n := 0
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var b strings.Builder
		pprof.Lookup("goroutine").WriteTo(&b, 1)
		if n = strings.Count(b.String(), "engine/h2.(*conn).loop"); n == 0 {
			return 0
		}
	}
	return n
}
