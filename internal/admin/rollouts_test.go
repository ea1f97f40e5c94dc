package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/admin"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
)

// TestRolloutsAPI checks GET /rollouts, GET /rollouts/NAME, the
// token-protected actions and their refusals, and GET /mirrors.
func TestRolloutsAPI(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer up.Close()
	addr := up.Listener.Addr().String()
	cfg, err := config.Parse([]byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: v1, endpoints: [{address: "`+addr+`"}]}
  - {name: v2, endpoints: [{address: "`+addr+`"}]}
  - {name: shadow, endpoints: [{address: "`+addr+`"}]}
routes:
  - name: predict
    match: {path: /}
    upstream: v1
    split:
      arms: [{name: stable, upstream: v1, weight: 100}, {name: canary, upstream: v2}]
      mirror: {upstream: shadow}
      rollout: {steps: [{weight: 10}, {weight: 100}], window: 1h, slot: 1m, state_file: `+filepath.Join(t.TempDir(), "s.json")+`}
access_log: {enabled: false}
`), "admin.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	for range 5 {
		resp, err := http.Get("http://" + g.Addr("main").String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	srv := httptest.NewServer(admin.Handler(admin.Options{Gateway: g, Token: secret}))
	defer srv.Close()

	tests := []struct {
		name   string
		method string
		path   string
		token  string
		status int
		want   string // a substring of the body
	}{
		{"list", "GET", "/rollouts", "", 200, `"phase": "progressing"`},
		{"one", "GET", "/rollouts/predict", "", 200, `"canary": "canary"`},
		{"one shows the live figures", "GET", "/rollouts/predict", "", 200, `"live"`},
		{"unknown route", "GET", "/rollouts/nope", "", 404, `"rollouts": [`},
		{"action without token", "POST", "/rollouts/predict/pause", "", 401, "bearer token"},
		{"pause", "POST", "/rollouts/predict/pause", secret, 200, `"phase": "paused"`},
		{"pause twice", "POST", "/rollouts/predict/pause", secret, 409, "rollout is paused"},
		{"unknown action", "POST", "/rollouts/predict/reboot", secret, 404, `unknown action \"reboot\"`},
		{"resume", "POST", "/rollouts/predict/resume", secret, 200, `"phase": "progressing"`},
		{"abort", "POST", "/rollouts/predict/abort", secret, 200, `"weight": 0`},
		{"promote after abort", "POST", "/rollouts/predict/promote", secret, 409, "rollout is aborted"},
		{"history", "GET", "/rollouts/predict", "", 200, `"kind": "aborted"`},
		{"mirrors", "GET", "/mirrors", "", 200, `"upstream": "shadow"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, body := call(t, tc.method, srv.URL+tc.path, tc.token)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("status %d, want %d with %q: %s", status, tc.status, tc.want, body)
			}
			if status == 200 && !json.Valid([]byte(body)) {
				t.Fatalf("invalid JSON: %s", body)
			}
		})
	}
}
