package demo

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCommandFor(t *testing.T) {
	dir := t.TempDir()
	installed := filepath.Join(dir, "bin", "penstock")
	other := filepath.Join(dir, "opt", "penstock")
	for _, f := range []string{installed, other} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("#!/bin/true\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const tmp, cache = "/tmp", "/root/.cache/go-build"
	tests := []struct {
		name, exe, arg0, onPath, want string
	}{
		{name: "go run, work directory", exe: "/tmp/go-build3481585258/b001/exe/penstock", arg0: "/tmp/go-build3481585258/b001/exe/penstock", want: "go run ./cmd/penstock"},
		{name: "go run, build cache", exe: "/root/.cache/go-build/8f/8f3a-d/penstock", arg0: "penstock", want: "go run ./cmd/penstock"},
		{name: "installed on PATH", exe: installed, arg0: "penstock", onPath: installed, want: "penstock"},
		{name: "started by path", exe: other, arg0: "./opt/penstock", onPath: installed, want: "./opt/penstock"},
		{name: "another penstock on PATH", exe: other, arg0: "penstock", onPath: installed, want: other},
		{name: "a directory named like a build outside tmp", exe: "/srv/go-build/penstock", arg0: "/srv/go-build/penstock", want: "/srv/go-build/penstock"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := commandFor(tc.exe, tc.arg0, tc.onPath, tmp, cache); got != tc.want {
				t.Errorf("commandFor = %q, want %q", got, tc.want)
			}
		})
	}
}

// Every command line the banner prints that runs penstock itself starts
// with Command, never with a bare "penstock" that the shell may not find;
// under go run, the commands that start from the demo's configuration use
// a binary the banner says how to build.
func TestBannerRunsPenstockAsStarted(t *testing.T) {
	banner := Banner("127.0.0.1:8080", "127.0.0.1:8443", "")
	self := Command()
	built := self
	if self == GoRunCommand {
		built = "./penstock"
		if !strings.Contains(banner, "go build -o penstock ./cmd/penstock") {
			t.Errorf("banner uses ./penstock without saying how to build it:\n%s", banner)
		}
	}
	n := 0
	for _, line := range strings.Split(banner, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "curl ") || !strings.Contains(l, " serve") && !strings.Contains(l, " bench ") && !strings.Contains(l, " config demo") && !strings.Contains(l, " demo-backend") {
			continue
		}
		n++
		if !strings.HasPrefix(l, self+" ") && !strings.HasPrefix(l, built+" ") && !strings.HasPrefix(l, "go build ") {
			t.Errorf("banner line does not start with %q or %q: %s", self, built, l)
		}
	}
	if n < 4 {
		t.Errorf("banner has %d penstock command lines, want 4:\n%s", n, banner)
	}
}
