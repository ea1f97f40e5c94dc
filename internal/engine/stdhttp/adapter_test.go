package stdhttp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/netip"
	"net/textproto"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// seen is a copy of what the pipeline saw of one request. Exchange strings
// alias engine memory that is reused after the handler returns, so
// everything is cloned.
type seen struct {
	Proto         exchange.Proto
	Method        string
	Scheme        string
	Host          string
	Path          string
	Query         string
	Header        [][2]string
	Body          string
	ContentLength int64
	RemoteAddr    netip.AddrPort
	TLS           bool
}

// capture serves every exchange by recording it and answering 204.
type capture struct {
	mu   sync.Mutex
	last seen
}

func (c *capture) ServeExchange(x *exchange.Exchange) {
	var s seen
	s.Proto = x.Req.Proto
	s.Method = strings.Clone(x.Req.Method)
	s.Scheme = strings.Clone(x.Req.Scheme)
	s.Host = strings.Clone(x.Req.Host)
	s.Path = strings.Clone(x.Req.Path)
	s.Query = strings.Clone(x.Req.Query)
	x.Req.Header.Range(func(name, value string) bool {
		s.Header = append(s.Header, [2]string{strings.Clone(name), strings.Clone(value)})
		return true
	})
	b, _ := io.ReadAll(x.Req.Body)
	s.Body = string(b)
	s.ContentLength = x.Req.ContentLength
	s.RemoteAddr = x.Req.RemoteAddr
	s.TLS = x.Req.TLS != nil
	c.mu.Lock()
	c.last = s
	c.mu.Unlock()
	x.W.WriteHeader(http.StatusNoContent)
}

func (c *capture) get() seen {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// values returns the values of the header fields named name, any case.
func (s seen) values(name string) []string {
	var out []string
	for _, f := range s.Header {
		if strings.EqualFold(f[0], name) {
			out = append(out, f[1])
		}
	}
	return out
}

func newServer(t *testing.T, h exchange.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(&Adapter{Handler: h})
	t.Cleanup(srv.Close)
	return srv
}

// rawRequest sends req over a new TCP connection and returns the response
// and the connection's local address.
func rawRequest(t *testing.T, addr, req string) (*http.Response, netip.AddrPort) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, netip.MustParseAddrPort(c.LocalAddr().String())
}

