package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestCORSPreflightRouting checks that a CORS preflight reaches the route
// of the request it announces when that route has a cors policy, even a
// route matching only POST (a gRPC route), and is answered there without
// reaching the upstream; other preflights and OPTIONS requests are routed
// as before.
func TestCORSPreflightRouting(t *testing.T) {
	rec := newRecorder(t, "up")
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: grpc
    match: {grpc: {service: pkg.Svc}}
    upstream: up
    cors: {allow_origins: ["https://app.example.com"]}
  - name: plain-post
    match: {path: /submit, methods: [POST]}
    upstream: up
  - name: options
    match: {path: /any, methods: [OPTIONS]}
    upstream: up
  - name: cors-any
    match: {path: /any, methods: [POST]}
    upstream: up
    cors: {allow_origins: ["*"]}
`, rec.addr()))
	preflight := func(path string, h ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("OPTIONS", baseURL(g, "main")+path, nil)
		for i := 0; i+1 < len(h); i += 2 {
			req.Header.Set(h[i], h[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	tests := []struct {
		name      string
		path      string
		headers   []string
		status    int
		allow     string // Access-Control-Allow-Origin
		forwarded bool
	}{
		{name: "preflight of a gRPC call", path: "/pkg.Svc/Call",
			headers: []string{"Origin", "https://app.example.com", "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "content-type,x-grpc-web"},
			status:  204, allow: "https://app.example.com"},
		{name: "preflight from an origin not allowed", path: "/pkg.Svc/Call",
			headers: []string{"Origin", "https://evil.example", "Access-Control-Request-Method", "POST"}, status: 204},
		{name: "preflight to a route without cors is routed as OPTIONS", path: "/submit",
			headers: []string{"Origin", "https://app.example.com", "Access-Control-Request-Method", "POST"}, status: 405},
		{name: "OPTIONS without a preflight's fields is routed as OPTIONS", path: "/pkg.Svc/Call",
			headers: []string{"Origin", "https://app.example.com"}, status: 405},
		{name: "preflight announcing a method the route does not serve", path: "/pkg.Svc/Call",
			headers: []string{"Origin", "https://app.example.com", "Access-Control-Request-Method", "PUT"}, status: 405},
		{name: "preflight goes to the route with cors, not the OPTIONS route", path: "/any",
			headers: []string{"Origin", "https://app.example.com", "Access-Control-Request-Method", "POST"}, status: 204, allow: "*"},
		{name: "plain OPTIONS goes to the OPTIONS route", path: "/any", status: 200, forwarded: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := rec.count.Load()
			resp := preflight(tt.path, tt.headers...)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tt.allow {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", got, tt.allow)
			}
			if forwarded := rec.count.Load() > before; forwarded != tt.forwarded {
				t.Errorf("forwarded %v, want %v", forwarded, tt.forwarded)
			}
			if tt.allow != "" && !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
				t.Errorf("Access-Control-Allow-Methods %q, want POST", resp.Header.Get("Access-Control-Allow-Methods"))
			}
		})
	}
}
