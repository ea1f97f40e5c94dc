package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// alive reports whether pid is a running process (not gone, not a zombie).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// waitFor polls cond every 20ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// TestBinaryUpgradeUnderLoad builds penstock, serves under constant
// keep-alive load (Go clients, which retry idempotent requests, and raw
// clients sending GETs and POSTs that never retry), and replaces the
// process with a new one three times by SIGUSR2. No request may fail, and
// each old process must exit after draining.
func TestBinaryUpgradeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // requests are in flight during each hand-over
		io.WriteString(w, "ok")
	})}
	upLn := listenLoopback(t)
	go up.Serve(upLn)
	t.Cleanup(func() { up.Close() })

	addr := freeAddr(t)
	adminAddr := freeAddr(t)
	p := startServed(t, `listeners: [{name: main, address: "`+addr+`", protocols: [h1, h2c]}]
upstreams: [{name: up, endpoints: [{address: "`+upLn.Addr().String()+`"}]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
admin: {address: "`+adminAddr+`"}
shutdown: {drain_timeout: 10s}
logging: {format: text}
`)
	pidFile, logs := p.pidFile, p.logs

	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}
			if w == 3 {
				var p http.Protocols
				p.SetUnencryptedHTTP2(true)
				c.Transport = &http.Transport{Protocols: &p}
			}
			deadline := time.Now().Add(90 * time.Second) // a bound, not an expectation
			for time.Now().Before(deadline) {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://" + addr + "/x")
				sent.Add(1)
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	// Clients that never retry (a load tool, any POST): raw keep-alive
	// connections, a new one only after a response with Connection:
	// close. The old process must answer them, not close under them.
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(90 * time.Second) // a bound, not an expectation
			var nc net.Conn
			var br *bufio.Reader
			defer func() {
				if nc != nil {
					nc.Close()
				}
			}()
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				req := "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"
				if (w+i)%2 == 1 {
					req = "POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
				}
				var resp *http.Response
				err := func() error {
					if nc == nil {
						var err error
						if nc, err = net.Dial("tcp", addr); err != nil {
							return err
						}
						br = bufio.NewReader(nc)
					}
					nc.SetDeadline(time.Now().Add(10 * time.Second))
					if _, err := io.WriteString(nc, req); err != nil {
						return err
					}
					var err error
					if resp, err = http.ReadResponse(br, nil); err != nil {
						return err
					}
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
					return err
				}()
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, "non-retrying client: "+err.Error())
				}
				if err != nil || resp.Close {
					if nc != nil {
						nc.Close()
					}
					nc = nil
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}

	for round := 1; round <= 3; round++ {
		time.Sleep(300 * time.Millisecond)
		old := readPid(t, pidFile)
		if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
			t.Fatalf("round %d: signal %d: %v", round, old, err)
		}
		var next int
		if !waitFor(20*time.Second, func() bool { next = readPid(t, pidFile); return next != old && next != 0 }) {
			t.Fatalf("round %d: no new process\n%s", round, logs())
		}
		if !waitFor(20*time.Second, func() bool { return !alive(old) }) {
			t.Fatalf("round %d: old process %d did not exit after draining\n%s", round, old, logs())
		}
		t.Logf("round %d: process %d replaced by %d", round, old, next)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Errorf("%d of %d requests failed across 3 upgrades; first: %v", n, sent.Load(), firstErr.Load())
	}
	if sent.Load() < 100 {
		t.Errorf("only %d requests sent", sent.Load())
	}
	t.Logf("%d requests across 3 upgrades, %d failed", sent.Load(), failed.Load())
	// The admin API moved along with the listeners.
	resp, err := http.Get("http://" + adminAddr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("admin API after upgrades: %v", err)
	}
	if !strings.Contains(logs(), "new process is serving; this one stops accepting and drains") {
		t.Errorf("no hand-over in the log:\n%s", logs())
	}
}

// TestBinaryUpgradeFailureKeepsServing replaces the binary with one that
// cannot start, runs penstock upgrade, and checks that the command reports
// the failure the old process saw (not its own timeout, which is far away)
// and that the old process keeps serving.
func TestBinaryUpgradeFailureKeepsServing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "penstock")
	copyBinary(t, bin) // replaced below by a "new binary" that fails
	addr := freeAddr(t)
	cfgFile := filepath.Join(dir, "penstock.yaml")
	os.WriteFile(cfgFile, []byte(`listeners: [{name: main, address: "`+addr+`"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: all, match: {path: /}, upstream: up}]
logging: {format: text}
`), 0o600)
	logFile, _ := os.Create(filepath.Join(dir, "penstock.log"))
	defer logFile.Close()
	pidFile := filepath.Join(dir, "penstock.pid")
	cmd := exec.Command(bin, "serve", "-c", cfgFile, "-pid-file", pidFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	logs := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Errorf("penstock did not exit on SIGTERM:\n%s", logs())
		}
	})
	get := func() int {
		resp, err := http.Get("http://" + addr + "/nowhere")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if !waitFor(10*time.Second, func() bool { return get() == 404 && readPid(t, pidFile) == cmd.Process.Pid }) {
		t.Fatalf("not serving:\n%s", logs())
	}

	// A "new binary" that fails at once.
	os.Rename(bin, bin+".old")
	os.WriteFile(bin, []byte("#!/bin/sh\necho broken build >&2\nexit 3\n"), 0o755)
	code, stdout, stderr := runCLI("upgrade", "-pid-file", pidFile, "-timeout", "10m")
	if code != 1 || !strings.Contains(stderr, "keeps serving; the upgrade failed") || !strings.Contains(stderr, "exit status 3") {
		t.Errorf("penstock upgrade: exit code %d, want 1 with the new process's failure\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	if !waitFor(10*time.Second, func() bool { return strings.Contains(logs(), "binary upgrade failed; this process keeps serving") }) {
		t.Fatalf("no failure logged:\n%s", logs())
	}
	select {
	case <-exited:
		t.Fatalf("old process exited after a failed upgrade:\n%s", logs())
	default:
	}
	if get() != 404 {
		t.Errorf("old process stopped serving after a failed upgrade:\n%s", logs())
	}
}