func TestRequestAsSentOverTheWire(t *testing.T) {
	c := &capture{}
	srv := newServer(t, c)
	addr := srv.Listener.Addr().String()

	tests := []struct {
		name  string
		raw   string
		want  seen // Header, RemoteAddr and Body are checked separately
		check func(t *testing.T, s seen)
	}{
		{
			name: "escaped slash and query kept byte for byte",
			raw:  "GET /v1/models/org%2Fname/predict?q=a%2Fb&x=1&x=2 HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
			want: seen{Proto: exchange.HTTP11, Method: "GET", Scheme: "http", Host: "api.example.com",
				Path: "/v1/models/org%2Fname/predict", Query: "q=a%2Fb&x=1&x=2"},
		},
		{
			name: "no query",
			raw:  "DELETE /items/7 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
			want: seen{Proto: exchange.HTTP11, Method: "DELETE", Scheme: "http", Host: "example.com:8080", Path: "/items/7"},
		},
		{
			name: "empty query after '?'",
			raw:  "GET /search? HTTP/1.1\r\nHost: example.com\r\n\r\n",
			want: seen{Proto: exchange.HTTP11, Method: "GET", Scheme: "http", Host: "example.com", Path: "/search"},
		},
		{
			name: "unusual escapes are not normalized",
			raw:  "GET /a%2fb/%7Euser/%41 HTTP/1.1\r\nHost: example.com\r\n\r\n",
			want: seen{Proto: exchange.HTTP11, Method: "GET", Scheme: "http", Host: "example.com", Path: "/a%2fb/%7Euser/%41"},
		},
		{
			name: "HTTP/1.0",
			raw:  "GET /old HTTP/1.0\r\nHost: legacy.example.com\r\n\r\n",
			want: seen{Proto: exchange.HTTP10, Method: "GET", Scheme: "http", Host: "legacy.example.com", Path: "/old"},
		},
		{
			name: "absolute-form target",
			raw:  "GET http://proxy.example.com/p%2Fq?z=1 HTTP/1.1\r\nHost: proxy.example.com\r\n\r\n",
			want: seen{Proto: exchange.HTTP11, Method: "GET", Scheme: "http", Host: "proxy.example.com", Path: "/p%2Fq", Query: "z=1"},
		},
		{
			name: "header fields in order, repeated ones kept",
			raw: "GET / HTTP/1.1\r\nHost: example.com\r\nX-Multi: a\r\nAccept: text/html\r\nX-Multi: b\r\n" +
				"x-lower: yes\r\nX-Empty:\r\n\r\n",
			want: seen{Proto: exchange.HTTP11, Method: "GET", Scheme: "http", Host: "example.com", Path: "/"},
			check: func(t *testing.T, s seen) {
				if got := s.values("X-Multi"); !slices.Equal(got, []string{"a", "b"}) {
					t.Errorf("X-Multi = %q, want [a b]", got)
				}
				if got := s.values("x-lower"); !slices.Equal(got, []string{"yes"}) {
					t.Errorf("x-lower = %q, want [yes]", got)
				}
				if got := s.values("x-empty"); !slices.Equal(got, []string{""}) {
					t.Errorf("X-Empty = %q, want one empty value", got)
				}
				if got := s.values("Accept"); !slices.Equal(got, []string{"text/html"}) {
					t.Errorf("Accept = %q, want [text/html]", got)
				}
			},
		},
		{
			name: "body with Content-Length",
			raw:  "POST /p HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\nhello",
			want: seen{Proto: exchange.HTTP11, Method: "POST", Scheme: "http", Host: "example.com", Path: "/p"},
			check: func(t *testing.T, s seen) {
				if s.Body != "hello" || s.ContentLength != 5 {
					t.Errorf("body %q, ContentLength %d; want hello, 5", s.Body, s.ContentLength)
				}
			},
		},
		{
			name: "chunked body has unknown length",
			raw:  "POST /p HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
			want: seen{Proto: exchange.HTTP11, Method: "POST", Scheme: "http", Host: "example.com", Path: "/p"},
			check: func(t *testing.T, s seen) {
				if s.Body != "abcde" || s.ContentLength != -1 {
					t.Errorf("body %q, ContentLength %d; want abcde, -1", s.Body, s.ContentLength)
				}
			},
		},
		{
			name: "no body",
			raw:  "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
			want: seen{Proto: exchange.HTTP11, Method: "GET", Scheme: "http", Host: "example.com", Path: "/"},
			check: func(t *testing.T, s seen) {
				if s.Body != "" || s.ContentLength != 0 {
					t.Errorf("body %q, ContentLength %d; want empty, 0", s.Body, s.ContentLength)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, local := rawRequest(t, addr, tt.raw)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("status = %d, want 204", resp.StatusCode)
			}
			s := c.get()
			if s.RemoteAddr != local {
				t.Errorf("RemoteAddr = %v, want the client socket's %v", s.RemoteAddr, local)
			}
			got := s
			got.Header, got.Body, got.ContentLength, got.RemoteAddr = nil, "", 0, netip.AddrPort{}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("exchange saw\n %+v\nwant\n %+v", got, tt.want)
			}
			if tt.check != nil {
				tt.check(t, s)
			}
		})
	}
}

func TestRequestFromAGoClient(t *testing.T) {
	c := &capture{}
	srv := newServer(t, c)
	req, _ := http.NewRequest("PUT", srv.URL+"/a%2Fb?k=%20v", strings.NewReader("payload"))
	req.Host = "models.example.com"
	req.Header.Set("Authorization", "Bearer t")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	s := c.get()
	if s.Proto != exchange.HTTP11 || s.Method != "PUT" || s.Host != "models.example.com" ||
		s.Path != "/a%2Fb" || s.Query != "k=%20v" || s.Body != "payload" || s.ContentLength != 7 || s.TLS {
		t.Errorf("exchange saw %+v", s)
	}
	if got := s.values("authorization"); !slices.Equal(got, []string{"Bearer t"}) {
		t.Errorf("Authorization = %q", got)
	}
	if !s.RemoteAddr.Addr().IsLoopback() || s.RemoteAddr.Port() == 0 {
		t.Errorf("RemoteAddr = %v, want a loopback address and port", s.RemoteAddr)
	}
}

