package server_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestHopByHopHeaders checks that connection-specific fields are not
// forwarded in either direction (RFC 9110 §7.6.1), including fields named in
// Connection, while end-to-end fields and "TE: trailers" pass.
func TestHopByHopHeaders(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"Connection", "Keep-Alive", "Proxy-Authorization", "X-Listed", "Upgrade", "Proxy-Connection"} {
			if v := r.Header.Get(h); v != "" {
				w.Header().Add("X-Leaked", h)
			}
		}
		w.Header().Set("X-Te", r.Header.Get("Te"))
		w.Header().Set("X-End-To-End", r.Header.Get("X-End-To-End"))
		w.Header().Set("Connection", "X-Resp-Listed")
		w.Header().Set("X-Resp-Listed", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-Resp-End-To-End", "yes")
	}))
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path: /h}, upstream: up}]
`, up))
	resp, _ := do(t, client, "GET", baseURL(g, "main")+"/h", map[string]string{
		"Connection":          "X-Listed, keep-alive",
		"X-Listed":            "1",
		"Keep-Alive":          "timeout=5",
		"Proxy-Authorization": "Basic Zm9vOmJhcg==",
		"Proxy-Connection":    "keep-alive",
		"Te":                  "trailers, deflate",
		"X-End-To-End":        "kept",
	}, nil)
	if leaked := resp.Header.Values("X-Leaked"); len(leaked) > 0 {
		t.Errorf("hop-by-hop request fields reached the upstream: %v", leaked)
	}
	if got := resp.Header.Get("X-Te"); got != "trailers" {
		t.Errorf("upstream TE = %q, want %q", got, "trailers")
	}
	if resp.Header.Get("X-End-To-End") != "kept" {
		t.Error("end-to-end request field lost")
	}
	for _, h := range []string{"X-Resp-Listed", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("hop-by-hop response field %s reached the client: %q", h, v)
		}
	}
	if resp.Header.Get("X-Resp-End-To-End") != "yes" {
		t.Error("end-to-end response field lost")
	}
}

// TestForwardingHeaders checks X-Forwarded-* and Forwarded from untrusted and
// trusted peers, and the request id.
func TestForwardingHeaders(t *testing.T) {
	rec := newRecorder(t, "up")
	g := startGateway(t, lines(`listeners:
  - {name: untrusted, address: "127.0.0.1:0"}
  - {name: trusted, address: "127.0.0.1:0", trusted_proxies: [127.0.0.0/8]}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, rec.addr()))
	spoof := map[string]string{
		"Host":              "api.example.com",
		"X-Forwarded-For":   "203.0.113.7",
		"X-Forwarded-Proto": "https",
		"X-Forwarded-Host":  "spoofed.example",
		"Forwarded":         "for=203.0.113.7;proto=https",
	}
	tests := []struct {
		name     string
		listener string
		want     map[string]string
	}{
		{name: "untrusted peer: values replaced", listener: "untrusted", want: map[string]string{
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Proto": "http",
			"X-Forwarded-Host":  "api.example.com",
			"Forwarded":         "for=127.0.0.1;host=api.example.com;proto=http",
		}},
		{name: "trusted peer: values kept and appended", listener: "trusted", want: map[string]string{
			"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
			"X-Forwarded-Proto": "https",
			"X-Forwarded-Host":  "spoofed.example",
			"Forwarded":         "for=203.0.113.7;proto=https, for=127.0.0.1;host=api.example.com;proto=http",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, body := do(t, client, "GET", baseURL(g, tc.listener)+"/x", spoof, nil)
			s := decodeSeen(t, body)
			for k, want := range tc.want {
				if got := strings.Join(s.Header.Values(k), ", "); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if s.Host != "api.example.com" {
				t.Errorf("upstream Host = %q, want the client's", s.Host)
			}
		})
	}

	t.Run("request id generated and returned", func(t *testing.T) {
		resp, body := do(t, client, "GET", baseURL(g, "untrusted")+"/x", nil, nil)
		id := resp.Header.Get("X-Request-Id")
		if len(id) != 32 {
			t.Fatalf("X-Request-Id = %q, want 32 hex characters", id)
		}
		if got := decodeSeen(t, body).Header.Get("X-Request-Id"); got != id {
			t.Errorf("upstream saw request id %q, client got %q", got, id)
		}
	})
	t.Run("client request id kept when well-formed", func(t *testing.T) {
		resp, body := do(t, client, "GET", baseURL(g, "untrusted")+"/x", map[string]string{"X-Request-Id": "abc-123.DEF_4"}, nil)
		if resp.Header.Get("X-Request-Id") != "abc-123.DEF_4" || decodeSeen(t, body).Header.Get("X-Request-Id") != "abc-123.DEF_4" {
			t.Errorf("client id not kept: %q", resp.Header.Get("X-Request-Id"))
		}
	})
	t.Run("malformed client request id replaced", func(t *testing.T) {
		resp, body := do(t, client, "GET", baseURL(g, "untrusted")+"/x", map[string]string{"X-Request-Id": `"><script>`}, nil)
		id := resp.Header.Get("X-Request-Id")
		if len(id) != 32 || decodeSeen(t, body).Header.Get("X-Request-Id") != id {
			t.Errorf("malformed id not replaced: client %q", id)
		}
	})
}
