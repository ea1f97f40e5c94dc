package server_test

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestHedgedRequests: a pool of a stalling endpoint and a fast one, under
// routes that hedge after a fixed delay and after the measured P95. A GET
// whose first attempt stalls is answered by the fast endpoint soon after
// the delay, the stalled attempt is canceled (the endpoint sees its client
// go) and counted; a POST is never hedged.
func TestHedgedRequests(t *testing.T) {
	const stall = 2 * time.Second
	var canceled, stalled, hits503 atomic.Int64
	// The stalling endpoint stalls only requests marked X-Stall, so the
	// P95 route can first learn the normal latency.
	stalling := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Stall") != "" {
			stalled.Add(1)
			select {
			case <-time.After(stall):
			case <-r.Context().Done():
				canceled.Add(1)
				return
			}
		}
		w.Header().Set("X-Upstream", "slow")
	})
	slow, slow2 := newUpstream(t, stalling), newUpstream(t, stalling)
	fast := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "fast")
	}))
	o := startObserved(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: fixed, endpoints: [{address: %s}, {address: %s}]}
  - {name: p95, endpoints: [{address: %s}, {address: %s}]}
  - {name: unavailable, endpoints: [{address: %s}, {address: %s}]}
  - {name: stalled, endpoints: [{address: %s}, {address: %s}]}
routes:
  - {name: fixed, match: {path: /fixed}, upstream: fixed, retry: {hedge: {after: 100ms}}}
  - {name: p95, match: {path: /p95}, upstream: p95, retry: {hedge: {after: p95}}}
  - {name: unavailable, match: {path: /unavailable}, upstream: unavailable,
     retry: {on: [503], backoff: {base: 1ms, max: 1ms}, hedge: {after: 1s}}}
  - {name: stalled, match: {path: /stalled}, upstream: stalled, retry: {hedge: {after: 50ms}}}
`, slow, fast, slow, fast, statusUpstream(t, 503, &hits503), fast, slow, slow2))
	base := baseURL(o.g, "main")
	get := func(t *testing.T, method, path string) (string, time.Duration) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		req.Header.Set("X-Stall", "1")
		start := time.Now()
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return resp.Header.Get("X-Upstream"), time.Since(start)
	}

	t.Run("fixed delay", func(t *testing.T) {
		before := stalled.Load()
		for range 4 {
			if up, d := get(t, "GET", "/fixed"); up != "fast" || d >= stall {
				t.Errorf("answered by %s after %v, want fast, well before %v", up, d, stall)
			}
		}
		hedged := stalled.Load() - before
		if hedged == 0 {
			t.Fatal("no request started at the stalling endpoint")
		}
		waitFor(t, "the stalled attempts to be canceled", func() bool { return canceled.Load() == stalled.Load() })
		sent := seriesValue(t, o.reg, "penstock_retries_total", map[string]string{"route": "fixed", "reason": "hedge", "result": "sent"})
		lost := seriesValue(t, o.reg, "penstock_hedge_attempts_canceled_total", map[string]string{"route": "fixed"})
		if sent != float64(hedged) || lost != float64(hedged) {
			t.Errorf("hedges sent %v, attempts canceled %v; want %d each", sent, lost, hedged)
		}
	})
	t.Run("POST is not hedged", func(t *testing.T) {
		var slowSeen bool
		for range 2 {
			up, d := get(t, "POST", "/fixed")
			if up == "slow" {
				slowSeen = true
				if d < stall {
					t.Errorf("a stalled POST answered after %v: hedged?", d)
				}
			}
		}
		if !slowSeen {
			t.Error("no POST went to the stalling endpoint")
		}
	})
	t.Run("a 503 before the hedge is retried at once", func(t *testing.T) {
		before := hits503.Load()
		for range 4 {
			if up, d := get(t, "GET", "/unavailable"); up != "fast" || d >= time.Second {
				t.Errorf("answered by %q after %v, want fast, without waiting for the hedge delay", up, d)
			}
		}
		if hits503.Load() == before {
			t.Error("no request started at the 503 endpoint")
		}
	})
	t.Run("a client that leaves cancels both attempts", func(t *testing.T) {
		before := canceled.Load()
		c := &http.Client{Timeout: 500 * time.Millisecond}
		req, _ := http.NewRequest("GET", base+"/stalled", nil)
		req.Header.Set("X-Stall", "1")
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("status %d, want the client to time out", resp.StatusCode)
		}
		waitFor(t, "both attempts to be canceled", func() bool { return canceled.Load()-before == 2 })
	})
	t.Run("after the measured P95", func(t *testing.T) {
		// Learn the normal latency first: no request is stalled.
		for range 120 {
			resp, err := httpClient.Get(base + "/p95")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		before := stalled.Load()
		for range 4 {
			if up, d := get(t, "GET", "/p95"); up != "fast" || d >= stall {
				t.Errorf("answered by %s after %v, want fast, well before %v", up, d, stall)
			}
		}
		if stalled.Load() == before {
			t.Error("no request started at the stalling endpoint")
		}
	})
}
