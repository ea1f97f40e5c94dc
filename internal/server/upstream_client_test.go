package server_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
)

// rawHTTPUpstream answers every request with the response that respond
// returns for its path, written byte for byte; closeAfter closes the
// connection after each response without saying so, as an upstream with a
// short keep-alive timeout does.
func rawHTTPUpstream(t *testing.T, closeAfter bool, respond func(path string) string) string {
	t.Helper()
	return connUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, respond(req.URL.Path)); err != nil || closeAfter {
				return
			}
		}
	})
}

// connUpstream listens on loopback and serves each connection with serve
// (which need not close it) until the test ends.
func connUpstream(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return ln.Addr().String()
}

// TestNativeUpstreamClient drives penstock's own HTTP/1.1 client through
// the gateway: what a client sees when the upstream misbehaves, sends
// interim responses, or closes idle connections.
func TestNativeUpstreamClient(t *testing.T) {
	responses := map[string]string{
		"/smuggle": "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"/fold":    "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 2\r\n\r\nok",
		"/hints":   "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"/ok":      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
	}
	// Routes forward the whole path; the upstream answers by its last
	// segment.
	respond := func(path string) string { return responses[path[strings.LastIndex(path, "/"):]] }
	keep := rawHTTPUpstream(t, false, respond)
	oneShot := rawHTTPUpstream(t, true, respond)
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: keep, endpoints: [{address: %s}]}
  - {name: oneshot, endpoints: [{address: %s}]}
  - {name: std, client: stdhttp, endpoints: [{address: %s}]}
routes:
  - {name: keep, match: {path_prefix: /}, upstream: keep}
  - {name: oneshot, match: {path_prefix: /oneshot/}, upstream: oneshot}
  - {name: std, match: {path_prefix: /std/}, upstream: std}
`, keep, oneShot, keep))
	base := baseURL(g, "main")

	tests := []struct {
		name   string
		path   string
		status int
		code   string
		body   string
	}{
		{name: "Content-Length with Transfer-Encoding is a bad response", path: "/smuggle", status: 502, code: "upstream_bad_response"},
		{name: "obs-fold is a bad response", path: "/fold", status: 502, code: "upstream_bad_response"},
		{name: "a good response after a bad one", path: "/ok", status: 200, body: "ok"},
		{name: "an upstream that closes idle connections, first request", path: "/oneshot/ok", status: 200, body: "ok"},
		{name: "an upstream that closes idle connections, stale connection retried", path: "/oneshot/ok", status: 200, body: "ok"},
		{name: "client: stdhttp answers too", path: "/std/ok", status: 200, body: "ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, got := do(t, client, "GET", base+tc.path, nil, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
			}
			if tc.code != "" {
				var eb errorBody
				if err := json.Unmarshal([]byte(got), &eb); err != nil || eb.Error != tc.code {
					t.Errorf("body %q, want the funnel's %q", got, tc.code)
				}
				return
			}
			if got != tc.body {
				t.Errorf("body %q, want %q", got, tc.body)
			}
		})
	}

	t.Run("103 Early Hints reach the client, and only the 103 carries its fields", func(t *testing.T) {
		var hints []textproto.MIMEHeader
		trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			if code == 103 {
				hints = append(hints, h)
			}
			return nil
		}}
		req, _ := http.NewRequest("GET", base+"/hints", nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Fatalf("final response %d %q, want 200 ok", resp.StatusCode, body)
		}
		if len(hints) != 1 || !strings.Contains(hints[0].Get("Link"), "rel=preload") {
			t.Errorf("103 responses seen: %v, want one with the Link", hints)
		}
		if l := resp.Header.Get("Link"); l != "" {
			t.Errorf("final response carries the hint's Link %q", l)
		}
	})
}

// TestUpstreamClientChoice checks that upstreams[].client picks the client
// that really carries the request: net/http's Transport adds its own
// User-Agent to a request that has none, penstock's client forwards the
// request as the client sent it.
func TestUpstreamClientChoice(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("User-Agent"))
	}))
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: native, endpoints: [{address: %s}]}
  - {name: std, client: stdhttp, endpoints: [{address: %s}]}
routes:
  - {name: native, match: {path_prefix: /native/}, upstream: native}
  - {name: std, match: {path_prefix: /std/}, upstream: std}
`, up, up))
	tests := []struct {
		name, path, wantUA string
	}{
		{"native", "/native/x", ""},
		{"stdhttp", "/std/x", "Go-http-client/1.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", baseURL(g, "main")+tc.path, nil)
			req.Header.Set("User-Agent", "") // net/http's client then sends none
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != tc.wantUA {
				t.Errorf("upstream saw User-Agent %q (status %d), want %q", b, resp.StatusCode, tc.wantUA)
			}
		})
	}
}
