package snapshot_test

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// checkers counts the running active health check goroutines.
func checkers() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "upstream.(*Pool).checkLoop")
}

// waitCheckers waits until exactly n checkers run.
func waitCheckers(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for checkers() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d health checkers running, want %d", checkers(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Health checkers run only while a snapshot serves: compiling to check a
// config starts none, a reload that keeps the pool keeps its checkers and
// their state, and retiring the pool stops them.
func TestHealthCheckersFollowThePool(t *testing.T) {
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer up.Close()
	text := func(interval string) string {
		return `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: models
    endpoints: [{address: "` + up.Listener.Addr().String() + `"}, {address: "127.0.0.1:9"}]
    health_check: {path: /health, interval: ` + interval + `, rise: 1, fall: 1}
routes: [{name: all, match: {path_prefix: /}, upstream: models}]
`
	}
	compile := func(t *testing.T, text string, env snapshot.Env) *snapshot.Snapshot {
		t.Helper()
		cfg, err := config.Parse([]byte(text), "h.yaml")
		if err != nil {
			t.Fatal(err)
		}
		cfg.SetDefaults()
		s, err := snapshot.Compile(cfg, env)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := checkers()

	check := compile(t, text("20ms"), snapshot.Env{})
	time.Sleep(100 * time.Millisecond)
	if n := checkers(); n != before || hits.Load() != 0 {
		t.Fatalf("a config compiled only to check it runs %d checkers and sent %d checks", n-before, hits.Load())
	}
	check.Close()

	tel := &snapshot.Telemetry{Metrics: metrics.New(config.Metrics{}, nil)}
	first := compile(t, text("20ms"), snapshot.Env{Telemetry: tel})
	waitCheckers(t, before+2)
	e := first.Pools["models"].Endpoints[0]
	deadline := time.Now().Add(15 * time.Second)
	for e.State().Protection.Health.Up {
		if time.Now().After(deadline) {
			t.Fatal("the failing endpoint never went down")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Same pool: kept, with its checkers and state.
	second := compile(t, text("20ms")+"reload: {stream_grace: 1s}\n", snapshot.Env{Prev: first, Telemetry: tel})
	if first.Pools["models"] != second.Pools["models"] {
		t.Fatal("a reload that keeps the upstream replaced its pool")
	}
	if end := first.Retire(second); end != nil {
		end()
	}
	waitCheckers(t, before+2)
	if e.State().Protection.Health.Up {
		t.Fatal("the kept pool lost its health state")
	}

	// Changed pool: the old checkers stop, the new pool's start.
	third := compile(t, text("30ms"), snapshot.Env{Prev: second, Telemetry: tel})
	if end := second.Retire(third); end != nil {
		end()
	}
	waitCheckers(t, before+2)
	third.Close()
	waitCheckers(t, before)
}
