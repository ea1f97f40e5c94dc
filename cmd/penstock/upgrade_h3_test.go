package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// TestBinaryUpgradeWithHTTP3 upgrades a process serving HTTP/3: the new
// process binds the same UDP port while the old one still holds it, and
// HTTP/3 requests are served before and after. A slow request on a QUIC
// connection of the old process finishes there, and every new connection
// made while the old process drains is served by the new one: packets are
// steered between the two by connection ID, none refused.
func TestBinaryUpgradeWithHTTP3(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "penstock")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(4 * time.Second)
		}
		io.WriteString(w, "ok")
	})}
	upLn := listenLoopback(t)
	go up.Serve(upLn)
	t.Cleanup(func() { up.Close() })

	addr := freeAddr(t)
	cfgFile := filepath.Join(dir, "penstock.yaml")
	os.WriteFile(cfgFile, []byte(`listeners: [{name: main, address: "`+addr+`", protocols: [h1, h2, h3], tls: {self_signed: true}}]
upstreams: [{name: up, endpoints: [{address: "`+upLn.Addr().String()+`"}]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
shutdown: {drain_timeout: 20s}
logging: {format: text}
`), 0o600)
	pidFile := filepath.Join(dir, "penstock.pid")
	logFile, _ := os.Create(filepath.Join(dir, "penstock.log"))
	defer logFile.Close()
	logs := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }

	cmd := exec.Command(bin, "serve", "-c", cfgFile, "-pid-file", pidFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait()
	t.Cleanup(func() {
		if pid := readPid(t, pidFile); pid > 0 && alive(pid) {
			syscall.Kill(pid, syscall.SIGTERM)
			waitFor(10*time.Second, func() bool { return !alive(pid) })
		}
	})
	if !waitFor(10*time.Second, func() bool { return readPid(t, pidFile) == cmd.Process.Pid }) {
		t.Fatalf("penstock did not start:\n%s", logs())
	}

	get := func(when string) {
		t.Helper()
		tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		defer tr.Close()
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		resp, err := c.Get("https://" + addr + "/x")
		if err != nil {
			t.Fatalf("%s: HTTP/3 request: %v\n%s", when, err, logs())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" || resp.ProtoMajor != 3 {
			t.Fatalf("%s: status %d %s body %q", when, resp.StatusCode, resp.Proto, b)
		}
	}
	get("before the upgrade")
	old := readPid(t, pidFile)

	// A slow request in flight on the old process across the upgrade.
	slow := make(chan error, 1)
	slowTr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer slowTr.Close()
	go func() {
		c := &http.Client{Transport: slowTr, Timeout: 30 * time.Second}
		resp, err := c.Get("https://" + addr + "/slow")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "ok" {
				err = fmt.Errorf("status %d body %q", resp.StatusCode, b)
			}
		}
		slow <- err
	}()
	time.Sleep(500 * time.Millisecond)

	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	var next int
	if !waitFor(20*time.Second, func() bool { next = readPid(t, pidFile); return next != old && next != 0 }) {
		t.Fatalf("no new process\n%s", logs())
	}
	// New connections while the old process drains its slow request.
	made, drained := 0, 0
	for i := 0; i < 20 && alive(old); i++ {
		get(fmt.Sprintf("new connection %d during the old process's drain", i))
		made++
		if alive(old) {
			drained++
		}
	}
	if drained < 5 {
		t.Logf("only %d of %d new connections were made while the old process drained", drained, made)
	}
	if err := <-slow; err != nil {
		t.Fatalf("the slow request across the upgrade: %v\n%s", err, logs())
	}
	if !waitFor(20*time.Second, func() bool { return !alive(old) }) {
		t.Fatalf("old process %d did not exit\n%s", old, logs())
	}
	get("after the upgrade")
}
