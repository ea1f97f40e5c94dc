package server_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// An upstream that answers 503 opens the pool's breaker: the gateway then
// answers 503 circuit_open at once, without sending anything upstream, and
// once the open duration is over, passing trial requests close it.
func TestCircuitBreakerOpensAndCloses(t *testing.T) {
	var failing atomic.Bool
	var hits atomic.Int64
	failing.Store(true)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: models
    endpoints: [{address: %s}]
    circuit_breaker: {window: 10s, min_requests: 5, error_ratio: 0.5, open_duration: 300ms, max_trial_requests: 2}
routes: [{name: all, match: {path_prefix: /}, upstream: models}]
access_log: {enabled: false}
`, up))
	url := baseURL(g, "main") + "/v1/predict"
	for i := range 5 {
		resp, body := do(t, client, "GET", url, nil, nil)
		if resp.StatusCode != 503 || strings.Contains(body, "circuit_open") {
			t.Fatalf("request %d: %d %q, want the upstream's own 503", i, resp.StatusCode, body)
		}
	}
	pool := g.Snapshot().Pools["models"]
	if s := pool.Protection(time.Now().UnixNano()).State.String(); s != "open" {
		t.Fatalf("after 5 failures of 5 the pool breaker is %s, want open", s)
	}
	sent := hits.Load()
	resp, body := do(t, client, "GET", url, nil, nil)
	if resp.StatusCode != 503 || !strings.Contains(body, `"error":"circuit_open"`) {
		t.Fatalf("open breaker answered %d %q, want 503 circuit_open", resp.StatusCode, body)
	}
	if hits.Load() != sent {
		t.Fatal("an open breaker still sent the request upstream")
	}

	failing.Store(false)
	deadline := time.Now().Add(15 * time.Second)
	for ok := 0; ok < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the breaker never let a trial request through")
		}
		resp, _ := do(t, client, "GET", url, nil, nil)
		if resp.StatusCode == 200 {
			ok++
			continue
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := pool.Protection(time.Now().UnixNano()).State.String(); s != "closed" {
		t.Fatalf("after two passed trials the pool breaker is %s, want closed", s)
	}
	for range 5 {
		if resp, _ := do(t, client, "GET", url, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("closed breaker: status %d", resp.StatusCode)
		}
	}
}

// One endpoint of two answering 503: its own breaker opens and takes it
// out, while the pool's (at most 3 of 5 of its requests failed, below the ratio)
// stays closed and the other endpoint serves every request.
func TestEndpointBreakerTakesOneEndpointOut(t *testing.T) {
	var badHits atomic.Int64
	bad := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	good := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: models
    endpoints: [{address: %s}, {address: %s}]
    circuit_breaker: {min_requests: 5, error_ratio: 0.8, open_duration: 1h}
routes: [{name: all, match: {path_prefix: /}, upstream: models}]
access_log: {enabled: false}
`, bad, good))
	url := baseURL(g, "main") + "/"
	for i := 0; badHits.Load() < 5; i++ {
		if i == 100 {
			st := g.Snapshot().Pools["models"].Endpoints[0].State()
			t.Fatalf("the bad endpoint got %d requests of 100: %+v %+v", badHits.Load(), st, st.Protection.Breaker)
		}
		do(t, client, "GET", url, nil, nil)
	}
	sent := badHits.Load()
	for i := range 20 {
		if resp, body := do(t, client, "GET", url, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("request %d after the bad endpoint's breaker opened: %d %q", i, resp.StatusCode, body)
		}
	}
	if badHits.Load() != sent {
		t.Fatal("requests still reach the endpoint whose breaker is open")
	}
	pool := g.Snapshot().Pools["models"]
	now := time.Now().UnixNano()
	if s := pool.Protection(now).State.String(); s != "closed" {
		t.Fatalf("pool breaker %s, want closed", s)
	}
	if s := pool.Endpoints[0].State().Protection.Breaker.State.String(); s != "open" {
		t.Fatalf("bad endpoint's breaker %s, want open", s)
	}
}
