package snapshot_test

import (
	"slices"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// TestRecompileTakesOverWhatDidNotChange checks what a snapshot compiled
// against the previous one shares with it, and so what retiring the
// previous one leaves to end: pools by upstream configuration, the tracer
// by exporter, the access log output by output settings.
func TestRecompileTakesOverWhatDidNotChange(t *testing.T) {
	const listeners = `listeners: [{name: main, address: "127.0.0.1:0"}]
routes: [{name: r, match: {path: /}, upstream: a}]
`
	const upstreams = `upstreams:
  - {name: a, endpoints: [{address: "127.0.0.1:9"}]}
  - {name: b, endpoints: [{address: "127.0.0.1:10"}]}
`
	const accessLog = "access_log: {output: stderr}\n"
	tests := []struct {
		name       string
		next       string
		samePools  []string
		sameTracer bool
		sameLog    bool
	}{
		{"nothing changed", upstreams + accessLog, []string{"a", "b"}, true, true},
		{"sampling changed only", upstreams + "tracing: {sample_ratio: 0.5}\naccess_log: {output: stderr, sampling: [{drop: true}]}\n",
			[]string{"a", "b"}, true, true},
		{"one upstream changed", `upstreams:
  - {name: a, endpoints: [{address: "127.0.0.1:9"}]}
  - {name: b, endpoints: [{address: "127.0.0.1:11"}]}
` + accessLog, []string{"a"}, true, true},
		{"exporter changed", upstreams + accessLog + "tracing: {exporter: stdout}\n", []string{"a", "b"}, false, true},
		{"access log format changed", upstreams + "access_log: {output: stderr, format: logfmt}\n", []string{"a", "b"}, true, false},
	}
	tel := &snapshot.Telemetry{Metrics: metrics.New(config.Metrics{}, nil)}
	compile := func(t *testing.T, text string, prev *snapshot.Snapshot) *snapshot.Snapshot {
		t.Helper()
		cfg, err := config.Parse([]byte(listeners+text), "c.yaml")
		if err != nil {
			t.Fatal(err)
		}
		s, err := snapshot.Compile(cfg, snapshot.Env{Prev: prev, Telemetry: tel})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			prev := compile(t, upstreams+accessLog, nil)
			next := compile(t, tc.next, prev)
			defer next.Close()
			for _, name := range []string{"a", "b"} {
				if shared, want := prev.Pools[name] == next.Pools[name], slices.Contains(tc.samePools, name); shared != want {
					t.Errorf("pool %s shared = %v, want %v", name, shared, want)
				}
			}
			if shared := prev.Tracer == next.Tracer; shared != tc.sameTracer {
				t.Errorf("tracer shared = %v, want %v", shared, tc.sameTracer)
			}
			if shared := prev.AccessLog.SameOutput(next.AccessLog); shared != tc.sameLog {
				t.Errorf("access log output shared = %v, want %v", shared, tc.sameLog)
			}
			// Retiring the previous snapshot leaves something to end only
			// when the new one did not take everything over.
			end := prev.Retire(next)
			if leaves, want := end != nil, len(tc.samePools) < 2 || !tc.sameTracer || !tc.sameLog; leaves != want {
				t.Errorf("Retire leaves an end: %v, want %v", leaves, want)
			}
			if end != nil {
				end()
			}
		})
	}
}
