package server_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/tracing/otlptest"
)

// TestReloadRefusesRestartOnlyChanges checks that a reload changing a
// field of config.Static is refused with an error at that field, leaving
// the running configuration in place, while the same reload without the
// change is applied.
func TestReloadRefusesRestartOnlyChanges(t *testing.T) {
	rec := newRecorder(t, "a")
	base := lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, rec.addr())
	tests := []struct {
		name  string
		extra string
		field string
	}{
		{"admin listener added", `admin: {address: "127.0.0.1:0"}`, "admin"},
		{"logging level", `logging: {level: debug}`, "logging"},
		{"metrics buckets", `metrics: {duration_buckets: [0.1, 1]}`, "metrics"},
		{"metrics per host", `metrics: {per_host: true}`, "metrics"},
		{"file watch off", `reload: {watch: false}`, "reload.watch"},
		{"watch debounce", `reload: {debounce: 2s}`, "reload.debounce"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, base)
			running := g.Snapshot()
			err := g.Reload(mustConfig(t, base+tc.extra+"\n"))
			var errs config.Errors
			if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Path != tc.field || !strings.Contains(errs[0].Msg, "restart") {
				t.Fatalf("reload error %v, want one error at %s saying it needs a restart", err, tc.field)
			}
			if g.Generation() != 1 || g.Snapshot() != running {
				t.Errorf("generation %d after a refused reload, want 1 and the same snapshot", g.Generation())
			}
			// A dynamic change beside it is applied once the static one is
			// taken out.
			if err := g.Reload(mustConfig(t, base+"shutdown: {drain_timeout: 5s}\n")); err != nil {
				t.Fatalf("dynamic reload: %v", err)
			}
			if g.Generation() != 2 {
				t.Errorf("generation %d after a dynamic reload, want 2", g.Generation())
			}
		})
	}
}

// TestReloadAppliesTracingChanges checks that tracing.exporter, endpoint
// and service_name take effect on reload: spans of requests served after
// the reload go where the new configuration says, and spans of requests
// served before it are flushed to the old exporter, at the latest when the
// server shuts down.
func TestReloadAppliesTracingChanges(t *testing.T) {
	rec := newRecorder(t, "a")
	base := lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
reload: {stream_grace: 1h}
`, rec.addr())
	first, second := otlptest.NewReceiver(t), otlptest.NewReceiver(t)
	tracing := func(exporter, endpoint, service string) string {
		return lines("tracing: {exporter: %s, endpoint: %q, service_name: %s}\n", exporter, endpoint, service)
	}
	steps := []struct {
		name    string
		tracing string
		recv    *otlptest.Receiver // where the step's spans go, nil: nowhere
		service string
	}{
		{"no exporter", tracing("none", "", "penstock"), nil, ""},
		{"exporter turned on", tracing("otlp_http", first.Endpoint(), "penstock"), first, "penstock"},
		{"service name changed", tracing("otlp_http", first.Endpoint(), "gateway-b"), first, "gateway-b"},
		{"endpoint moved", tracing("otlp_http", second.Endpoint(), "gateway-b"), second, "gateway-b"},
		{"exporter turned off", tracing("none", "", "gateway-b"), nil, ""},
	}
	g := startGateway(t, base+steps[0].tracing)
	want := map[*otlptest.Receiver]map[string]int{first: {}, second: {}}
	for i, st := range steps {
		if i > 0 {
			if err := g.Reload(mustConfig(t, base+st.tracing)); err != nil {
				t.Fatalf("%s: reload: %v", st.name, err)
			}
		}
		do(t, client, "GET", baseURL(g, "main")+"/", map[string]string{
			"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		}, nil)
		if st.recv != nil {
			want[st.recv][st.service] += 2 // a server and a client span
		}
	}
	// The tracers the reloads replaced are flushed and shut down when the
	// previous snapshot retires: here, with a grace of an hour, when the
	// server shuts down, which waits for it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for recv, services := range want {
		got := map[string]int{}
		for _, s := range recv.Spans() {
			got[s.ServiceName]++
		}
		for service, n := range services {
			if got[service] != n {
				t.Errorf("receiver %s: %d spans of service %q, want %d (all: %v)", recv.Endpoint(), got[service], service, n, got)
			}
		}
		if len(got) != len(services) {
			t.Errorf("receiver %s: spans of services %v, want %v", recv.Endpoint(), got, services)
		}
	}
}

// TestReloadMovesAccessLog checks that access_log.output takes effect on
// reload: lines of requests before it are in the old file, lines after it
// in the new one, each line once.
func TestReloadMovesAccessLog(t *testing.T) {
	rec := newRecorder(t, "a")
	dir := t.TempDir()
	oldPath, newPath := filepath.Join(dir, "old.log"), filepath.Join(dir, "new.log")
	base := lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, rec.addr())
	g := startGateway(t, base+lines("access_log: {output: %q}\n", oldPath))
	do(t, client, "GET", baseURL(g, "main")+"/before", nil, nil)
	if err := g.Reload(mustConfig(t, base+lines("access_log: {output: %q, format: logfmt}\n", newPath))); err != nil {
		t.Fatal(err)
	}
	do(t, client, "GET", baseURL(g, "main")+"/after", nil, nil)
	if err := g.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path, want string
	}{
		{oldPath, `"path":"/before"`},
		{newPath, `path=/after`},
	} {
		got := readLines(t, f.path)
		if len(got) != 1 || !strings.Contains(got[0], f.want) {
			t.Errorf("%s: lines %q, want one with %s", filepath.Base(f.path), got, f.want)
		}
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
