package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOnlyWebSocketIsTunnelled replays issue 13's finding 5: through a route
// limited to GET /public, a request with "Upgrade: h2c" followed on the same
// connection by GET /admin/secret reached the upstream once it answered 101.
// The upstream here switches to whatever it is asked and records every
// request it reads, tunnelled or not; /admin/secret must never reach it, on
// either engine, whether the upgrade is asked for (h2c) or only answered
// (a 101 to a plain request), nor through a WebSocket upgrade on a route
// whose upgrades list is empty.
func TestOnlyWebSocketIsTunnelled(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	record := func(path string) {
		mu.Lock()
		seen = append(seen, path)
		mu.Unlock()
	}
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		record(r.URL.Path)
		proto := r.Header.Get("Upgrade")
		if proto == "" && r.Header.Get("X-Switch-Anyway") == "" {
			io.WriteString(w, "plain")
			return
		}
		if proto == "" {
			proto = "h2c"
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", proto)
		brw.Flush()
		// Whatever comes through the tunnel is read as requests.
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		for {
			req, err := http.ReadRequest(brw.Reader)
			if err != nil {
				return
			}
			record(req.URL.Path)
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret")
		}
	}))
	tests := []struct {
		name    string
		upgrade string
	}{
		{"h2c upgrade asked", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"},
		{"unknown upgrade asked", "Connection: Upgrade\r\nUpgrade: smuggle/1\r\n"},
		{"101 to a plain request", "X-Switch-Anyway: 1\r\n"},
		{"websocket asked on a route whose upgrades are []", "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"},
	}
	for _, engine := range []string{"native", "stdhttp"} {
		g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0", engine: %s}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: public, match: {path: /public, methods: [GET]}, upstream: up, upgrades: []}]
access_log: {enabled: false}
`, engine, up))
		for _, tc := range tests {
			t.Run(engine+"/"+tc.name, func(t *testing.T) {
				nc, err := net.Dial("tcp", g.Addr("main").String())
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(nc, "GET /public HTTP/1.1\r\nHost: t\r\n"+tc.upgrade+"\r\n")
				br := bufio.NewReader(nc)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusSwitchingProtocols {
					t.Errorf("the client got 101 for %q", resp.Header.Get("Upgrade"))
				}
				// Whatever the connection is now, the next request is the
				// gateway's to route, and /admin/secret has no route.
				io.WriteString(nc, "GET /admin/secret HTTP/1.1\r\nHost: t\r\n\r\n")
				if next, err := http.ReadResponse(br, nil); err == nil {
					next.Body.Close()
					if next.StatusCode == 200 {
						t.Errorf("GET /admin/secret answered 200")
					}
				}
				mu.Lock()
				defer mu.Unlock()
				for _, p := range seen {
					if strings.Contains(p, "admin") {
						t.Fatalf("the upstream received %s: %v", p, seen)
					}
				}
			})
		}
	}
}
