package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// statusUpstream answers every request with status and counts them.
func statusUpstream(t *testing.T, status int, hits *atomic.Int64) string {
	t.Helper()
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Body", string(body))
		w.Header().Set("X-Status", fmt.Sprint(status))
		w.WriteHeader(status)
		fmt.Fprintf(w, "status %d\n", status)
	}))
}

// resetUpstream reads each request on a new connection and closes the
// connection without a byte of response: a reset before the response.
func resetUpstream(t *testing.T, hits *atomic.Int64) string {
	t.Helper()
	return connUpstream(t, func(c net.Conn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			hits.Add(1)
		}
	})
}

// TestRetryPolicy sends requests to pools where one endpoint fails and
// another answers, under routes with different retry policies: which
// failures are retried on the other endpoint, for which methods, and what
// the client gets when they are not. Each case sends four requests, so
// round robin starts two of them at the failing endpoint.
func TestRetryPolicy(t *testing.T) {
	var bad503, badReset, ok503, okReset, okSlow, slowHits atomic.Int64
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		slowHits.Add(1)
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
x-fast: &fast {base: 1ms, max: 2ms}
upstreams:
  - {name: p503, endpoints: [{address: %s}, {address: %s}]}
  - {name: preset, endpoints: [{address: %s}, {address: %s}]}
  - {name: pslow, endpoints: [{address: %s}, {address: %s}]}
routes:
  - {name: s503, match: {path: /503}, upstream: p503, retry: {on: [503], backoff: *fast}}
  - {name: s503post, match: {path: /503post}, upstream: p503, retry: {on: [503], methods: [GET, POST], replay_body: 0, backoff: *fast}}
  - {name: s503replay, match: {path: /503replay}, upstream: p503, retry: {on: [503], methods: [POST], replay_body: 16B, backoff: *fast}}
  - {name: s503off, match: {path: /503off}, upstream: p503, retry: {on: [502, 504], backoff: *fast}}
  - {name: s503once, match: {path: /503once}, upstream: p503, retry: {attempts: 1, on: [503]}}
  - {name: reset, match: {path: /reset}, upstream: preset, retry: {on: [reset], backoff: *fast}}
  - {name: resetoff, match: {path: /resetoff}, upstream: preset}
  - {name: pertry, match: {path: /pertry}, upstream: pslow, timeouts: {request: 4s}, retry: {on: [timeout], per_try_timeout: 150ms, backoff: *fast}}
  - {name: pertryoff, match: {path: /pertryoff}, upstream: pslow, timeouts: {request: 4s}, retry: {per_try_timeout: 150ms}}
`, statusUpstream(t, 503, &bad503), statusUpstream(t, 200, &ok503),
		resetUpstream(t, &badReset), statusUpstream(t, 200, &okReset),
		slow, statusUpstream(t, 200, &okSlow)))
	base := baseURL(g, "main")

	tests := []struct {
		name, method, path string
		body               string
		bad                *atomic.Int64
		want               int // every request's status
		wantFailed         int // else: the status of those that started at the bad endpoint
	}{
		{name: "503 retried for GET", method: "GET", path: "/503", bad: &bad503, want: 200},
		{name: "503 retried for HEAD", method: "HEAD", path: "/503", bad: &bad503, want: 200},
		{name: "503 relayed for POST", method: "POST", path: "/503", bad: &bad503, wantFailed: 503},
		{name: "503 retried for POST when listed", method: "POST", path: "/503post", bad: &bad503, want: 200},
		{name: "503 relayed for a POST whose body was sent", method: "POST", path: "/503post", body: "payload", bad: &bad503, wantFailed: 503},
		{name: "503 retried for a POST whose body was kept", method: "POST", path: "/503replay", body: "payload", bad: &bad503, want: 200},
		{name: "503 relayed for a POST whose body was too large to keep", method: "POST", path: "/503replay", body: strings.Repeat("x", 17), bad: &bad503, wantFailed: 503},
		{name: "503 relayed when not listed", method: "GET", path: "/503off", bad: &bad503, wantFailed: 503},
		{name: "503 relayed with one attempt", method: "GET", path: "/503once", bad: &bad503, wantFailed: 503},
		{name: "reset retried for GET", method: "GET", path: "/reset", bad: &badReset, want: 200},
		{name: "reset not retried for POST", method: "POST", path: "/reset", bad: &badReset, wantFailed: 502},
		{name: "reset not retried by default", method: "GET", path: "/resetoff", bad: &badReset, wantFailed: 502},
		{name: "per-try timeout, then another endpoint", method: "GET", path: "/pertry", bad: &slowHits, want: 200},
		{name: "per-try timeout not retried by default", method: "GET", path: "/pertryoff", bad: &slowHits, wantFailed: 504},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := tc.bad.Load()
			statuses := map[int]int{}
			for range 4 {
				req, err := http.NewRequest(tc.method, base+tc.path, nil)
				if err != nil {
					t.Fatal(err)
				}
				if tc.body != "" {
					req.Body = nopCloser{strings.NewReader(tc.body)}
					req.ContentLength = int64(len(tc.body))
				}
				start := time.Now()
				resp, err := httpClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				statuses[resp.StatusCode]++
				if got := resp.Header.Get("X-Body"); got != tc.body {
					t.Errorf("the upstream that answered got the body %q, want %q", got, tc.body)
				}
				if resp.StatusCode == 503 && resp.Header.Get("X-Status") != "503" {
					t.Errorf("503 from the gateway, not the upstream's: %v", resp.Header)
				}
				if d := time.Since(start); tc.path == "/pertry" && d > 3*time.Second {
					t.Errorf("request took %v: the per-try timeout did not cut the slow attempt", d)
				}
			}
			hitBad := tc.bad.Load() - before
			if hitBad == 0 {
				t.Fatalf("no request reached the failing endpoint; statuses %v", statuses)
			}
			switch {
			case tc.want != 0 && statuses[tc.want] != 4:
				t.Errorf("statuses %v, want all %d", statuses, tc.want)
			case tc.wantFailed != 0 && (statuses[tc.wantFailed] != int(hitBad) || statuses[200] != 4-int(hitBad)):
				t.Errorf("statuses %v after %d requests reached the failing endpoint, want %d× %d and the rest 200",
					statuses, hitBad, hitBad, tc.wantFailed)
			}
		})
	}
}

type nopCloser struct{ *strings.Reader }

func (nopCloser) Close() error { return nil }

// TestRetryBudgetHoldsInAStorm: every endpoint answers 503 and the route
// retries 503s, under a budget of 20 % of the requests and no floor.
// Of 1,000 requests, at most 200 are retried; the rest get the 503 at
// once, penstock_retries_total counts both, and the access log shows two
// attempts for exactly the retried requests.
func TestRetryBudgetHoldsInAStorm(t *testing.T) {
	const requests, workers = 1000, 4
	var hitsA, hitsB atomic.Int64
	o := startObserved(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: down, endpoints: [{address: %s}, {address: %s}]}]
routes:
  - name: storm
    match: {path: /storm}
    upstream: down
    retry: {attempts: 2, on: [503], backoff: {base: 1ms, max: 1ms}, budget: {percent: 20, min_per_second: 0, window: 10m}}
`, statusUpstream(t, 503, &hitsA), statusUpstream(t, 503, &hitsB)))
	url := baseURL(o.g, "main") + "/storm"
	c := &http.Client{Timeout: 10 * time.Second}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= requests {
				resp, err := c.Get(url)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 503 {
					t.Errorf("status %d, want 503", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	retries := hitsA.Load() + hitsB.Load() - requests
	sent := seriesValue(t, o.reg, "penstock_retries_total", map[string]string{"route": "storm", "reason": "503", "result": "sent"})
	refused := seriesValue(t, o.reg, "penstock_retries_total", map[string]string{"route": "storm", "reason": "503", "result": "budget_exhausted"})
	t.Logf("%d requests: %d retries sent, %v refused by the budget", requests, retries, refused)
	// Two attempts: a request is retried at most once.
	if retries > requests*20/100 || retries < requests*10/100 {
		t.Errorf("%d retries, want at most %d (and not far fewer)", retries, requests*20/100)
	}
	if sent != float64(retries) || sent+refused != requests {
		t.Errorf("penstock_retries_total: sent %v, budget_exhausted %v; want %d and %d", sent, refused, retries, requests-retries)
	}
	twice := 0
	for _, l := range o.lines(t) {
		if l["attempts"] == float64(2) {
			twice++
		}
	}
	if twice != int(retries) {
		t.Errorf("access log: %d lines with attempts 2, want %d", twice, retries)
	}
}

// TestRetryOnTheOnlyEndpoint: when every endpoint in rotation was tried, a
// 503 is retried on one tried before (a full queue is often free a moment
// later), while a timeout, which would most likely happen again, is not.
func TestRetryOnTheOnlyEndpoint(t *testing.T) {
	var hits atomic.Int64
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		switch {
		case r.URL.Path == "/slow":
			time.Sleep(300 * time.Millisecond)
		case n%2 == 1:
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: one, endpoints: [{address: %s}]}]
routes:
  - name: only
    match: {path_prefix: /}
    upstream: one
    retry: {attempts: 3, on: [503, timeout], per_try_timeout: 100ms, backoff: {base: 1ms, max: 1ms}}
`, up))
	resp, body := do(t, client, "GET", baseURL(g, "main")+"/busy", nil, nil)
	if resp.StatusCode != 200 || body != "ok" || hits.Load() != 2 {
		t.Errorf("503 then 200 on the only endpoint: status %d %q after %d attempts, want 200 after 2", resp.StatusCode, body, hits.Load())
	}
	hits.Store(1) // the next request is answered, after 300 ms
	resp, _ = do(t, client, "GET", baseURL(g, "main")+"/slow", nil, nil)
	if resp.StatusCode != http.StatusGatewayTimeout || hits.Load() != 2 {
		t.Errorf("a timeout on the only endpoint: status %d after %d attempts, want 504 after 1", resp.StatusCode, hits.Load()-1)
	}
}
