package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
)

func runCLI(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// TestCLI checks the exit codes and output of each subcommand.
func TestCLI(t *testing.T) {
	dir := t.TempDir()
	valid := filepath.Join(dir, "valid.yaml")
	os.WriteFile(valid, []byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: r, match: {path: /}, upstream: up}]
`), 0o600)
	invalid := filepath.Join(dir, "invalid.yaml")
	os.WriteFile(invalid, []byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes:
  - {name: a, match: {path: "/x/:id"}, upstream: up}
  - {name: b, match: {path: "/x/:name"}, upstream: up, retries: 3}
`), 0o600)

	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string
		stderr     []string
		noStderrOf string
	}{
		{name: "no command prints usage", args: nil, code: 2, stderr: []string{"Usage: penstock <command>"}},
		{name: "help", args: []string{"--help"}, code: 0, stderr: []string{"serve", "validate", "version"}},
		{name: "unknown command", args: []string{"frobnicate"}, code: 2, stderr: []string{`unknown command "frobnicate"`}},
		{name: "version", args: []string{"version"}, code: 0, stdout: "penstock "},
		{name: "validate ok", args: []string{"validate", "-c", valid}, code: 0, stdout: "ok (1 listeners, 1 upstreams, 1 routes)"},
		{name: "validate lists every error with lines", args: []string{"validate", "-c", invalid}, code: 1, stderr: []string{
			"routes[1].retries (line 5): unknown field",
			`routes[1].match (line 5): routes "a" and "b" conflict`,
			"2 error(s)",
		}},
		{name: "validate missing file", args: []string{"validate", "-c", filepath.Join(dir, "nope.yaml")}, code: 1, stderr: []string{"no such file"}},
		{name: "validate without -c", args: []string{"validate"}, code: 2, stderr: []string{"-c FILE is required"}},
		{name: "serve with an invalid file refuses to start", args: []string{"serve", "-c", invalid}, code: 1, stderr: []string{"routes[1].retries (line 5)"}},
		{name: "bad flag", args: []string{"serve", "--nope"}, code: 2, stderr: []string{"flag provided but not defined"}},
		{name: "config without a name", args: []string{"config"}, code: 2, stderr: []string{"penstock config demo"}},
		{name: "config unknown name", args: []string{"config", "prod"}, code: 2, stderr: []string{`unknown configuration "prod"`}},
	}
	for _, sub := range []string{"serve", "validate", "config", "demo-backend", "upgrade", "version"} {
		tests = append(tests, struct {
			name       string
			args       []string
			code       int
			stdout     string
			stderr     []string
			noStderrOf string
		}{name: sub + " --help", args: []string{sub, "--help"}, code: 0, stderr: []string{"Usage: penstock " + sub}})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCLI(tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(out, tc.stdout) {
				t.Errorf("stdout %q lacks %q", out, tc.stdout)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errOut, s) {
					t.Errorf("stderr lacks %q:\n%s", s, errOut)
				}
			}
		})
	}
}

// TestConfigDemoIsAValidConfig checks that what `penstock config demo`
// prints is a configuration penstock accepts.
func TestConfigDemoIsAValidConfig(t *testing.T) {
	code, out, errOut := runCLI("config", "demo")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	cfg, err := config.Check([]byte(out), "demo.yaml")
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		t.Fatalf("printed demo config is invalid: %v", err)
	}
	if len(cfg.Routes) == 0 {
		t.Error("demo config has no routes")
	}
}