func TestResponseReachesTheClient(t *testing.T) {
	tests := []struct {
		name       string
		serve      func(x *exchange.Exchange)
		wantStatus int
		wantHeader map[string][]string
		wantBody   string
	}{
		{
			name: "status, repeated headers and body",
			serve: func(x *exchange.Exchange) {
				h := x.W.Header()
				h.Add("Content-Type", "application/json")
				h.Add("set-cookie", "a=1")
				h.Add("Set-Cookie", "b=2")
				x.W.WriteHeader(http.StatusCreated)
				x.W.Write([]byte(`{"id":1}`))
			},
			wantStatus: 201,
			wantHeader: map[string][]string{"Content-Type": {"application/json"}, "Set-Cookie": {"a=1", "b=2"}},
			wantBody:   `{"id":1}`,
		},
		{
			name: "Write without WriteHeader sends 200",
			serve: func(x *exchange.Exchange) {
				x.W.Header().Add("X-Model", "llama")
				x.W.Write([]byte("hi"))
			},
			wantStatus: 200,
			wantHeader: map[string][]string{"X-Model": {"llama"}},
			wantBody:   "hi",
		},
		{
			name: "changes after the final status have no effect",
			serve: func(x *exchange.Exchange) {
				x.W.Header().Add("X-Before", "1")
				x.W.WriteHeader(http.StatusAccepted)
				x.W.Header().Add("X-After", "1")
				x.W.WriteHeader(http.StatusTeapot)
				x.W.Write([]byte("accepted"))
			},
			wantStatus: 202,
			wantHeader: map[string][]string{"X-Before": {"1"}, "X-After": nil},
			wantBody:   "accepted",
		},
		{
			name: "streamed body with Flush",
			serve: func(x *exchange.Exchange) {
				x.W.Header().Add("Content-Type", "text/event-stream")
				for _, ev := range []string{"data: 1\n\n", "data: 2\n\n"} {
					x.W.Write([]byte(ev))
					if err := x.W.Flush(); err != nil {
						panic(err)
					}
				}
			},
			wantStatus: 200,
			wantHeader: map[string][]string{"Content-Type": {"text/event-stream"}},
			wantBody:   "data: 1\n\ndata: 2\n\n",
		},
		{
			name: "Flush before any write sends the status",
			serve: func(x *exchange.Exchange) {
				x.W.Flush()
			},
			wantStatus: 200,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, exchange.HandlerFunc(tt.serve))
			resp, err := srv.Client().Get(srv.URL + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the body: %v", err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			for name, want := range tt.wantHeader {
				if got := resp.Header[name]; !slices.Equal(got, want) {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			if string(body) != tt.wantBody {
				t.Errorf("body = %q, want %q", body, tt.wantBody)
			}
		})
	}
}

func TestPooledWritersDoNotLeakHeaders(t *testing.T) {
	// Writers and exchanges are pooled: a header set for one request must not
	// show up in the next one's response, nor a request header in the next
	// request.
	var n int
	var mu sync.Mutex
	var sawStale bool
	srv := newServer(t, exchange.HandlerFunc(func(x *exchange.Exchange) {
		mu.Lock()
		n++
		first := n == 1
		mu.Unlock()
		if !first && x.Req.Header.Has("X-First-Only") {
			mu.Lock()
			sawStale = true
			mu.Unlock()
		}
		if first {
			x.W.Header().Add("X-First-Only", "1")
		}
		x.W.WriteHeader(200)
	}))
	for i := range 20 {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if i == 0 {
			req.Header.Set("X-First-Only", "1")
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if i > 0 && resp.Header.Get("X-First-Only") != "" {
			t.Fatalf("response %d carries a header set for response 0", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if sawStale {
		t.Error("a later request saw a header sent only with the first")
	}
}

func TestEarlyHintsReachTheClient(t *testing.T) {
	srv := newServer(t, exchange.HandlerFunc(func(x *exchange.Exchange) {
		h := x.W.Header()
		h.Add("Link", "</style.css>; rel=preload; as=style")
		x.W.WriteHeader(http.StatusEarlyHints)
		h.Add("Content-Type", "text/html")
		x.W.WriteHeader(http.StatusOK)
		x.W.Write([]byte("<html>"))
	}))

	type interim struct {
		code int
		link []string
	}
	var got []interim
	trace := &httptrace.ClientTrace{
		Got1xxResponse: func(code int, header textproto.MIMEHeader) error {
			got = append(got, interim{code, header["Link"]})
			return nil
		},
	}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", srv.URL, nil)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)

	if len(got) != 1 || got[0].code != 103 || !slices.Equal(got[0].link, []string{"</style.css>; rel=preload; as=style"}) {
		t.Errorf("interim responses = %+v, want one 103 with the Link header", got)
	}
	if resp.StatusCode != 200 || string(body) != "<html>" || resp.Header.Get("Content-Type") != "text/html" {
		t.Errorf("final response = %d %q %q", resp.StatusCode, resp.Header, body)
	}
	// The header of a 1xx is kept for the final response.
	if resp.Header.Get("Link") == "" {
		t.Error("final response lost the Link header sent with the 103")
	}
}

func TestAbortedResponseIsAnErrorForTheClient(t *testing.T) {
	tests := []struct {
		name    string
		aborted bool
		wantErr bool
	}{
		{name: "complete response ends cleanly", aborted: false, wantErr: false},
		{name: "aborted response is cut", aborted: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, exchange.HandlerFunc(func(x *exchange.Exchange) {
				// A streamed body: the status and the first bytes are out
				// before the upstream fails.
				x.W.WriteHeader(200)
				x.W.Write([]byte("partial "))
				x.W.Flush()
				x.State.Aborted = tt.aborted
			}))
			resp, err := srv.Client().Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if string(body) != "partial " {
				t.Errorf("body = %q, want %q", body, "partial ")
			}
			if (err != nil) != tt.wantErr {
				t.Errorf("reading the body: error %v, want error %v", err, tt.wantErr)
			}
			if tt.wantErr && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error = %v, want io.ErrUnexpectedEOF", err)
			}
		})
	}
}

func TestAbortedResponseWithContentLength(t *testing.T) {
	// With a declared length the client must not see a short body as whole.
	srv := newServer(t, exchange.HandlerFunc(func(x *exchange.Exchange) {
		x.W.Header().Add("Content-Length", "100")
		x.W.WriteHeader(200)
		x.W.Write([]byte("only ten b"))
		x.State.Aborted = true
	}))
	// Nothing was flushed, so the cut may come before the status line (the
	// request fails) or after it (the body fails); never a clean answer.
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	if body, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("a body declared as 100 bytes read as %q without error", body)
	}
}

