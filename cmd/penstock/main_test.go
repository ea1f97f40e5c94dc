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
		{name: "--version", args: []string{"--version"}, code: 0, stdout: "penstock "},
		{name: "-version", args: []string{"-version"}, code: 0, stdout: "penstock "},
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

// TestHelpNamesEachFlagsArgument checks every command's --help: the flag
// package takes a back-quoted word in a usage string as the flag's argument
// name, so a quoted command line there printed "-pid-file penstock serve
// -pid-file". Each flag line must be the flag and at most one word.
func TestHelpNamesEachFlagsArgument(t *testing.T) {
	cmds := [][]string{{"bench", "run"}, {"bench", "compare"}, {"bench", "report"}}
	for _, c := range commands() {
		if c.name != "bench" {
			cmds = append(cmds, []string{c.name})
		}
	}
	for _, cmd := range cmds {
		t.Run(strings.Join(cmd, " "), func(t *testing.T) {
			code, _, help := runCLI(append(cmd, "--help")...)
			if code != 0 {
				t.Fatalf("exit code %d:\n%s", code, help)
			}
			for _, line := range strings.Split(help, "\n") {
				// flag.PrintDefaults writes "  -name arg" alone on its line
				// (bench run lays out its own table, in columns).
				if strings.HasPrefix(line, "  -") && !strings.Contains(line, "   ") && len(strings.Fields(line)) > 2 {
					t.Errorf("flag line names more than one argument word: %q", line)
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
