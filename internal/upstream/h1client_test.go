package upstream_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// h1Pool compiles a one-endpoint h1 pool for addr with the config defaults,
// then lets adjust change the config.
func h1Pool(t testing.TB, addr string, adjust func(u *config.Upstream)) *upstream.Pool {
	t.Helper()
	u := config.Upstream{Name: "up", Endpoints: []config.Endpoint{{Address: addr}}, Protocol: "h1", Balancing: "round_robin",
		Pool: config.Pool{MaxIdlePerEndpoint: 64, IdleTimeout: config.Duration(time.Minute)}}
	if adjust != nil {
		adjust(&u)
	}
	p, err := upstream.NewPool(&u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	if p.Endpoints[0].Client().(*upstream.H1Client) == nil {
		t.Fatal("pool has no native HTTP/1.1 client")
	}
	return p
}

// result is a response read to its end.
type result struct {
	status  int
	header  map[string]string
	trailer map[string]string
	body    string
}

// roundTrip sends one request with the native client and reads the whole
// response.
func roundTrip(ctx context.Context, c *upstream.H1Client, method, path string, body io.Reader, length int64) (result, error) {
	var h exchange.Header
	h.Add("User-Agent", "penstock-test")
	req := &upstream.Request{Method: method, Path: path, Host: "example.test", Header: &h, Body: body, ContentLength: length}
	var resp upstream.Response
	if err := c.RoundTrip(ctx, req, &resp); err != nil {
		return result{}, err
	}
	defer resp.Close()
	r := result{status: resp.Status, header: map[string]string{}, trailer: map[string]string{}}
	resp.Header.Range(func(name, value string) bool { r.header[http.CanonicalHeaderKey(name)] = value; return true })
	b, err := io.ReadAll(&resp)
	r.body = string(b)
	resp.Trailer.Range(func(name, value string) bool { r.trailer[http.CanonicalHeaderKey(name)] = value; return true })
	return r, err
}

// countConns counts the connections an httptest server accepts.
func countConns(srv *httptest.Server) *atomic.Int32 {
	var n atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	return &n
}

// rawUpstream serves each accepted connection with serve, for responses
// net/http would refuse to send. It reports the connections accepted.
func rawUpstream(t testing.TB, serve func(c net.Conn, br *bufio.Reader)) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int32
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// readRequest reads one request and its body from br.
func readRequest(br *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, err
	}
	io.Copy(io.Discard, req.Body)
	return req, nil
}

func TestH1ClientReusesKeepAliveConnections(t *testing.T) {
	srv := httptest.NewUnstartedServer(hello("a"))
	conns := countConns(srv)
	srv.Start()
	defer srv.Close()
	c := h1Pool(t, srv.Listener.Addr().String(), nil).Endpoints[0].Client().(*upstream.H1Client)
	for i := range 5 {
		r, err := roundTrip(context.Background(), c, "GET", "/", nil, 0)
		if err != nil || r.status != 200 || r.body != "a example.test" {
			t.Fatalf("request %d: %+v, %v", i, r, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream accepted %d connections for 5 sequential requests, want 1", n)
	}
	if n := c.IdleConns(); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

func TestH1ClientPoolLimits(t *testing.T) {
	tests := []struct {
		name          string
		maxConns      int
		maxIdle       int
		wantConnsMax  int32 // upper bound on connections accepted
		wantIdleAfter int
	}{
		{name: "max_per_endpoint 1 serializes concurrent requests on one connection", maxConns: 1, maxIdle: 64, wantConnsMax: 1, wantIdleAfter: 1},
		{name: "max_per_endpoint 2", maxConns: 2, maxIdle: 64, wantConnsMax: 2, wantIdleAfter: 2},
		{name: "max_idle_per_endpoint 1 keeps one of several", maxConns: 0, maxIdle: 1, wantConnsMax: 6, wantIdleAfter: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var inflight, peak atomic.Int32
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := inflight.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(30 * time.Millisecond)
				inflight.Add(-1)
				io.WriteString(w, "ok")
			}))
			conns := countConns(srv)
			srv.Start()
			defer srv.Close()
			c := h1Pool(t, srv.Listener.Addr().String(), func(u *config.Upstream) {
				u.Pool.MaxPerEndpoint, u.Pool.MaxIdlePerEndpoint = tt.maxConns, tt.maxIdle
			}).Endpoints[0].Client().(*upstream.H1Client)
			var wg sync.WaitGroup
			errs := make(chan error, 6)
			for range 6 {
				wg.Go(func() {
					r, err := roundTrip(context.Background(), c, "GET", "/", nil, 0)
					if err == nil && r.body != "ok" {
						err = fmt.Errorf("body %q", r.body)
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			if n := conns.Load(); n > tt.wantConnsMax {
				t.Errorf("upstream accepted %d connections, want at most %d", n, tt.wantConnsMax)
			}
			if tt.maxConns > 0 && peak.Load() > int32(tt.maxConns) {
				t.Errorf("%d requests in flight at once, want at most %d", peak.Load(), tt.maxConns)
			}
			if n := c.IdleConns(); n != tt.wantIdleAfter {
				t.Errorf("%d idle connections, want %d", n, tt.wantIdleAfter)
			}
		})
	}
}

func TestH1ClientWaiterGivesUpWithItsContext(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	}))
	defer srv.Close()
	defer close(release)
	c := h1Pool(t, srv.Listener.Addr().String(), func(u *config.Upstream) { u.Pool.MaxPerEndpoint = 1 }).Endpoints[0].Client().(*upstream.H1Client)
	go roundTrip(context.Background(), c, "GET", "/", nil, 0)
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := roundTrip(ctx, c, "GET", "/", nil, 0)
	if !errors.Is(err, context.DeadlineExceeded) || upstream.KindOf(err) != upstream.KindTimeout {
		t.Errorf("error = %v, want the context's deadline as a timeout, not a connect failure", err)
	}
	// The request's own deadline bounds the wait as well.
	var resp upstream.Response
	err = c.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Path: "/", Deadline: time.Now().Add(50 * time.Millisecond)}, &resp)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want the deadline", err)
	}
}

