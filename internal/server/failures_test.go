package server_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestFailuresMapToStatus checks that every failure goes through the error
// funnel: the right status, a small JSON body naming the failure, and the
// request id in both the body and the header.
func TestFailuresMapToStatus(t *testing.T) {
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	}))
	ok := newRecorder(t, "ok")
	// "closed" is a port nothing listens on: the connect fails at once and
	// passive health then takes the endpoint out, so the next request finds
	// no healthy endpoint (trials are pushed past the test's end).
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: closed, endpoints: [{address: %s}], passive_health: {trial_interval: 1h}}
  - {name: slow, endpoints: [{address: %s}]}
  - {name: ok, endpoints: [{address: %s}]}
routes:
  - {name: connect, match: {path: /connect}, upstream: closed}
  - {name: timeout, match: {path: /timeout}, upstream: slow, timeouts: {response_header: 150ms}}
  - {name: whole, match: {path: /whole}, upstream: slow, timeouts: {request: 150ms}}
  - {name: small, match: {path: /small}, upstream: ok, max_request_body: 1KiB}
`, closedAddr(t), slow, ok.addr()))
	base := baseURL(g, "main")

	tests := []struct {
		name   string
		method string
		path   string
		body   string
		status int
		code   string
	}{
		{name: "no route", method: "GET", path: "/nowhere", status: 404, code: "no_route"},
		{name: "connect failure", method: "GET", path: "/connect", status: 502, code: "upstream_connect_failed"},
		{name: "no healthy endpoint after the failure", method: "GET", path: "/connect", status: 503, code: "no_healthy_endpoint"},
		{name: "response header timeout", method: "GET", path: "/timeout", status: 504, code: "upstream_timeout"},
		{name: "whole-request timeout", method: "GET", path: "/whole", status: 504, code: "upstream_timeout"},
		{name: "declared body too large", method: "POST", path: "/small", body: strings.Repeat("x", 2048), status: 413, code: "request_body_too_large"},
		{name: "body within the limit", method: "POST", path: "/small", body: strings.Repeat("x", 1024), status: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body *strings.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			var resp *http.Response
			var got string
			if body != nil {
				resp, got = do(t, client, tc.method, base+tc.path, nil, body)
			} else {
				resp, got = do(t, client, tc.method, base+tc.path, nil, nil)
			}
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, got)
			}
			if tc.code == "" {
				return
			}
			var eb errorBody
			if err := json.Unmarshal([]byte(got), &eb); err != nil {
				t.Fatalf("body is not the funnel's JSON: %q", got)
			}
			if eb.Error != tc.code || eb.Status != tc.status {
				t.Errorf("body %+v, want error %q status %d", eb, tc.code, tc.status)
			}
			if id := resp.Header.Get("X-Request-Id"); id == "" || eb.RequestID != id {
				t.Errorf("request id: body %q, header %q", eb.RequestID, id)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}

	t.Run("chunked body over the limit", func(t *testing.T) {
		req, _ := http.NewRequest("POST", base+"/small", strings.NewReader(strings.Repeat("y", 4096)))
		req.ContentLength = -1 // unknown length: sent chunked, caught while streaming
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("status %d, want 413", resp.StatusCode)
		}
	})
	t.Run("oversized request header", func(t *testing.T) {
		resp, _ := do(t, client, "GET", base+"/small", map[string]string{"X-Big": strings.Repeat("b", 80<<10)}, nil)
		if resp.StatusCode != 431 {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
	})
}

// TestPassiveHealth checks that a dead endpoint leaves rotation after
// max_fails connection failures, that the rest of the pool takes the
// traffic, and that the endpoint returns after fail_timeout.
func TestPassiveHealth(t *testing.T) {
	alive := newRecorder(t, "alive")
	dead := closedAddr(t)
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: pool
    endpoints: [{address: %s}, {address: %s}]
    passive_health: {max_fails: 2, fail_timeout: 300ms}
routes: [{name: r, match: {path: /}, upstream: pool}]
`, dead, alive.addr()))
	url := baseURL(g, "main") + "/"
	statuses := map[int]int{}
	for i := range 20 {
		// A failed connect sent nothing, so the request (body included) is
		// retried on the live endpoint: the client never sees the failure.
		body := strings.Repeat("b", i)
		resp, got := do(t, client, "POST", url, nil, strings.NewReader(body))
		statuses[resp.StatusCode]++
		if resp.StatusCode == 200 && decodeSeen(t, got).Body != body {
			t.Errorf("request %d: upstream got body %q", i, decodeSeen(t, got).Body)
		}
	}
	if statuses[200] != 20 {
		t.Errorf("statuses %v, want 20×200", statuses)
	}

	// Bring the dead endpoint to life at the same address; after
	// fail_timeout it must get traffic again.
	ln, err := net.Listen("tcp", dead)
	if err != nil {
		t.Skipf("cannot re-bind %s: %v", dead, err)
	}
	revived := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "revived")
	})}
	go revived.Serve(ln)
	t.Cleanup(func() { revived.Close() })
	time.Sleep(400 * time.Millisecond)
	seenRevived := false
	for range 4 {
		resp, _ := do(t, client, "GET", url, nil, nil)
		if resp.Header.Get("X-Upstream") == "revived" {
			seenRevived = true
		}
	}
	if !seenRevived {
		t.Error("endpoint did not return to rotation after fail_timeout")
	}
}
