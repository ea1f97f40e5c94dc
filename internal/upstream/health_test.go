package upstream_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// waitUntil polls cond every 10ms until it holds or a generous deadline
// passes: the checks run on their own timers, and a loaded machine may
// delay them a lot.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// toggled serves /health with 200 while ok holds, 503 otherwise, and
// counts every request.
func toggled(ok *atomic.Bool, hits *atomic.Int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/health" || r.Host != "health.internal" || !ok.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte(`{"status":"ready"}`))
	})
}

// checkerRunning reports whether any health checker goroutine is alive.
func checkerRunning() bool {
	buf := make([]byte, 1<<20)
	return strings.Contains(string(buf[:runtime.Stack(buf, true)]), "upstream.(*Pool).checkLoop")
}

func TestActiveHealthTakesOutAndBringsBack(t *testing.T) {
	tests := []struct {
		name string
		hc   config.HealthCheck
	}{
		{"http status and body", config.HealthCheck{Path: "/health", Host: "health.internal", BodyRegex: `"ready"`}},
		{"http expected statuses", config.HealthCheck{Path: "/health", Host: "health.internal", ExpectedStatuses: []int{200}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var okA, okB atomic.Bool
			var hitsA, hitsB atomic.Int64
			okA.Store(true)
			okB.Store(true)
			a := httptest.NewServer(toggled(&okA, &hitsA))
			defer a.Close()
			b := httptest.NewServer(toggled(&okB, &hitsB))
			defer b.Close()
			hc := tt.hc
			hc.Interval, hc.Timeout = config.Duration(20*time.Millisecond), config.Duration(time.Second)
			hc.Rise, hc.Fall = 2, 2
			cfg := &config.Config{Upstreams: []config.Upstream{{Name: "models", HealthCheck: &hc,
				Endpoints: []config.Endpoint{{Address: a.Listener.Addr().String()}, {Address: b.Listener.Addr().String()}}}}}
			cfg.SetDefaults()
			p, err := upstream.NewPool(&cfg.Upstreams[0])
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ea := p.Endpoints[0]
			up := func() bool { return ea.State().Protection.Health.Up }

			p.Start(nil)
			waitUntil(t, "A was checked", func() bool { return hitsA.Load() >= 2 })
			if !up() {
				t.Fatal("A is down though its checks pass")
			}
			okA.Store(false)
			waitUntil(t, "A's checks take it out", func() bool { return !up() })
			last := ea.State().Protection.Health.Last
			if last == nil || last.Passed || last.Status != 503 || !strings.Contains(last.Error, "503") {
				t.Fatalf("last check %+v, want a failed 503", last)
			}
			for range 20 {
				if e := p.Pick(time.Now().UnixNano()); e != p.Endpoints[1] {
					t.Fatalf("picked %v while A is down", e.Address)
				}
			}
			okA.Store(true)
			waitUntil(t, "A's checks bring it back", up)
			if !ea.Available(time.Now().UnixNano()) {
				t.Fatal("A is up but not available")
			}
			p.Close()
			waitUntil(t, "the checkers stop", func() bool { return !checkerRunning() })
			n := hitsA.Load()
			time.Sleep(100 * time.Millisecond)
			if hitsA.Load() != n {
				t.Fatal("A is still checked after Close")
			}
		})
	}
}

func TestTCPHealthCheck(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cfg := &config.Config{Upstreams: []config.Upstream{{Name: "tcp",
		HealthCheck: &config.HealthCheck{Type: "tcp", Interval: config.Duration(20 * time.Millisecond), Rise: 1, Fall: 1},
		Endpoints:   []config.Endpoint{{Address: addr}, {Address: "127.0.0.1:1"}}}}}
	cfg.SetDefaults()
	p, err := upstream.NewPool(&cfg.Upstreams[0])
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Start(nil)
	waitUntil(t, "the closed port is out", func() bool { return !p.Endpoints[1].State().Protection.Health.Up })
	if !p.Endpoints[0].State().Protection.Health.Up {
		t.Fatal("the listening endpoint is down")
	}
	ln.Close()
	waitUntil(t, "the endpoint whose listener closed is out", func() bool { return !p.Endpoints[0].State().Protection.Health.Up })
}
