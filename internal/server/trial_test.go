package server_test

import (
	"net"
	"net/http"
	"testing"
	"time"
)

// TestRestartedUpstreamIsBackBeforeFailTimeout: a single-endpoint pool whose
// model server restarts (refused connections for a moment) is served again
// about a trial interval after the server is back, not after the whole
// fail_timeout (10 s here; it used to mean 10 s of 503 for a 1 s restart).
func TestRestartedUpstreamIsBackBeforeFailTimeout(t *testing.T) {
	addr := closedAddr(t)
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: model, endpoints: [{address: %s}], passive_health: {fail_timeout: 10s, trial_interval: 200ms}}]
routes: [{name: all, match: {path_prefix: /}, upstream: model}]
`, addr))
	url := baseURL(g, "main") + "/predict"
	get := func() int {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The server is down: the first request fails to connect and takes the
	// endpoint out; the next ones find the pool empty.
	if s := get(); s != http.StatusBadGateway {
		t.Fatalf("status %d with the upstream down, want 502", s)
	}
	if s := get(); s != http.StatusServiceUnavailable {
		t.Fatalf("status %d right after, want 503", s)
	}

	// The server comes back on the same address.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen again on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	back := time.Now()

	// Bounded: 200 requests 25 ms apart, 5 s, half the fail_timeout.
	for range 200 {
		if get() == http.StatusOK {
			t.Logf("served again %v after the upstream came back", time.Since(back).Round(time.Millisecond))
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("still not served %v after the upstream came back (fail_timeout 10s, trial_interval 200ms)", time.Since(back).Round(time.Millisecond))
}
