package acceptance

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rolloutDoc is a fleet's configuration with one rollout: the route
// generate splits between v1 (the baseline) and v2, in 2 s windows of
// 100 ms sub-windows, judged on errors only, with min_requests above what
// one node's canary gets in a window at the first step and below what the
// three nodes' get together.
func rolloutDoc(v1, v2 string) string {
	return fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0", protocols: [h1]}]
admin: {address: "127.0.0.1:0", token: fleet-token}
upstreams:
  - {name: v1, endpoints: [{address: %q}]}
  - {name: v2, endpoints: [{address: %q}]}
routes:
  - name: generate
    match: {path: /generate}
    upstream: v1
    split:
      by: weight
      arms:
        - {name: v1, upstream: v1, weight: 100}
        - {name: v2, upstream: v2}
      rollout:
        steps: [{weight: 20}, {weight: 50}, {weight: 100}]
        window: 2s
        slot: 100ms
        slo: {max_error_rate_increase: 0.02}
        analysis: {min_requests: 150, resamples: 100}
logging: {format: text}
`, v1, v2)
}

// rolloutView is the part of GET /rollouts/generate the test reads.
type rolloutView struct {
	Phase  string `json:"phase"`
	Step   int    `json:"step"`
	Weight int    `json:"weight"`
	Fleet  *struct {
		Revision  int64  `json:"revision"`
		Leader    string `json:"leader"`
		Leading   bool   `json:"leading"`
		Connected bool   `json:"connected"`
		Merged    int    `json:"merged_nodes"`
	} `json:"fleet"`
	State struct {
		Last *struct {
			Outcome string `json:"outcome"`
			Reason  string `json:"reason"`
			Canary  struct {
				Requests int64 `json:"requests"`
			} `json:"canary"`
		} `json:"last"`
	} `json:"state"`
}

func (n *node) rollout() (rolloutView, error) {
	var v rolloutView
	resp, err := nodeClient.Get("http://" + n.adminAddr + "/rollouts/generate")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return v, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return v, json.NewDecoder(resp.Body).Decode(&v)
}

func (n *node) act(action, reason string) (int, string) {
	body, _ := json.Marshal(map[string]string{"reason": reason})
	req, _ := http.NewRequest("POST", "http://"+n.adminAddr+"/rollouts/generate/"+action, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer fleet-token")
	resp, err := nodeClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// fleetAgrees reports whether every node shows phase at one weight and one
// state revision.
func fleetAgrees(nodes []*node, phase string) (bool, string) {
	var views []string
	ok := true
	var first *rolloutView
	for _, n := range nodes {
		v, err := n.rollout()
		if err != nil {
			return false, err.Error()
		}
		views = append(views, fmt.Sprintf("%s: %s step %d weight %d fleet %+v", n.id, v.Phase, v.Step, v.Weight, v.Fleet))
		if v.Fleet == nil || v.Phase != phase {
			ok = false
			continue
		}
		if first == nil {
			first = &v
		} else if v.Weight != first.Weight || v.Fleet.Revision != first.Fleet.Revision {
			ok = false
		}
	}
	return ok, strings.Join(views, "\n  ")
}

// TestFleetRolloutAcceptance runs a rollout on three penstock processes
// sharing it through one etcd, with load through all three: a canary that
// fails 10 % of its requests is rolled back on every node, judged on the
// three nodes' merged figures; an operator's pause on one node's admin API
// pauses the next rollout on all three.
func TestFleetRolloutAcceptance(t *testing.T) {
	e := needEtcd(t)
	url := e.URL("/rollouts")
	bin := buildPenstock(t)
	dir := t.TempDir()
	var canaryFails atomic.Bool
	canaryFails.Store(true)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(1, 2))
	serve := func(fail func() bool) string {
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if fail() {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			io.WriteString(w, "ok")
		})}
		ln := listenLoopback(t)
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	v1 := serve(func() bool { return false })
	v2 := serve(func() bool {
		mu.Lock()
		defer mu.Unlock()
		return canaryFails.Load() && rng.Float64() < 0.10
	})
	pushFile(t, bin, dir, url, rolloutDoc(v1, v2))
	nodes := []*node{
		startNode(t, bin, url, dir, "node-1", 0),
		startNode(t, bin, url, dir, "node-2", 0),
		startNode(t, bin, url, dir, "node-3", 0),
	}

	// Load through all three: 150 requests/s to each, bounded by count
	// and by the test's end.
	stop := make(chan struct{})
	var loadWG sync.WaitGroup
	var sent atomic.Int64
	defer func() { close(stop); loadWG.Wait() }()
	for _, n := range nodes {
		loadWG.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < 60_000; {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				var wg sync.WaitGroup
				for range 3 {
					wg.Go(func() { n.status("/generate"); sent.Add(1) })
				}
				wg.Wait()
				i += 3
			}
		})
	}

	start := time.Now()
	var views string
	if !waitFor(40*time.Second, func() (ok bool) { ok, views = fleetAgrees(nodes, "rolled_back"); return ok }) {
		t.Fatalf("the bad canary was not rolled back on every node after %s:\n  %s", time.Since(start).Round(time.Millisecond), views)
	}
	t.Logf("rolled back on every node %s after the start, %d requests sent:\n  %s", time.Since(start).Round(time.Millisecond), sent.Load(), views)
	leaders, merged := map[string]bool{}, 0
	for _, n := range nodes {
		v, _ := n.rollout()
		leaders[v.Fleet.Leader] = true
		if v.Weight != 0 {
			t.Errorf("%s: weight %d after the rollback", n.id, v.Weight)
		}
		if v.Fleet.Leading {
			merged = v.Fleet.Merged
		}
		if v.State.Last == nil || v.State.Last.Outcome != "fail" || v.State.Last.Canary.Requests < 150 {
			t.Errorf("%s: last verdict %+v, want a failure on the fleet's merged figures", n.id, v.State.Last)
		}
	}
	if len(leaders) != 1 || merged != 3 {
		t.Errorf("leaders seen %v, merged %d nodes' observations: want one leader merging three", leaders, merged)
	}
	for _, name := range []string{"penstock_rollout_fleet_leader", "penstock_rollout_fleet_observations_published_total", "penstock_rollout_fleet_state_revision"} {
		if nodes[0].metric(name+`{route="generate"}`) == "" {
			t.Errorf("metric %s missing on %s", name, nodes[0].id)
		}
	}

	// A healthy canary in a new rollout (a new configuration: a new
	// definition starts anew), paused from one node's admin API.
	canaryFails.Store(false)
	pushFile(t, bin, dir, url, strings.Replace(rolloutDoc(v1, v2), "{weight: 50}", "{weight: 40}", 1))
	if !waitFor(20*time.Second, func() (ok bool) { ok, views = fleetAgrees(nodes, "progressing"); return ok }) {
		t.Fatalf("the new rollout does not run on every node:\n  %s", views)
	}
	if code, body := nodes[1].act("pause", "waiting for the on-call"); code != 200 {
		t.Fatalf("pause on %s: %d %s", nodes[1].id, code, body)
	}
	if !waitFor(10*time.Second, func() (ok bool) { ok, views = fleetAgrees(nodes, "paused"); return ok }) {
		t.Fatalf("the pause on one node did not reach the fleet:\n  %s", views)
	}
	if code, _ := nodes[2].act("pause", ""); code != http.StatusConflict {
		t.Errorf("pausing the paused rollout on another node: %d, want 409", code)
	}
	if code, body := nodes[0].act("promote", ""); code != 200 {
		t.Fatalf("promote on %s: %d %s", nodes[0].id, code, body)
	}
	if !waitFor(10*time.Second, func() (ok bool) { ok, views = fleetAgrees(nodes, "promoted"); return ok }) {
		t.Fatalf("the promotion on one node did not reach the fleet:\n  %s", views)
	}
}
