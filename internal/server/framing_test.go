package server_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// framingUpstream is a strict HTTP/1.1 upstream: it parses each request as
// it arrives on the wire, records how its body was framed, and answers 400
// to a GET that carries body framing, as minimal servers do.
type framingUpstream struct {
	mu   sync.Mutex
	seen []framing
}

// framing is how one request reached the upstream.
type framing struct {
	method, contentLength string
	transferEncoding      []string
	body                  string
}

func newFramingUpstream(t *testing.T) (*framingUpstream, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	u := &framingUpstream{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go u.serve(c)
		}
	}()
	return u, ln.Addr().String()
}

func (u *framingUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		f := framing{method: req.Method, contentLength: req.Header.Get("Content-Length"),
			transferEncoding: req.TransferEncoding, body: string(body)}
		u.mu.Lock()
		u.seen = append(u.seen, f)
		u.mu.Unlock()
		status := "200 OK"
		if req.Method == "GET" && (f.contentLength != "" || len(f.transferEncoding) > 0) {
			status = "400 Bad Request"
		}
		if _, err := io.WriteString(c, "HTTP/1.1 "+status+"\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

func (u *framingUpstream) last() framing {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return framing{}
	}
	return u.seen[len(u.seen)-1]
}

// TestBodyFramingUpstream checks the bytes the upstream receives for each
// client protocol: a request without a body is forwarded without body
// framing (no Transfer-Encoding, no Content-Length), whatever the client
// spoke; a body is forwarded with its length.
func TestBodyFramingUpstream(t *testing.T) {
	up, addr := newFramingUpstream(t)
	g := startGateway(t, lines(`listeners:
  - {name: plain, address: "127.0.0.1:0", protocols: [h1, h2c]}
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}}
upstreams: [{name: strict, endpoints: [{address: %s}]}]
routes: [{name: all, match: {path_prefix: /}, upstream: strict}]
`, addr))
	h3c, _ := h3Client(t)
	clients := []struct {
		name     string
		c        *http.Client
		listener string
	}{
		{"HTTP/1.1", client, "plain"},
		{"h2c", h2cClient(), "plain"},
		{"HTTP/1.1 over TLS", tls1Client(), "tls"},
		{"HTTP/2", h2Client(), "tls"},
		{"HTTP/3", h3c, "tls"},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			for _, method := range []string{"GET", "DELETE"} {
				resp, _ := do(t, cl.c, method, baseURL(g, cl.listener)+"/x", nil, nil)
				f := up.last()
				if resp.StatusCode != 200 || f.method != method || f.contentLength != "" || len(f.transferEncoding) != 0 {
					t.Errorf("%s without a body: status %d, upstream saw Content-Length %q Transfer-Encoding %v; want 200 and no framing",
						method, resp.StatusCode, f.contentLength, f.transferEncoding)
				}
			}
			resp, _ := do(t, cl.c, "POST", baseURL(g, cl.listener)+"/x", nil, strings.NewReader("payload"))
			if f := up.last(); resp.StatusCode != 200 || f.body != "payload" || (f.contentLength != "7" && len(f.transferEncoding) == 0) {
				t.Errorf("POST with a body: status %d, upstream saw %+v; want 200 and the body, framed", resp.StatusCode, f)
			}
		})
	}
}
