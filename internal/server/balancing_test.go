package server_test

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestBalancing checks that each policy spreads requests as configured.
func TestBalancing(t *testing.T) {
	t.Run("round_robin spreads evenly", func(t *testing.T) {
		a, b, c := newRecorder(t, "a"), newRecorder(t, "b"), newRecorder(t, "c")
		g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: pool
    balancing: round_robin
    endpoints: [{address: %s}, {address: %s}, {address: %s}]
routes: [{name: all, match: {path_prefix: /}, upstream: pool}]
`, a.addr(), b.addr(), c.addr()))
		for range 300 {
			do(t, client, "GET", baseURL(g, "main")+"/x", nil, nil)
		}
		for _, r := range []*recorder{a, b, c} {
			if n := r.count.Load(); n != 100 {
				t.Errorf("endpoint %s got %d requests, want 100", r.name, n)
			}
		}
	})

	t.Run("weighted_round_robin follows weights", func(t *testing.T) {
		a, b := newRecorder(t, "a"), newRecorder(t, "b")
		g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: pool
    balancing: weighted_round_robin
    endpoints: [{address: %s, weight: 3}, {address: %s, weight: 1}]
routes: [{name: all, match: {path_prefix: /}, upstream: pool}]
`, a.addr(), b.addr()))
		for range 400 {
			do(t, client, "GET", baseURL(g, "main")+"/x", nil, nil)
		}
		if na, nb := a.count.Load(), b.count.Load(); na != 300 || nb != 100 {
			t.Errorf("got a=%d b=%d, want 300 and 100", na, nb)
		}
	})

	t.Run("least_request avoids the busy endpoint", func(t *testing.T) {
		// slow holds every request for 200ms; fast answers at once. With 8
		// requests in flight at a time, power of two choices must send most
		// traffic to fast.
		var mu sync.Mutex
		counts := map[string]int{}
		handler := func(name string, delay time.Duration) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				counts[name]++
				mu.Unlock()
				time.Sleep(delay)
			})
		}
		slow := newUpstream(t, handler("slow", 200*time.Millisecond))
		fast := newUpstream(t, handler("fast", 0))
		g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: pool
    balancing: least_request
    endpoints: [{address: %s}, {address: %s}]
routes: [{name: all, match: {path_prefix: /}, upstream: pool}]
`, slow, fast))
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 25 {
					resp, err := client.Get(baseURL(g, "main") + "/x")
					if err == nil {
						resp.Body.Close()
					}
				}
			}()
		}
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		if counts["fast"] < 4*counts["slow"] {
			t.Errorf("fast=%d slow=%d: want fast to take at least 4x the slow endpoint's requests", counts["fast"], counts["slow"])
		}
	})
}
