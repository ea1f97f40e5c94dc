package server_test

import (
	"net/http"
	"testing"
)

// TestRouting checks which upstream each request reaches: hosts (exact,
// wildcard, any), path parameters, catch-alls, prefixes, methods, header
// matchers and the precedence between them.
func TestRouting(t *testing.T) {
	names := []string{"api-exact", "api-wild", "any-static", "any-param", "any-catchall", "prefix", "post-only", "gold", "plain"}
	ups := map[string]*recorder{}
	yaml := "listeners:\n  - name: main\n    address: 127.0.0.1:0\nupstreams:\n"
	for _, n := range names {
		ups[n] = newRecorder(t, n)
		yaml += lines("  - name: %s\n    endpoints: [{address: %s}]\n", n, ups[n].addr())
	}
	yaml += `routes:
  - name: api-exact
    match: {hosts: [api.example.com], path: /v1/models/:model/predict}
    upstream: api-exact
  - name: api-wild
    match: {hosts: ["*.example.com"], path: /v1/models/:model/predict}
    upstream: api-wild
  - name: any-static
    match: {path: /v1/models/special/predict}
    upstream: any-static
  - name: any-param
    match: {path: /v1/models/:model/predict}
    upstream: any-param
  - name: any-catchall
    match: {path: /v1/models/*rest}
    upstream: any-catchall
  - name: prefix
    match: {path_prefix: /static}
    upstream: prefix
  - name: post-only
    match: {path: /submit, methods: [POST]}
    upstream: post-only
  - name: gold
    match: {path: /tenant, headers: {X-Tenant: gold}}
    upstream: gold
  - name: plain
    match: {path: /tenant}
    upstream: plain
`
	g := startGateway(t, yaml)
	base := baseURL(g, "main")

	tests := []struct {
		name     string
		method   string
		host     string
		path     string
		header   map[string]string
		status   int
		upstream string
	}{
		{name: "exact host wins over wildcard and any", host: "api.example.com", path: "/v1/models/m1/predict", status: 200, upstream: "api-exact"},
		{name: "exact host ignores port and case", host: "API.Example.com:8080", path: "/v1/models/m1/predict", status: 200, upstream: "api-exact"},
		{name: "wildcard host", host: "eu.example.com", path: "/v1/models/m1/predict", status: 200, upstream: "api-wild"},
		{name: "wildcard spans labels", host: "a.b.example.com", path: "/v1/models/m1/predict", status: 200, upstream: "api-wild"},
		{name: "apex is not matched by wildcard", host: "example.com", path: "/v1/models/m1/predict", status: 200, upstream: "any-param"},
		{name: "other host falls to any-host routes", host: "other.test", path: "/v1/models/m1/predict", status: 200, upstream: "any-param"},
		{name: "static beats param", host: "other.test", path: "/v1/models/special/predict", status: 200, upstream: "any-static"},
		{name: "host beats path specificity", host: "api.example.com", path: "/v1/models/special/predict", status: 200, upstream: "api-exact"},
		{name: "host tier falls through when its paths do not match", host: "api.example.com", path: "/v1/models/m1/assets/x", status: 200, upstream: "any-catchall"},
		{name: "param beats catch-all", host: "x", path: "/v1/models/m2/predict", status: 200, upstream: "any-param"},
		{name: "catch-all takes the rest", host: "x", path: "/v1/models/m2/assets/tokenizer.bin", status: 200, upstream: "any-catchall"},
		{name: "prefix matches itself", path: "/static", status: 200, upstream: "prefix"},
		{name: "prefix matches below", path: "/static/css/site.css", status: 200, upstream: "prefix"},
		{name: "prefix respects segment boundary", path: "/staticx", status: 404},
		{name: "method allowed", method: "POST", path: "/submit", status: 200, upstream: "post-only"},
		{name: "method not allowed", method: "GET", path: "/submit", status: 405},
		{name: "header matcher wins when it matches", path: "/tenant", header: map[string]string{"X-Tenant": "gold"}, status: 200, upstream: "gold"},
		{name: "header matcher value is exact", path: "/tenant", header: map[string]string{"X-Tenant": "Gold"}, status: 200, upstream: "plain"},
		{name: "no header falls to plain route", path: "/tenant", status: 200, upstream: "plain"},
		{name: "unknown path", path: "/nope", status: 404},
		{name: "trailing slash is a different path", path: "/submit/", method: "POST", status: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			hdr := map[string]string{}
			for k, v := range tc.header {
				hdr[k] = v
			}
			if tc.host != "" {
				hdr["Host"] = tc.host
			}
			resp, body := do(t, client, method, base+tc.path, hdr, nil)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if tc.upstream != "" {
				if got := decodeSeen(t, body).Upstream; got != tc.upstream {
					t.Errorf("reached upstream %q, want %q", got, tc.upstream)
				}
			}
		})
	}

	t.Run("405 lists allowed methods", func(t *testing.T) {
		resp, _ := do(t, client, "DELETE", base+"/submit", nil, nil)
		if got := resp.Header.Get("Allow"); got != "POST" {
			t.Errorf("Allow = %q, want POST", got)
		}
	})
	t.Run("path params reach the upstream unchanged", func(t *testing.T) {
		_, body := do(t, client, "GET", base+"/v1/models/a%2Fb/predict?x=1&y=%20", map[string]string{"Host": "h"}, nil)
		if got := decodeSeen(t, body).URI; got != "/v1/models/a%2Fb/predict?x=1&y=%20" {
			t.Errorf("upstream saw %q", got)
		}
	})
	t.Run("dot segments are refused", func(t *testing.T) {
		for _, p := range []string{"/static/../submit", "/static/%2e%2E/submit", "/static/./x"} {
			req, _ := http.NewRequest("GET", base+"/", nil)
			req.URL.Opaque = p // keep the dots: Go's client would not clean them, but be explicit
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 {
				t.Errorf("%s: status %d, want 400", p, resp.StatusCode)
			}
		}
	})
}