func TestH1ClientStaleConnection(t *testing.T) {
	// closedWhileIdle answers one request per connection and then closes
	// it without saying so, as an upstream with a short keep-alive timeout
	// does; closedOnReuse reads the second request on a connection and
	// closes without an answer: the race of RFC 9112 §9.3.1, where the
	// upstream gives up on the connection just as penstock reuses it.
	closedWhileIdle := func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	}
	closedOnReuse := func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			readRequest(br)
		}
	}
	tests := []struct {
		name         string
		serve        func(net.Conn, *bufio.Reader)
		method       string
		wantErr      bool
		wantAccepted int32
	}{
		{name: "a connection closed while idle is not used, even for POST", serve: closedWhileIdle, method: "POST", wantAccepted: 2},
		{name: "closed on reuse: an idempotent request is retried once on a new connection", serve: closedOnReuse, method: "GET", wantAccepted: 2},
		{name: "closed on reuse: PUT is idempotent too", serve: closedOnReuse, method: "PUT", wantAccepted: 2},
		{name: "closed on reuse: POST may have been applied, so it is not retried", serve: closedOnReuse, method: "POST", wantErr: true, wantAccepted: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, accepted := rawUpstream(t, tt.serve)
			c := h1Pool(t, addr, nil).Endpoints[0].Client().(*upstream.H1Client)
			if r, err := roundTrip(context.Background(), c, "GET", "/", nil, 0); err != nil || r.body != "ok" {
				t.Fatalf("first request: %+v, %v", r, err)
			}
			time.Sleep(20 * time.Millisecond) // let a close arrive
			r, err := roundTrip(context.Background(), c, tt.method, "/", nil, 0)
			if tt.wantErr != (err != nil) {
				t.Fatalf("second request: %+v, error %v; want error %v", r, err, tt.wantErr)
			}
			if !tt.wantErr && r.body != "ok" {
				t.Errorf("body %q, want ok", r.body)
			}
			if n := accepted.Load(); n != tt.wantAccepted {
				t.Errorf("upstream accepted %d connections, want %d", n, tt.wantAccepted)
			}
		})
	}
}

