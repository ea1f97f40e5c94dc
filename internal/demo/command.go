package demo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// GoRunCommand is how to run penstock from a source checkout without
// installing it.
const GoRunCommand = "go run ./cmd/penstock"

// Command returns the command line that runs this penstock again, for the
// commands the demo prints: [GoRunCommand] when this process was built by
// `go run` (the executable lies in a go-build directory, which is gone once
// the process exits), "penstock" when that name on PATH is this executable,
// and the path it was started by otherwise.
func Command() string {
	exe, err := os.Executable()
	if err != nil {
		return "penstock"
	}
	onPath, _ := exec.LookPath("penstock")
	return commandFor(exe, os.Args[0], onPath, os.TempDir(), goCache())
}

// commandFor is Command for an executable exe started as arg0, with
// onPath the "penstock" found on PATH ("" if none), tmp the temporary
// directory and cache the build cache.
func commandFor(exe, arg0, onPath, tmp, cache string) string {
	if rel, err := filepath.Rel(tmp, exe); err == nil && strings.HasPrefix(rel, "go-build") {
		return GoRunCommand // a build's work directory, /tmp/go-build123/b001/exe/penstock
	}
	if cache != "" && strings.HasPrefix(exe, cache+string(filepath.Separator)) {
		return GoRunCommand // Go 1.24 and later may keep go run's executables in the cache
	}
	if onPath != "" && sameFile(onPath, exe) {
		return "penstock"
	}
	if strings.ContainsRune(arg0, filepath.Separator) {
		return arg0
	}
	return exe
}

// goCache returns the build cache directory, as the go command finds it.
func goCache() string {
	if c := os.Getenv("GOCACHE"); c != "" {
		return c
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(d, "go-build")
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
