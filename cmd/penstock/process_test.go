package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// built is the penstock binary the process tests run, built once per test
// binary (each build costs seconds of the suite).
var built struct {
	once sync.Once
	dir  string
	bin  string
	out  []byte
	err  error
}

// penstockBinary returns the path of the built binary. Tests that change
// the file (a failed upgrade's "new binary") copy it first (copyBinary).
func penstockBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "penstock-test-bin-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "penstock")
		built.out, built.err = exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput()
	})
	if built.err != nil {
		t.Fatalf("build: %v\n%s", built.err, built.out)
	}
	return built.bin
}

// removeBinary deletes the built binary (TestMain, after the run).
func removeBinary() {
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
}

// copyBinary copies the built binary to dst, a file the test may replace.
func copyBinary(t *testing.T, dst string) {
	t.Helper()
	b, err := os.ReadFile(penstockBinary(t))
	if err == nil {
		err = os.WriteFile(dst, b, 0o755)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// served is a penstock process serving a config file, started from the
// built binary with a pid file, as an operator runs it for upgrades.
type served struct {
	dir, pidFile string
	// pid is the first process's; after upgrades the pid file names the
	// serving one.
	pid     int
	logFile string
}

// startServed writes cfg to a file, runs `penstock serve -c` on it and
// returns once the process has written its pid file. At the test's end,
// whichever process serves then (this one or a successor) gets SIGTERM.
func startServed(t *testing.T, cfg string) *served {
	t.Helper()
	dir := t.TempDir()
	s := &served{dir: dir, pidFile: filepath.Join(dir, "penstock.pid"), logFile: filepath.Join(dir, "penstock.log")}
	cfgFile := filepath.Join(dir, "penstock.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close() // the process has its own descriptor
	cmd := exec.Command(penstockBinary(t), "serve", "-c", cfgFile, "-pid-file", s.pidFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() // reap the first process when it exits
	s.pid = cmd.Process.Pid
	t.Cleanup(func() {
		if pid := readPid(t, s.pidFile); pid > 0 && alive(pid) {
			syscall.Kill(pid, syscall.SIGTERM)
			waitFor(10*time.Second, func() bool { return !alive(pid) })
		}
	})
	if !waitFor(10*time.Second, func() bool { return readPid(t, s.pidFile) == s.pid }) {
		t.Fatalf("penstock did not start:\n%s", s.logs())
	}
	return s
}

// logs returns what the processes wrote so far.
func (s *served) logs() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}