func TestH1ClientResponseFraming(t *testing.T) {
	tests := []struct {
		name     string
		response string
		want     result
		reusable bool
	}{
		{name: "close-delimited body", response: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nread until close",
			want: result{status: 200, body: "read until close"}},
		{name: "chunked body with trailer", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Checksum: 7\r\n\r\n",
			want: result{status: 200, body: "abcde", trailer: map[string]string{"X-Checksum": "7"}}, reusable: true},
		{name: "100 is skipped", response: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			want: result{status: 200, body: "ok"}, reusable: true},
		{name: "Connection: close is honoured", response: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
			want: result{status: 200, body: "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				if _, err := readRequest(br); err == nil {
					io.WriteString(c, tt.response)
				}
			})
			p := h1Pool(t, addr, nil)
			c := p.Endpoints[0].Client().(*upstream.H1Client)
			r, err := roundTrip(context.Background(), c, "GET", "/", nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != tt.want.status || r.body != tt.want.body {
				t.Errorf("got %d %q, want %d %q", r.status, r.body, tt.want.status, tt.want.body)
			}
			for k, v := range tt.want.trailer {
				if r.trailer[k] != v {
					t.Errorf("trailer %s = %q, want %q", k, r.trailer[k], v)
				}
			}
			if got := c.IdleConns() == 1; got != tt.reusable {
				t.Errorf("connection pooled = %v, want %v", got, tt.reusable)
			}
		})
	}
}

func TestH1ClientRejectsMalformedResponses(t *testing.T) {
	addr, _ := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n")
		}
	})
	p := h1Pool(t, addr, nil)
	_, err := roundTrip(context.Background(), p.Endpoints[0].Client().(*upstream.H1Client), "GET", "/", nil, 0)
	var pe *upstream.ProtocolError
	if !errors.As(err, &pe) {
		t.Fatalf("error = %v, want a protocol error", err)
	}
	if n := p.Endpoints[0].OpenConns(); n != 0 {
		t.Errorf("%d connections open after a smuggling attempt, want 0", n)
	}
}

func TestH1ClientEarlyHints(t *testing.T) {
	addr, _ := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := h1Pool(t, addr, nil).Endpoints[0].Client().(*upstream.H1Client)
	var resp upstream.Response
	req := &upstream.Request{Method: "GET", Path: "/"}
	if err := c.RoundTrip(context.Background(), req, &resp); err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	if link, _ := resp.Header.Get("Link"); resp.Status != 103 || link != "</app.css>; rel=preload" {
		t.Fatalf("first head: %d Link %q, want 103 with the Link", resp.Status, link)
	}
	if err := resp.Next(); err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(&resp)
	if resp.Status != 200 || string(body) != "ok" || resp.Header.Has("Link") {
		t.Errorf("final response: %d %q, Link present %v; want 200 ok without Link", resp.Status, body, resp.Header.Has("Link"))
	}
}

func TestH1ClientUpgrade(t *testing.T) {
	addr, _ := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		req, err := readRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "echo" {
			return
		}
		// The first bytes of the new protocol travel with the 101 head.
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello ")
		io.Copy(c, br)
	})
	p := h1Pool(t, addr, nil)
	var h exchange.Header
	h.Add("Connection", "Upgrade")
	h.Add("Upgrade", "echo")
	var resp upstream.Response
	if err := p.Endpoints[0].Client().(*upstream.H1Client).RoundTrip(context.Background(), &upstream.Request{Method: "GET", Path: "/", Header: &h}, &resp); err != nil {
		t.Fatal(err)
	}
	if resp.Status != 101 {
		t.Fatalf("status %d, want 101", resp.Status)
	}
	conn, err := resp.Upgrade()
	if err != nil {
		t.Fatal(err)
	}
	resp.Close()
	io.WriteString(conn, "ping")
	buf := make([]byte, len("hello ping"))
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "hello ping" {
		t.Errorf("read %q, %v; want \"hello ping\"", buf, err)
	}
	if n := p.Endpoints[0].OpenConns(); n != 1 {
		t.Errorf("%d open connections while upgraded, want 1", n)
	}
	conn.Close()
	if n := p.Endpoints[0].OpenConns(); n != 0 {
		t.Errorf("%d open connections after closing the upgraded one, want 0", n)
	}
}

func TestH1ClientStreamsServerSentEvents(t *testing.T) {
	next := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			<-next
		}
	}))
	defer srv.Close()
	c := h1Pool(t, srv.Listener.Addr().String(), nil).Endpoints[0].Client().(*upstream.H1Client)
	var resp upstream.Response
	if err := c.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Path: "/events"}, &resp); err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	if resp.ContentLength != -1 {
		t.Errorf("ContentLength = %d, want -1 for a stream", resp.ContentLength)
	}
	buf := make([]byte, 64)
	for i := range 3 {
		// Each event must arrive while the upstream still holds the next.
		n, err := resp.Read(buf)
		if want := fmt.Sprintf("data: %d\n\n", i); err != nil || string(buf[:n]) != want {
			t.Fatalf("event %d: %q, %v; want %q", i, buf[:n], err, want)
		}
		next <- struct{}{}
	}
	if _, err := io.ReadAll(&resp); err != nil {
		t.Fatal(err)
	}
}

