package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// assetUpstream serves 8 KiB assets with an ETag, a Cache-Control chosen by
// the "cc" query parameter, honours If-None-Match, and counts requests.
type assetUpstream struct {
	addr     string
	requests atomic.Int64
	revalid  atomic.Int64 // requests answered 304
}

func newAssetUpstream(t *testing.T) *assetUpstream {
	u := &assetUpstream{}
	body := strings.Repeat("m", 8<<10)
	u.addr = newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.requests.Add(1)
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Cache-Control", r.URL.Query().Get("cc"))
		if r.Header.Get("If-None-Match") == `"v1"` {
			u.revalid.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte(body))
	}))
	return u
}

// TestAssetCacheThroughTheGateway drives the cache with a real upstream
// over HTTP/1.1 and HTTP/2 and checks what reaches the upstream, the
// Cache-Status field and the cache metrics.
func TestAssetCacheThroughTheGateway(t *testing.T) {
	up := newAssetUpstream(t)
	o := startObserved(t, lines(`listeners:
  - {name: plain, address: "127.0.0.1:0", protocols: [h1, h2c]}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: assets
    match: {path: "/v1/models/:model/assets/:file"}
    upstream: up
    cache: {enabled: true, max_bytes: 1MiB, max_object_bytes: 64KiB}
`, up.addr))
	base := baseURL(o.g, "plain") + "/v1/models/resnet50/assets/"

	type step struct {
		c           *http.Client
		path        string
		header      map[string]string
		wait        time.Duration
		wantStatus  int
		wantCache   string
		wantUpCount int64
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"second fetch is served by the gateway", []step{
			{c: client, path: "tokenizer.bin?cc=max-age%3D300", wantStatus: 200, wantCache: "penstock; fwd=miss", wantUpCount: 1},
			{c: client, path: "tokenizer.bin?cc=max-age%3D300", wantStatus: 200, wantCache: "penstock; hit", wantUpCount: 1},
			{c: h2cClient(), path: "tokenizer.bin?cc=max-age%3D300", wantStatus: 200, wantCache: "penstock; hit", wantUpCount: 1},
		}},
		{"If-None-Match gets 304 from the gateway", []step{
			{c: client, path: "model_config.json?cc=max-age%3D300", wantStatus: 200, wantCache: "penstock; fwd=miss", wantUpCount: 1},
			{c: client, path: "model_config.json?cc=max-age%3D300", header: map[string]string{"If-None-Match": `"v1"`}, wantStatus: 304, wantCache: "penstock; hit", wantUpCount: 1},
		}},
		{"no-store is not cached", []step{
			{c: client, path: "a.bin?cc=no-store", wantStatus: 200, wantCache: "penstock; fwd=miss", wantUpCount: 1},
			{c: client, path: "a.bin?cc=no-store", wantStatus: 200, wantCache: "penstock; fwd=miss", wantUpCount: 2},
		}},
		{"max-age expiry revalidates with the upstream", []step{
			{c: client, path: "b.bin?cc=max-age%3D1", wantStatus: 200, wantCache: "penstock; fwd=miss", wantUpCount: 1},
			{c: client, path: "b.bin?cc=max-age%3D1", wantStatus: 200, wantCache: "penstock; hit", wantUpCount: 1},
			{c: client, path: "b.bin?cc=max-age%3D1", wait: 1100 * time.Millisecond, wantStatus: 200, wantCache: "penstock; fwd=stale; fwd-status=304", wantUpCount: 2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := up.requests.Load()
			for i, s := range tt.steps {
				time.Sleep(s.wait)
				resp, body := do(t, s.c, "GET", base+s.path, s.header, nil)
				if resp.StatusCode != s.wantStatus {
					t.Errorf("step %d: status %d, want %d", i, resp.StatusCode, s.wantStatus)
				}
				if s.wantStatus == 200 && len(body) != 8<<10 {
					t.Errorf("step %d: body of %d bytes, want %d", i, len(body), 8<<10)
				}
				if got := resp.Header.Get("Cache-Status"); got != s.wantCache {
					t.Errorf("step %d: Cache-Status %q, want %q", i, got, s.wantCache)
				}
				if n := up.requests.Load() - start; n != s.wantUpCount {
					t.Errorf("step %d: upstream saw %d requests, want %d", i, n, s.wantUpCount)
				}
			}
		})
	}

	for _, m := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"penstock_cache_lookups_total", map[string]string{"route": "assets", "result": "hit"}, 4},
		{"penstock_cache_lookups_total", map[string]string{"route": "assets", "result": "miss"}, 5},
		{"penstock_cache_lookups_total", map[string]string{"route": "assets", "result": "revalidated"}, 1},
		{"penstock_cache_entries", map[string]string{"route": "assets"}, 3},
	} {
		if got := seriesValue(t, o.reg, m.name, m.labels); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	if b := seriesValue(t, o.reg, "penstock_cache_size_bytes", map[string]string{"route": "assets"}); b < 3*8<<10 || b > 1<<20 {
		t.Errorf("penstock_cache_size_bytes = %v, want between 3 entries of 8 KiB and 1 MiB", b)
	}
}

// TestAssetCacheConcurrentClients sends many parallel requests for a few
// assets (run with -race): every response is whole and most are hits.
func TestAssetCacheConcurrentClients(t *testing.T) {
	up := newAssetUpstream(t)
	g := startGateway(t, lines(`listeners: [{name: plain, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: assets
    match: {path_prefix: "/assets"}
    upstream: up
    cache: {enabled: true}
`, up.addr))
	var wg sync.WaitGroup
	const workers, perWorker = 8, 50
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				url := fmt.Sprintf("%s/assets/%d?cc=max-age%%3D300", baseURL(g, "plain"), (w+i)%4)
				resp, body := do(t, client, "GET", url, nil, nil)
				if resp.StatusCode != 200 || len(body) != 8<<10 {
					t.Errorf("GET %s: %d with %d bytes", url, resp.StatusCode, len(body))
					return
				}
			}
		}()
	}
	wg.Wait()
	// Concurrent first requests may all miss; after that, all are hits.
	if n := up.requests.Load(); n > 4*workers {
		t.Errorf("upstream saw %d of %d requests for 4 assets", n, workers*perWorker)
	}
}
