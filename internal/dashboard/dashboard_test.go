package dashboard_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/admin"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/dashboard"
	"github.com/penstock-dev/penstock/internal/server"
)

const smallConfig = `
listeners: [{name: http, address: "127.0.0.1:0"}]
upstreams: [{name: models, endpoints: [{address: "127.0.0.1:9"}]}]
routes:
  - {name: a, match: {path: /a}, upstream: models}
  - {name: b, match: {path_prefix: /b, methods: [GET]}, upstream: models}
access_log: {enabled: false}
shutdown: {idle_grace: 100ms, drain_timeout: 2s}
`

// gateway compiles yamlText into a server that is not listening (the
// dashboard reads only its snapshot) and a fresh registry for its metrics.
func gateway(t testing.TB, yamlText string) (*server.Server, *prometheus.Registry) {
	t.Helper()
	cfg, err := config.Parse([]byte(yamlText), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	reg := prometheus.NewRegistry()
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	return g, reg
}

// serve puts the dashboard on an admin API served on loopback.
func serve(t *testing.T, o admin.Options, d *dashboard.Dashboard) string {
	t.Helper()
	o.Dashboard = d
	srv := httptest.NewServer(admin.Handler(o))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { d.Close() })
	return srv.URL
}

func get(t *testing.T, url, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestAuthentication checks the admin API's rule where it asks a token for
// reads (a listener off loopback): the page's files are served to anyone
// (they hold no data), the data only with the token.
func TestAuthentication(t *testing.T) {
	g, reg := gateway(t, smallConfig)
	base := serve(t, admin.Options{Gateway: g, Gatherer: reg, Token: "s3cret", TokenForReads: true},
		dashboard.New(dashboard.Options{Gateway: g, Gatherer: reg}))
	tests := []struct {
		name, path, token string
		status            int
		contentType       string
	}{
		{name: "page without token", path: "/dashboard", status: 200, contentType: "text/html"},
		{name: "module without token", path: "/dashboard/assets/app.js", status: 200, contentType: "text/javascript"},
		{name: "stylesheet without token", path: "/dashboard/assets/style.css", status: 200, contentType: "text/css"},
		{name: "no such file", path: "/dashboard/assets/nope.js", status: 404},
		{name: "state without token", path: "/dashboard/state", status: 401},
		{name: "state with a wrong token", path: "/dashboard/state", token: "nope", status: 401},
		{name: "events without token", path: "/dashboard/events", status: 401},
		{name: "state with the token", path: "/dashboard/state", token: "s3cret", status: 200, contentType: "application/json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(t, base+tt.path, tt.token)
			if res.StatusCode != tt.status {
				t.Fatalf("GET %s: %d, want %d: %s", tt.path, res.StatusCode, tt.status, body)
			}
			if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, tt.contentType) {
				t.Errorf("Content-Type %q, want %s", ct, tt.contentType)
			}
			if tt.status == 200 && strings.HasPrefix(tt.path, "/dashboard/assets") || tt.path == "/dashboard" {
				if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
					t.Errorf("Content-Security-Policy %q, want scripts from the page's own files only", csp)
				}
			}
		})
	}
}

// TestState checks GET /dashboard/state: the routes in configuration
// order, pools, empty lists rather than nulls, the reload history with a
// refused reload, and the fleet hook.
func TestState(t *testing.T) {
	g, reg := gateway(t, smallConfig)
	fleet := []map[string]any{{"node": "gw-1", "revision": 42}, {"node": "gw-2", "revision": 41}}
	base := serve(t, admin.Options{Gateway: g, Gatherer: reg}, dashboard.New(dashboard.Options{
		Gateway: g, Gatherer: reg, Reloads: g.Reloads, Fleet: func() any { return fleet }}))
	bad, err := config.Parse([]byte(strings.Replace(smallConfig, "upstream: models}\n  - {name: b", "upstream: nowhere}\n  - {name: b", 1)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad.SetDefaults()
	if err := g.Reload(bad); err == nil {
		t.Fatal("a route to an unknown upstream was applied")
	}

	res, body := get(t, base+"/dashboard/state", "")
	if res.StatusCode != 200 {
		t.Fatalf("GET /dashboard/state: %d %s", res.StatusCode, body)
	}
	var st struct {
		Generation uint64            `json:"generation"`
		Routes     []dashboard.Route `json:"routes"`
		Pools      []dashboard.Pool  `json:"pools"`
		Rollouts   []any             `json:"rollouts"`
		Limits     []any             `json:"limits"`
		Reloads    []struct {
			Generation uint64 `json:"generation"`
			Error      string `json:"error"`
		} `json:"reloads"`
		Fleet []map[string]any `json:"fleet"`
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("state is not JSON: %v\n%s", err, body)
	}
	if st.Generation != 1 {
		t.Errorf("generation %d, want 1 (the reload was refused)", st.Generation)
	}
	if len(st.Routes) != 2 || st.Routes[0].Name != "a" || st.Routes[1].Match != "GET /b…" || !st.Routes[0].Tracked {
		t.Errorf("routes %+v, want a then b (GET /b…), tracked", st.Routes)
	}
	if len(st.Pools) != 1 || len(st.Pools[0].Endpoints) != 1 || st.Pools[0].Endpoints[0].Status != "up" {
		t.Errorf("pools %+v, want models with its endpoint up", st.Pools)
	}
	if st.Rollouts == nil || st.Limits == nil {
		t.Errorf("rollouts %v, limits %v: want empty lists, not null", st.Rollouts, st.Limits)
	}
	if len(st.Reloads) != 2 || !strings.Contains(st.Reloads[0].Error, "nowhere") || st.Reloads[0].Generation != 1 ||
		st.Reloads[1].Error != "" {
		t.Errorf("reloads %+v, want the refusal naming the unknown upstream first, then the first load", st.Reloads)
	}
	if len(st.Fleet) != 2 || st.Fleet[0]["node"] != "gw-1" {
		t.Errorf("fleet %v, want what the hook returned", st.Fleet)
	}

	// Without the hooks, their sections are absent or empty.
	g2, reg2 := gateway(t, smallConfig)
	base2 := serve(t, admin.Options{Gateway: g2, Gatherer: reg2}, dashboard.New(dashboard.Options{Gateway: g2, Gatherer: reg2}))
	_, body = get(t, base2+"/dashboard/state", "")
	if strings.Contains(body, `"fleet"`) || !strings.Contains(body, `"reloads": []`) {
		t.Errorf("without hooks the state has a fleet or reloads:\n%s", body)
	}
}

// TestEvents reads the event stream: one JSON State per event, a new one
// each interval, and the stream ends when the dashboard closes.
func TestEvents(t *testing.T) {
	g, reg := gateway(t, smallConfig)
	d := dashboard.New(dashboard.Options{Gateway: g, Gatherer: reg, Interval: 50 * time.Millisecond})
	base := serve(t, admin.Options{Gateway: g, Gatherer: reg}, d)
	res, err := http.Get(base + "/dashboard/events")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	var times []time.Time
	for len(times) < 3 && sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		var st dashboard.State
		if err := json.Unmarshal([]byte(data), &st); err != nil {
			t.Fatalf("event is not a State: %v\n%s", err, data)
		}
		times = append(times, st.Time)
	}
	if len(times) < 3 || !times[1].After(times[0]) || !times[2].After(times[1]) {
		t.Fatalf("events at %v: want three, each newer", times)
	}
	done := make(chan struct{})
	go func() {
		for sc.Scan() {
		}
		close(done)
	}()
	d.Close()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream is still open after Close")
	}
}
