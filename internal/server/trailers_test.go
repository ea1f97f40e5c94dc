package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// trailerUpstream answers with a streamed body and trailer fields: a
// checksum and, when the request carried an X-Req-Sum trailer, an
// X-Got-Req-Sum trailer echoing it.
var trailerUpstream = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body) // the request trailers come after the body
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(200)
	io.WriteString(w, "part one,")
	w.(http.Flusher).Flush()
	io.WriteString(w, "part two")
	w.Header().Set(http.TrailerPrefix+"X-Checksum", "abc123")
	if v := r.Trailer.Get("X-Req-Sum"); v != "" {
		w.Header().Set(http.TrailerPrefix+"X-Got-Req-Sum", v)
	}
})

// trailerGateway serves /h1 from an HTTP/1.1 upstream (penstock's native
// client, chunked trailers) and /h2c from an h2c one (HTTP/2 trailers), on
// a plain listener (HTTP/1.1 and h2c), a TLS one with HTTP/3, and a plain
// one on the net/http engine.
func trailerGateway(t *testing.T) string {
	t.Helper()
	h1 := httptest.NewServer(trailerUpstream)
	t.Cleanup(h1.Close)
	h2c := httptest.NewUnstartedServer(trailerUpstream)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	t.Cleanup(h2c.Close)
	return lines(`listeners:
  - {name: plain, address: "127.0.0.1:0", protocols: [h1, h2c]}
  - {name: std, address: "127.0.0.1:0", engine: stdhttp}
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}}
upstreams:
  - {name: h1, endpoints: [{address: %s}]}
  - {name: h2c, protocol: h2c, endpoints: [{address: %s}]}
routes:
  - {name: h1, match: {path: /h1}, upstream: h1}
  - {name: h2c, match: {path: /h2c}, upstream: h2c}
`, h1.Listener.Addr(), h2c.Listener.Addr())
}

// rawChunkedGet sends an HTTP/1.1 request on a raw socket and returns the
// response's trailer section as written on the wire (the lines between
// the last chunk and the final CRLF).
func rawChunkedGet(t *testing.T, addr, path string, te bool) (status string, body string, trailer []string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: x\r\n"
	if te {
		req += "TE: trailers\r\n"
	}
	io.WriteString(conn, req+"\r\n")
	br := bufio.NewReader(conn)
	status, _ = br.ReadString('\n')
	chunked := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the head: %v", err)
		}
		if line == "\r\n" {
			break
		}
		if strings.EqualFold(line, "Transfer-Encoding: chunked\r\n") {
			chunked = true
		}
	}
	if !chunked {
		t.Fatalf("response is not chunked: %q", status)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a chunk: %v", err)
		}
		var n int
		if _, err := fmtSscanHex(line, &n); err != nil {
			t.Fatalf("chunk size line %q: %v", line, err)
		}
		if n == 0 {
			break
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(br, chunk); err != nil {
			t.Fatal(err)
		}
		body += string(chunk[:n])
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the trailer section: %v", err)
		}
		if line == "\r\n" {
			return strings.TrimSpace(status), body, trailer
		}
		trailer = append(trailer, strings.TrimRight(line, "\r\n"))
	}
}

// TestTrailersHTTP1 checks chunked trailers to HTTP/1.1 clients: relayed
// from an HTTP/1.1 and an HTTP/2 upstream when the client sent
// "TE: trailers", and not at all
// when it did not (RFC 9112 §7.1.2), on both engines.
func TestTrailersHTTP1(t *testing.T) {
	g := startGateway(t, trailerGateway(t))
	for _, listener := range []string{"plain", "std"} {
		for _, path := range []string{"/h1", "/h2c"} {
			t.Run(listener+path, func(t *testing.T) {
				status, body, trailer := rawChunkedGet(t, g.Addr(listener).String(), path, true)
				if status != "HTTP/1.1 200 OK" || body != "part one,part two" {
					t.Fatalf("%q, body %q", status, body)
				}
				if strings.Join(trailer, "|") != "X-Checksum: abc123" {
					t.Errorf("trailer section %q, want only X-Checksum: abc123", trailer)
				}
				_, _, trailer = rawChunkedGet(t, g.Addr(listener).String(), path, false)
				if len(trailer) != 0 {
					t.Errorf("without TE: trailers, trailer section %q, want none", trailer)
				}
			})
		}
	}
}

// TestTrailersHTTP2AndHTTP3 checks response trailers to HTTP/2 (h2c and
// TLS) and HTTP/3 clients from both upstreams, and request trailers from
// HTTP/2, HTTP/3 and chunked HTTP/1.1 clients reaching both upstreams.
func TestTrailersHTTP2AndHTTP3(t *testing.T) {
	g := startGateway(t, trailerGateway(t))
	h3c, _ := h3Client(t)
	clients := []struct {
		name string
		c    *http.Client
		base string
	}{
		{"HTTP/1.1", client, baseURL(g, "plain")},
		{"h2c", h2cClient(), baseURL(g, "plain")},
		{"HTTP/2 TLS", h2Client(), baseURL(g, "tls")},
		{"HTTP/3", h3c, baseURL(g, "tls")},
	}
	for _, cl := range clients {
		for _, path := range []string{"/h1", "/h2c"} {
			t.Run(cl.name+path, func(t *testing.T) {
				// A body of unknown length, with a declared request
				// trailer set once the body is read.
				pr, pw := io.Pipe()
				req, _ := http.NewRequest("POST", cl.base+path, pr)
				req.Header.Set("Te", "trailers")
				req.Trailer = http.Header{"X-Req-Sum": nil}
				go func() {
					io.WriteString(pw, "request body")
					req.Trailer.Set("X-Req-Sum", "r42")
					pw.Close()
				}()
				resp, err := cl.c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(body) != "part one,part two" {
					t.Fatalf("body %q, %v", body, err)
				}
				if got := resp.Trailer.Get("X-Checksum"); got != "abc123" {
					t.Errorf("trailer X-Checksum = %q, want abc123 (trailers %v)", got, resp.Trailer)
				}
				if got := resp.Trailer.Get("X-Got-Req-Sum"); got != "r42" {
					t.Errorf("request trailer at the upstream = %q, want r42 (trailers %v)", got, resp.Trailer)
				}
			})
		}
	}
}

// fmtSscanHex reads a chunk-size line's hexadecimal size.
func fmtSscanHex(line string, n *int) (int, error) {
	return fmt.Sscanf(strings.TrimSpace(line), "%x", n)
}