func TestH1ClientRequestBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %d %v %s", r.Method, r.ContentLength, r.TransferEncoding, b)
	}))
	defer srv.Close()
	c := h1Pool(t, srv.Listener.Addr().String(), nil).Endpoints[0].Client().(*upstream.H1Client)
	big := strings.Repeat("x", 100<<10)
	tests := []struct {
		name   string
		method string
		body   io.Reader
		length int64
		want   string
	}{
		{name: "Content-Length", method: "POST", body: strings.NewReader("hello"), length: 5, want: "POST 5 [] hello"},
		{name: "unknown length goes chunked", method: "POST", body: io.MultiReader(strings.NewReader("hel"), strings.NewReader("lo")), length: -1, want: "POST -1 [chunked] hello"},
		{name: "a body larger than the copy buffer", method: "PUT", body: strings.NewReader(big), length: int64(len(big)), want: "PUT 102400 [] " + big},
		{name: "POST without a body says Content-Length: 0", method: "POST", want: "POST 0 [] "},
		{name: "GET without a body", method: "GET", want: "GET 0 [] "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := roundTrip(context.Background(), c, tt.method, "/", tt.body, tt.length)
			if err != nil || r.body != tt.want {
				t.Errorf("got %.60q, %v; want %.60q", r.body, err, tt.want)
			}
		})
	}
}

func TestH1ClientTimeoutsAndCancellation(t *testing.T) {
	silent := func(c net.Conn, br *bufio.Reader) {
		readRequest(br)
		time.Sleep(time.Second)
	}
	t.Run("response header timeout", func(t *testing.T) {
		addr, _ := rawUpstream(t, silent)
		c := h1Pool(t, addr, nil).Endpoints[0].Client().(*upstream.H1Client)
		var resp upstream.Response
		err := c.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Path: "/", ResponseHeaderTimeout: 50 * time.Millisecond}, &resp)
		if !errors.Is(err, upstream.ErrResponseHeaderTimeout) {
			t.Errorf("error = %v, want ErrResponseHeaderTimeout", err)
		}
	})
	// The head's deadline is left on the connection for the next request
	// (setHeadDeadline); neither a slow body nor a later request may trip
	// on it.
	rht := &upstream.Request{Method: "GET", Path: "/", ResponseHeaderTimeout: 40 * time.Millisecond}
	// get sends the request i of a subtest with rht and wants body back.
	get := func(t *testing.T, c *upstream.H1Client, i int, want string) {
		t.Helper()
		req := *rht
		var resp upstream.Response
		if err := c.RoundTrip(context.Background(), &req, &resp); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(&resp)
		resp.Close()
		if err != nil || string(b) != want {
			t.Fatalf("request %d: body %q, %v; want %q", i, b, err, want)
		}
	}
	t.Run("the header timeout does not cover the body", func(t *testing.T) {
		addr, _ := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
			for {
				if _, err := readRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
				time.Sleep(150 * time.Millisecond)
				io.WriteString(c, "world")
			}
		})
		c := h1Pool(t, addr, nil).Endpoints[0].Client().(*upstream.H1Client)
		for i := range 2 {
			get(t, c, i, "helloworld")
		}
	})
	t.Run("a connection idle past its last head deadline is reused", func(t *testing.T) {
		addr, accepted := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
			for {
				if _, err := readRequest(br); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		p := h1Pool(t, addr, nil)
		c := p.Endpoints[0].Client().(*upstream.H1Client)
		for i := range 3 {
			if i > 0 {
				// Past the deadline, and past probeAfterIdle the
				// second time, so reuse asks the socket.
				time.Sleep(time.Duration(i) * 600 * time.Millisecond)
			}
			get(t, c, i, "ok")
		}
		if n := accepted.Load(); n != 1 {
			t.Errorf("%d connections for 3 requests, want 1 reused", n)
		}
	})
	t.Run("context cancelled while waiting", func(t *testing.T) {
		addr, _ := rawUpstream(t, silent)
		p := h1Pool(t, addr, nil)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		var resp upstream.Response
		err := p.Endpoints[0].Client().(*upstream.H1Client).RoundTrip(ctx, &upstream.Request{Method: "GET", Path: "/"}, &resp)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error = %v, want context.Canceled", err)
		}
		if n := p.Endpoints[0].OpenConns(); n != 0 {
			t.Errorf("%d connections open, want 0", n)
		}
	})
	t.Run("connect failure is a connect Error", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		var resp upstream.Response
		err := h1Pool(t, addr, nil).Endpoints[0].Client().(*upstream.H1Client).RoundTrip(context.Background(), &upstream.Request{Method: "GET", Path: "/"}, &resp)
		if upstream.KindOf(err) != upstream.KindConnect {
			t.Errorf("error = %v, want a KindConnect Error", err)
		}
	})
}

