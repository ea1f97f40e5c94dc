package server_test

import (
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/split"
)

// splitConfig is a gateway with a split route /m between the pools stable
// and canary (recorders), plus extra YAML lines inside the split block.
func splitConfig(stable, canary *recorder, extra string) string {
	return lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
shutdown: {idle_grace: 100ms}
upstreams:
  - {name: stable, endpoints: [{address: %s}]}
  - {name: canary, endpoints: [{address: %s}]}
routes:
  - name: m
    match: {path_prefix: /m}
    upstream: stable
    split:
      arm_header: X-Penstock-Arm
%s`, stable.addr(), canary.addr(), extra)
}

// TestSplitHeaderForcesArm sends requests through a real gateway to two
// upstreams: a request with the force header's value goes to the arm it
// names, whatever the weights; one without it, or with a value that names
// no arm, goes where the weights say. The arm is in the response header,
// the access log and the arm metric.
func TestSplitHeaderForcesArm(t *testing.T) {
	stable, canary := newRecorder(t, "stable"), newRecorder(t, "canary")
	o := startObserved(t, splitConfig(stable, canary, `      force: {header: x-model-version, values: {v2: canary, v1: stable}}
      arms:
        - {name: stable, upstream: stable, weight: 100}
        - {name: canary, upstream: canary, weight: 0}
`))
	url := baseURL(o.g, "main") + "/m/predict"
	tests := []struct {
		name, value, wantArm string
	}{
		{"forced to the canary", "v2", "canary"},
		{"forced to stable", "v1", "stable"},
		{"no header", "", "stable"},
		{"a value naming no arm", "v9", "stable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hdr := map[string]string{}
			if tc.value != "" {
				hdr["X-Model-Version"] = tc.value
			}
			for range 20 {
				resp, body := do(t, client, "GET", url, hdr, nil)
				if got := decodeSeen(t, body).Upstream; got != tc.wantArm {
					t.Fatalf("served by %q, want %q", got, tc.wantArm)
				}
				if got := resp.Header.Get("X-Penstock-Arm"); got != tc.wantArm {
					t.Fatalf("X-Penstock-Arm %q, want %q", got, tc.wantArm)
				}
			}
		})
	}
	if got := seriesValue(t, o.reg, "penstock_split_requests_total", map[string]string{"route": "m", "arm": "canary"}); got != 20 {
		t.Errorf("penstock_split_requests_total{arm=canary} = %v, want 20", got)
	}
	if got := seriesValue(t, o.reg, "penstock_split_requests_total", map[string]string{"route": "m", "arm": "stable"}); got != 60 {
		t.Errorf("penstock_split_requests_total{arm=stable} = %v, want 60", got)
	}
	arms := map[string]int{}
	for _, l := range o.lines(t) {
		arm, _ := l["arm"].(string)
		arms[arm]++
	}
	if arms["canary"] != 20 || arms["stable"] != 60 {
		t.Errorf("access log arms %v, want canary 20 and stable 60", arms)
	}
}

// TestSplitForceCookie forces an arm with a cookie whose values are the
// arms' names.
func TestSplitForceCookie(t *testing.T) {
	stable, canary := newRecorder(t, "stable"), newRecorder(t, "canary")
	g := startGateway(t, splitConfig(stable, canary, `      force: {cookie: arm}
      arms:
        - {name: stable, upstream: stable, weight: 1}
        - {name: canary, upstream: canary}
`))
	_, body := do(t, client, "GET", baseURL(g, "main")+"/m", map[string]string{"Cookie": "session=x; arm=canary"}, nil)
	if got := decodeSeen(t, body).Upstream; got != "canary" {
		t.Errorf("served by %q, want canary", got)
	}
}

// TestSplitTraceIDSticks sends 10k requests carrying 200 trace ids through
// a 50/50 split by trace id, then reloads the config and sends them again:
// each trace id gets one arm, the same before and after the reload, and it
// is the arm split.Selector computes from the bits the trace sampler
// decides from.
func TestSplitTraceIDSticks(t *testing.T) {
	stable, canary := newRecorder(t, "stable"), newRecorder(t, "canary")
	text := splitConfig(stable, canary, `      by: trace_id
      arms:
        - {name: stable, upstream: stable, weight: 50}
        - {name: canary, upstream: canary, weight: 50}
`)
	g := startGateway(t, text)
	const traces, perTrace = 200, 25
	r := rand.New(rand.NewPCG(7, 7))
	ids := make([][16]byte, traces)
	sel := split.NewSelector([]string{"stable", "canary"}, []float64{50, 50})
	want := make([]string, traces)
	for i := range ids {
		for j := range ids[i] {
			ids[i][j] = byte(r.Uint32())
		}
		want[i] = [...]string{"stable", "canary"}[sel.Hash(split.TraceHash(ids[i]))]
	}
	send := func(round string) {
		// 8 workers, each with its own trace ids; 5000 requests a round.
		var wg sync.WaitGroup
		errs := make(chan string, 8)
		for w := range 8 {
			wg.Go(func() {
				for i := w; i < traces; i += 8 {
					tp := "00-" + hex.EncodeToString(ids[i][:]) + "-00f067aa0ba902b7-01"
					for range perTrace {
						req, _ := http.NewRequest("GET", baseURL(g, "main")+"/m", nil)
						req.Header.Set("Traceparent", tp)
						resp, err := client.Do(req)
						if err != nil {
							errs <- err.Error()
							return
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if got := resp.Header.Get("X-Penstock-Arm"); got != want[i] {
							errs <- fmt.Sprintf("%s: trace %d got arm %q, want %q", round, i, got, want[i])
							return
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	}
	send("before the reload")
	// A reload that changes something else: the split's arms stay put.
	cfg := mustConfig(t, strings.Replace(text, "routes:", "routes:\n  - {name: other, match: {path: /other}, upstream: stable}", 1))
	cfg.SetDefaults()
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	send("after the reload")
	n := stable.count.Load() + canary.count.Load()
	if n != 2*traces*perTrace {
		t.Errorf("upstreams saw %d requests, want %d", n, 2*traces*perTrace)
	}
	if stable.count.Load() == 0 || canary.count.Load() == 0 {
		t.Errorf("one arm got nothing: stable %d, canary %d", stable.count.Load(), canary.count.Load())
	}
}

// TestSplitMirrorNeverDelaysClient mirrors every request to a shadow that
// takes 1 s to answer: each client request is answered by the primary
// arm, in far less than the shadow's second; copies beyond the mirror's
// queue are dropped and counted; a request body within max_body reaches
// the shadow too, and a longer one is not copied.
func TestSplitMirrorNeverDelaysClient(t *testing.T) {
	stable, canary := newRecorder(t, "stable"), newRecorder(t, "canary")
	var shadowMu sync.Mutex
	shadowSeen := 0
	var shadowBodies []string
	shadow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		shadowMu.Lock()
		shadowSeen++
		if len(b) > 0 {
			shadowBodies = append(shadowBodies, r.Method+" "+string(b))
		}
		shadowMu.Unlock()
		time.Sleep(time.Second)
		w.Write([]byte("shadow"))
	}))
	text := strings.Replace(splitConfig(stable, canary, fmt.Sprintf(`      mirror: {upstream: shadow, percent: 100, max_queue: 4, max_body: 16}
      arms:
        - {name: stable, upstream: stable, weight: 100}
        - {name: canary, upstream: canary, weight: 0}
`)), "upstreams:\n", fmt.Sprintf("upstreams:\n  - {name: shadow, endpoints: [{address: %s}]}\n", shadow), 1)
	o := startObserved(t, text)
	url := baseURL(o.g, "main") + "/m"
	const n = 20
	var slowest time.Duration
	for range n {
		start := time.Now()
		resp, body := do(t, client, "GET", url, nil, nil)
		d := time.Since(start)
		slowest = max(slowest, d)
		if resp.StatusCode != 200 || decodeSeen(t, body).Upstream != "stable" {
			t.Fatalf("got %d %q, want the primary's answer", resp.StatusCode, body)
		}
	}
	// The shadow answers after 1 s; a client that waited for it would take
	// at least that. 500 ms leaves a noisy machine room.
	if slowest >= 500*time.Millisecond {
		t.Errorf("slowest client request took %v; the mirror must not delay it", slowest)
	}
	t.Logf("slowest of %d client requests: %v", n, slowest)
	labels := func(result string) map[string]string { return map[string]string{"route": "m", "result": result} }
	series := func() (copied, dropped, skipped float64) {
		return seriesValue(t, o.reg, "penstock_split_mirror_requests_total", labels("copied")),
			seriesValue(t, o.reg, "penstock_split_mirror_requests_total", labels("dropped")),
			seriesValue(t, o.reg, "penstock_split_mirror_requests_total", labels("skipped"))
	}
	copied, dropped, _ := series()
	if copied+dropped != n || copied < 1 || copied > n {
		t.Errorf("mirror: copied %v, dropped %v; want copied+dropped = %d", copied, dropped, n)
	}
	if dropped == 0 {
		// 20 requests in far less than a second against 4 slots held for
		// a second each.
		t.Errorf("no copy dropped; the queue of 4 should have been full")
	}
	// Every copied request reaches the shadow (within its timeout), and
	// the queue empties.
	waitShadow := func(want float64) {
		deadline := time.Now().Add(5 * time.Second)
		for {
			shadowMu.Lock()
			got := shadowSeen
			shadowMu.Unlock()
			if float64(got) == want || time.Now().After(deadline) {
				if float64(got) != want {
					t.Errorf("shadow saw %d copies, want %v", got, want)
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitShadow(copied)
	time.Sleep(1200 * time.Millisecond) // the last copies' answers
	for _, payload := range []string{"payload", "a payload longer than sixteen bytes"} {
		start := time.Now()
		_, body := do(t, client, "POST", url, nil, strings.NewReader(payload))
		if s := decodeSeen(t, body); s.Upstream != "stable" || s.Body != payload {
			t.Errorf("POST: got %+v, want the body at the primary", s)
		}
		if d := time.Since(start); d >= 500*time.Millisecond {
			t.Errorf("POST with a mirrored body took %v; the mirror must not delay it", d)
		}
	}
	waitShadow(copied + 1)
	shadowMu.Lock()
	if len(shadowBodies) != 1 || shadowBodies[0] != "POST payload" {
		t.Errorf("shadow got bodies %q, want the one within max_body", shadowBodies)
	}
	shadowMu.Unlock()
	copied2, dropped2, skipped := series()
	if copied2 != copied+1 || dropped2 != dropped || skipped != 1 {
		t.Errorf("mirror after the POSTs: copied %v, dropped %v, skipped %v; want %v, %v, 1", copied2, dropped2, skipped, copied+1, dropped)
	}
	t.Logf("mirror: %v copied, %v dropped, %v skipped", copied2, dropped2, skipped)
}
