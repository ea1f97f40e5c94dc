package server_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// heldUpstream is an upstream that keeps every request until the test
// lets it go: a model server that is busy.
type heldUpstream struct {
	arrived chan struct{}
	release chan struct{}
}

func newHeldUpstream(t *testing.T) (*heldUpstream, string) {
	u := &heldUpstream{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	addr := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.arrived <- struct{}{}
		select {
		case <-u.release:
		case <-time.After(20 * time.Second):
		case <-r.Context().Done():
		}
		w.Write([]byte("done\n"))
	}))
	t.Cleanup(u.letGo)
	return u, addr
}

func (u *heldUpstream) letGo() {
	select {
	case <-u.release:
	default:
		close(u.release)
	}
}

// TestConcurrencyLimitShedsFast: past a route's max_in_flight, requests
// get 503 concurrency_limited at once while the upstream still holds the
// admitted ones; a queued request waits for a slot; the limit counts again
// once they complete.
func TestConcurrencyLimitShedsFast(t *testing.T) {
	up, addr := newHeldUpstream(t)
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: slow
    match: {path: /slow}
    upstream: up
    concurrency: {max_in_flight: 2}
  - name: queued
    match: {path: /queued}
    upstream: up
    concurrency: {max_in_flight: 1, max_queue: 4, queue_timeout: 30s}
`, addr))
	url := baseURL(g, "main")

	var wg sync.WaitGroup
	statuses := make(chan int, 4)
	get := func(path string) {
		wg.Go(func() {
			resp, _ := do(t, client, "GET", url+path, nil, nil)
			statuses <- resp.StatusCode
		})
	}
	get("/slow")
	<-up.arrived
	get("/slow")
	<-up.arrived
	get("/queued")
	<-up.arrived
	get("/queued") // waits in /queued's queue

	start := time.Now()
	resp, body := do(t, client, "GET", url+"/slow", nil, nil)
	if resp.StatusCode != 503 {
		t.Fatalf("a request past the limit: %d, want 503", resp.StatusCode)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refusal took %s while the upstream held the others", took)
	}
	var eb errorBody
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error != "concurrency_limited" {
		t.Errorf("body %q, want error concurrency_limited", body)
	}
	select {
	case <-up.arrived:
		t.Fatal("a request past the limit reached the upstream")
	default:
	}
	up.letGo()
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Errorf("an admitted or queued request got %d, want 200", s)
		}
	}
	// The slots are free again.
	if resp, _ := do(t, client, "GET", url+"/slow", nil, nil); resp.StatusCode != 200 {
		t.Errorf("after the held requests completed: %d, want 200", resp.StatusCode)
	}
}

// TestConcurrencyLimitSharedByUpstream: with scope upstream, routes to the
// same pool share one limit.
func TestConcurrencyLimitSharedByUpstream(t *testing.T) {
	up, addr := newHeldUpstream(t)
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - {name: a, match: {path: /a}, upstream: up, concurrency: {max_in_flight: 1, scope: upstream}}
  - {name: b, match: {path: /b}, upstream: up, concurrency: {max_in_flight: 1, scope: upstream}}
`, addr))
	done := make(chan int, 1)
	go func() {
		resp, _ := do(t, client, "GET", baseURL(g, "main")+"/a", nil, nil)
		done <- resp.StatusCode
	}()
	<-up.arrived
	if resp, _ := do(t, client, "GET", baseURL(g, "main")+"/b", nil, nil); resp.StatusCode != 503 {
		t.Errorf("route b while route a holds the upstream's slot: %d, want 503", resp.StatusCode)
	}
	up.letGo()
	if s := <-done; s != 200 {
		t.Errorf("route a: %d, want 200", s)
	}
}

// TestConcurrencyLimitSurvivesReload: a reload that keeps a route's
// concurrency settings keeps its limit (the requests in flight still
// count); one that changes them starts a new limit.
func TestConcurrencyLimitSurvivesReload(t *testing.T) {
	up, addr := newHeldUpstream(t)
	text := func(limit int, extra string) *config.Config {
		cfg := mustConfig(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
reload: {stream_grace: 100ms}
routes:
  - {name: slow, match: {path: /slow}, upstream: up, concurrency: {max_in_flight: %d}}
%s`, addr, limit, extra))
		cfg.Shutdown.IdleGrace = config.Duration(100 * time.Millisecond)
		cfg.SetDefaults()
		return cfg
	}
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
reload: {stream_grace: 100ms}
routes:
  - {name: slow, match: {path: /slow}, upstream: up, concurrency: {max_in_flight: 1}}
`, addr))
	url := baseURL(g, "main") + "/slow"
	done := make(chan int, 2)
	get := func() {
		go func() {
			resp, _ := do(t, client, "GET", url, nil, nil)
			done <- resp.StatusCode
		}()
	}
	get()
	<-up.arrived

	// Another route added: the slow route's limit is the same one.
	if err := g.Reload(text(1, "  - {name: other, match: {path: /other}, upstream: up}\n")); err != nil {
		t.Fatal(err)
	}
	url = baseURL(g, "main") + "/slow"
	if resp, _ := do(t, client, "GET", url, nil, nil); resp.StatusCode != 503 {
		t.Errorf("after a reload that kept the limit: %d, want 503 (its one slot is held)", resp.StatusCode)
	}
	// A new max_in_flight is a new limit, which has room.
	if err := g.Reload(text(2, "")); err != nil {
		t.Fatal(err)
	}
	get()
	<-up.arrived
	up.letGo()
	for range 2 {
		if s := <-done; s != 200 {
			t.Errorf("a held request got %d, want 200", s)
		}
	}
}
