package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/penstock-dev/penstock/internal/admin"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
)

// TestLimitsView checks GET /limits: each limit's settings and its hottest
// keys, most refused first.
func TestLimitsView(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer up.Close()
	cfg, err := config.Parse([]byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "`+up.Listener.Addr().String()+`"}]}]
routes: [{name: r, match: {path: /}, upstream: up, limits: [tenant]}]
access_log: {enabled: false}
limits:
  - {name: tenant, algorithm: token_bucket, rate: 0.001, burst: 2, key: {from: header, name: X-Tenant}}
  - {name: unused, algorithm: sliding_window, count: 5, window: 1m}
`), "admin.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	for _, tenant := range []string{"a", "a", "a", "a", "b", "b", "b", "c"} {
		req, _ := http.NewRequest("GET", "http://"+g.Addr("main").String()+"/", nil)
		req.Header.Set("X-Tenant", tenant)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	srv := httptest.NewServer(admin.Handler(admin.Options{Gateway: g}))
	defer srv.Close()
	status, body := call(t, "GET", srv.URL+"/limits?top=2", "")
	if status != 200 {
		t.Fatalf("status %d: %s", status, body)
	}
	var got struct {
		Limits []struct {
			Name    string `json:"name"`
			Key     string `json:"key"`
			Burst   int64  `json:"burst"`
			Keys    int    `json:"keys"`
			Hottest []struct {
				Key     string `json:"key"`
				Used    int64  `json:"used"`
				Refused int64  `json:"refused"`
			} `json:"hottest"`
		} `json:"limits"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	// Only limits a route applies have state.
	if len(got.Limits) != 1 {
		t.Fatalf("limits %+v, want only tenant", got.Limits)
	}
	l := got.Limits[0]
	if l.Name != "tenant" || l.Key != "header:X-Tenant" || l.Burst != 2 || l.Keys != 3 || len(l.Hottest) != 2 {
		t.Fatalf("limit %+v", l)
	}
	if h := l.Hottest; h[0].Key != "a" || h[0].Refused != 2 || h[0].Used != 2 || h[1].Key != "b" || h[1].Refused != 1 {
		t.Errorf("hottest %+v, want a (2 refused) then b (1)", h)
	}
	if status, _ := call(t, "GET", srv.URL+"/limits?top=x", ""); status != 400 {
		t.Errorf("top=x: status %d, want 400", status)
	}
}