func TestH1ClientIdleTimeoutAndRetire(t *testing.T) {
	srv := httptest.NewServer(hello("a"))
	defer srv.Close()
	p := h1Pool(t, srv.Listener.Addr().String(), func(u *config.Upstream) { u.Pool.IdleTimeout = config.Duration(50 * time.Millisecond) })
	c := p.Endpoints[0].Client().(*upstream.H1Client)
	if _, err := roundTrip(context.Background(), c, "GET", "/", nil, 0); err != nil {
		t.Fatal(err)
	}
	if c.IdleConns() != 1 {
		t.Fatalf("%d idle connections, want 1", c.IdleConns())
	}
	deadline := time.Now().Add(2 * time.Second)
	for p.Endpoints[0].OpenConns() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.Endpoints[0].OpenConns(); n != 0 || c.IdleConns() != 0 {
		t.Errorf("%d open, %d idle after the idle timeout, want 0 and 0", n, c.IdleConns())
	}
}

func TestH1ClientRetireEndsStreams(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	p := h1Pool(t, srv.Listener.Addr().String(), nil)
	var resp upstream.Response
	if err := p.Endpoints[0].Client().(*upstream.H1Client).RoundTrip(context.Background(), &upstream.Request{Method: "GET", Path: "/"}, &resp); err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	p.End()
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(&resp); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("stream ended cleanly, want it cut")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("stream still open 2s after End")
	}
}

func TestH1ClientUnixSocketAndTLS(t *testing.T) {
	t.Run("unix socket", func(t *testing.T) {
		path := unixServer(t, hello("u"))
		r, err := roundTrip(context.Background(), h1Pool(t, "unix:"+path, nil).Endpoints[0].Client().(*upstream.H1Client), "GET", "/", nil, 0)
		if err != nil || r.body != "u example.test" {
			t.Errorf("got %+v, %v", r, err)
		}
	})
	t.Run("TLS", func(t *testing.T) {
		srv := httptest.NewTLSServer(hello("t"))
		defer srv.Close()
		p := h1Pool(t, srv.Listener.Addr().String(), func(u *config.Upstream) {
			u.TLS = &config.UpstreamTLS{InsecureSkipVerify: true}
		})
		for range 2 {
			r, err := roundTrip(context.Background(), p.Endpoints[0].Client().(*upstream.H1Client), "GET", "/", nil, 0)
			if err != nil || r.body != "t example.test" {
				t.Fatalf("got %+v, %v", r, err)
			}
		}
		if n := p.Endpoints[0].OpenConns(); n != 1 {
			t.Errorf("%d connections for 2 TLS requests, want 1", n)
		}
	})
}

func TestH1ClientMalformedHeadAfterInterimIsNotPooled(t *testing.T) {
	addr, _ := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nX: 1\r\n 2\r\n\r\n")
			readRequest(br)
		}
	})
	p := h1Pool(t, addr, nil)
	c := p.Endpoints[0].Client().(*upstream.H1Client)
	var resp upstream.Response
	if err := c.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Path: "/"}, &resp); err != nil || resp.Status != 103 {
		t.Fatalf("first head: %d, %v; want 103", resp.Status, err)
	}
	var pe *upstream.ProtocolError
	if err := resp.Next(); !errors.As(err, &pe) {
		t.Fatalf("Next: %v, want a protocol error", err)
	}
	resp.Close()
	if n := c.IdleConns(); n != 0 {
		t.Errorf("%d idle connections after a malformed response, want 0", n)
	}
	if n := p.Endpoints[0].OpenConns(); n != 0 {
		t.Errorf("%d open connections, want 0", n)
	}
}
