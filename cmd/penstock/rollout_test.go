package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/admin"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
)

// TestRolloutCommand drives penstock rollout against a running gateway's
// admin API: list, show, an action with a reason, and the errors a user
// meets (no token, an unknown route, a phase that refuses the action).
func TestRolloutCommand(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer up.Close()
	addr := up.Listener.Addr().String()
	cfg, err := config.Parse([]byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: v1, endpoints: [{address: "`+addr+`"}]}
  - {name: v2, endpoints: [{address: "`+addr+`"}]}
routes:
  - name: generate
    match: {path: /}
    upstream: v1
    split:
      arms: [{name: models, upstream: v1, weight: 100}, {name: models-v2, upstream: v2}]
      rollout: {steps: [{weight: 20}, {weight: 100}], window: 1h, slot: 1m, state_file: `+filepath.Join(t.TempDir(), "s.json")+`}
access_log: {enabled: false}
`), "cli.yaml")
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
	const token = "cli-test-token"
	srv := httptest.NewServer(admin.Handler(admin.Options{Gateway: g, Token: token, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PENSTOCK_ADMIN_TOKEN", "")

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string // substrings, "|" separated
		stderr string
	}{
		{name: "list", args: []string{"list"}, stdout: "generate  models    models-v2  progressing  1/2   20%"},
		{name: "show", args: []string{"show", "generate"}, stdout: "route generate: models → models-v2, progressing at step 1/2, canary weight 20%|ARM|baseline|started"},
		{name: "action without token", args: []string{"pause", "generate"}, code: 1, stderr: "bearer token"},
		{name: "pause with a reason", args: []string{"-token-file", tokenFile, "pause", "generate", "waiting", "for", "on-call"}, stdout: "paused at step 1/2|paused      step 1, weight 20%: waiting for on-call"},
		{name: "resume twice", args: []string{"-token-file", tokenFile, "resume", "generate"}, stdout: "progressing"},
		{name: "refused by the phase", args: []string{"-token-file", tokenFile, "resume", "generate"}, code: 1, stderr: "rollout is progressing: not allowed in this phase (409 Conflict)"},
		{name: "unknown route", args: []string{"show", "nope"}, code: 1, stderr: `no rollout on a route named "nope"`},
		{name: "json", args: []string{"-json", "list"}, stdout: `"route": "generate"`},
		{name: "no subcommand", args: nil, code: 2, stderr: "name a subcommand"},
		{name: "unknown subcommand", args: []string{"rollback"}, code: 2, stderr: `unknown subcommand "rollback"`},
		{name: "route missing", args: []string{"pause"}, code: 2, stderr: "name the route"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(append([]string{"rollout", "-admin", srv.URL}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for _, want := range strings.Split(tc.stdout, "|") {
				if !strings.Contains(stdout, want) {
					t.Errorf("stdout lacks %q:\n%s", want, stdout)
				}
			}
			if tc.stderr != "" && !strings.Contains(stderr, tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, stderr)
			}
		})
	}
}