func TestHijackOverHTTP11(t *testing.T) {
	srv := newServer(t, exchange.HandlerFunc(func(x *exchange.Exchange) {
		conn, brw, err := x.W.Hijack()
		if err != nil {
			x.W.WriteHeader(500)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
		// Echo one line, read through brw so bytes buffered with the request
		// are not lost.
		line, err := brw.ReadString('\n')
		if err != nil {
			return
		}
		conn.Write([]byte("echo: " + line))
	}))

	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// The first line after the upgrade travels in the same write as the
	// request.
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the 101: %v", err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("response = %d %q, want 101 with Upgrade: echo", resp.StatusCode, resp.Header)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if line != "echo: hello\n" {
		t.Errorf("echo = %q, want %q", line, "echo: hello\n")
	}
}

func TestHTTP2OverTLS(t *testing.T) {
	c := &capture{}
	var hijackErr error
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(&Adapter{Handler: exchange.HandlerFunc(func(x *exchange.Exchange) {
		_, _, err := x.W.Hijack()
		mu.Lock()
		hijackErr = err
		mu.Unlock()
		c.ServeExchange(x)
	})})
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)

	resp, err := srv.Client().Get(srv.URL + "/h2%2Fpath?a=b")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("client spoke %s, want HTTP/2", resp.Proto)
	}
	s := c.get()
	if s.Proto != exchange.HTTP2 || s.Scheme != "https" || !s.TLS || s.Path != "/h2%2Fpath" || s.Query != "a=b" {
		t.Errorf("exchange saw %+v, want HTTP/2 over https with the path as sent", s)
	}
	if len(s.values(":authority")) != 0 || len(s.values(":path")) != 0 {
		t.Errorf("pseudo-headers leaked into the header: %q", s.Header)
	}
	mu.Lock()
	defer mu.Unlock()
	if !errors.Is(hijackErr, exchange.ErrNotHijackable) {
		t.Errorf("Hijack over HTTP/2 = %v, want ErrNotHijackable", hijackErr)
	}
}

func TestHTTPSOverHTTP11(t *testing.T) {
	c := &capture{}
	srv := httptest.NewTLSServer(&Adapter{Handler: c})
	t.Cleanup(srv.Close)
	// httptest offers only http/1.1 by ALPN unless EnableHTTP2 is set.
	resp, err := srv.Client().Get(srv.URL + "/secure")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	s := c.get()
	if s.Proto != exchange.HTTP11 || s.Scheme != "https" || !s.TLS {
		t.Errorf("exchange saw proto %v scheme %q tls %v, want HTTP/1.1, https, true", s.Proto, s.Scheme, s.TLS)
	}
}
