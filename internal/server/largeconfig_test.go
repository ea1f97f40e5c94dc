package server_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// largeConfig is a config with n routes in the shape of a large model
// platform: per-tenant hosts, per-model paths with parameters, prefixes and
// header matchers, over 20 upstreams.
func largeConfig(n int, upstreamAddr string) string {
	var b strings.Builder
	b.WriteString("listeners: [{name: main, address: \"127.0.0.1:0\"}]\nupstreams:\n")
	for u := range 20 {
		fmt.Fprintf(&b, "  - {name: pool%d, endpoints: [{address: %q}]}\n", u, upstreamAddr)
	}
	b.WriteString("routes:\n")
	for i := range n {
		up := i % 20
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "  - {name: r%d, match: {path: \"/v1/models/m%d/versions/:version/predict\", methods: [POST]}, upstream: pool%d}\n", i, i, up)
		case 1:
			fmt.Fprintf(&b, "  - {name: r%d, match: {hosts: [\"t%d.api.example.com\"], path: \"/v1/models/:model/predict\"}, upstream: pool%d}\n", i, i, up)
		case 2:
			fmt.Fprintf(&b, "  - {name: r%d, match: {path_prefix: \"/static/s%d\"}, upstream: pool%d}\n", i, i, up)
		default:
			fmt.Fprintf(&b, "  - {name: r%d, match: {path: \"/v1/tenants/t%d/:resource/*rest\", headers: {X-Tier: gold}}, upstream: pool%d}\n", i, i, up)
		}
	}
	return b.String()
}

// TestReloadLargeConfig reloads a 10,000-route config into a running
// gateway and checks that routing follows it. Its time and the router's
// memory are measured by BenchmarkCompileLargeConfig.
func TestReloadLargeConfig(t *testing.T) {
	rec := newRecorder(t, "up")
	g := startGateway(t, largeConfig(4, rec.addr()))
	cfg := mustConfig(t, largeConfig(10_000, rec.addr()))
	start := time.Now()
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	t.Logf("reload of 10,000 routes took %s", time.Since(start))
	if n := g.Snapshot().Router.Len(); n != 10_000 {
		t.Errorf("router has %d routes", n)
	}
	resp, _ := do(t, client, "POST", baseURL(g, "main")+"/v1/models/m9996/versions/3/predict", nil, nil)
	if resp.StatusCode != 200 {
		t.Errorf("route from the large config: status %d", resp.StatusCode)
	}
	resp, _ = do(t, client, "GET", baseURL(g, "main")+"/v1/tenants/t9999/a/b", map[string]string{"X-Tier": "gold"}, nil)
	if resp.StatusCode != 200 {
		t.Errorf("header-matched route from the large config: status %d", resp.StatusCode)
	}
}

// BenchmarkCompileLargeConfig measures what a reload of a 10,000-route
// config costs: decoding and validating the file, and compiling the
// snapshot; it reports the heap the compiled snapshot (router, route chains,
// pools) keeps alive.
func BenchmarkCompileLargeConfig(b *testing.B) {
	text := []byte(largeConfig(10_000, "127.0.0.1:9"))
	b.Run("parse+validate", func(b *testing.B) {
		for b.Loop() {
			if _, err := config.Check(text, "large.yaml"); err != nil {
				b.Fatal(err)
			}
		}
	})
	cfg, err := config.Check(text, "large.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("compile", func(b *testing.B) {
		b.ReportAllocs()
		var s *snapshot.Snapshot
		for b.Loop() {
			s, err = snapshot.Compile(cfg, snapshot.Env{})
			if err != nil {
				b.Fatal(err)
			}
		}
		var before, after runtime.MemStats
		s = nil
		runtime.GC()
		runtime.ReadMemStats(&before)
		s, _ = snapshot.Compile(cfg, snapshot.Env{})
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), "MiB-snapshot")
		runtime.KeepAlive(s)
	})
}
