package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe to read while serve writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// handedOut are the addresses freeAddr has returned: the kernel may give
// a port closed a moment ago to the next listener, so two calls in one
// test (a listener and the admin API) could otherwise get the same one.
var handedOut sync.Map

// freeAddr returns a loopback address that was free a moment ago and that
// no earlier call returned.
func freeAddr(t *testing.T) string {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		if _, taken := handedOut.LoadOrStore(addr, true); !taken {
			return addr
		}
	}
}

// TestServeDrainsOnSIGTERM runs `penstock serve -c FILE`, starts a slow
// request, sends the process SIGTERM and checks that the request finishes,
// that serve exits 0, and that it logged the drain.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	started := make(chan struct{})
	var once sync.Once
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(started) })
		time.Sleep(400 * time.Millisecond)
		io.WriteString(w, "done")
	})}
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(upLn)
	t.Cleanup(func() { up.Close() })

	addr := freeAddr(t)
	file := filepath.Join(t.TempDir(), "penstock.yaml")
	os.WriteFile(file, []byte(`listeners: [{name: main, address: "`+addr+`"}]
upstreams: [{name: up, endpoints: [{address: "`+upLn.Addr().String()+`"}]}]
routes: [{name: slow, match: {path: /slow}, upstream: up}]
shutdown: {drain_timeout: 5s}
logging: {format: text}
`), 0o600)

	var stdout, stderr lockedBuffer
	exited := make(chan int, 1)
	go func() { exited <- run([]string{"serve", "-c", file}, &stdout, &stderr) }()

	// Wait for the listener.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not listen: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	type result struct {
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{string(b), err}
	}()
	<-started
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || r.body != "done" {
		t.Errorf("in-flight request: %q, %v; want it to finish", r.body, r.err)
	}
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("serve exited %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not exit after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "draining in-flight requests") {
		t.Errorf("no drain log line:\n%s", stderr.String())
	}
}

// serveWithFile runs `penstock serve -c FILE` in this process for the test;
// write replaces the file (by rename, as editors do) routing path to a
// loopback upstream.
func serveWithFile(t *testing.T, watch bool) (write func(path string), status func(path string) int, wait func(what string, cond func() bool), logs *lockedBuffer) {
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.URL.Path) })}
	upLn := listenLoopback(t)
	go up.Serve(upLn)
	t.Cleanup(func() { up.Close() })

	addr := freeAddr(t)
	file := filepath.Join(t.TempDir(), "penstock.yaml")
	write = func(route string) {
		text := `listeners: [{name: main, address: "` + addr + `"}]
upstreams: [{name: up, endpoints: [{address: "` + upLn.Addr().String() + `"}]}]
routes: [{name: r, match: {path: ` + route + `}, upstream: up}]
reload: {watch: ` + strconv.FormatBool(watch) + `, debounce: 50ms}
logging: {format: text}
`
		os.WriteFile(file+".tmp", []byte(text), 0o600)
		os.Rename(file+".tmp", file)
	}
	status = func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	logs = &lockedBuffer{}
	wait = func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: timed out\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	write("/one")
	exited := make(chan int, 1)
	go func() { exited <- run([]string{"serve", "-c", file}, io.Discard, logs) }()
	t.Cleanup(func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		<-exited
	})
	wait("start", func() bool { return status("/one") == 200 })
	return write, status, wait, logs
}

// TestServeReloadsOnFileChange rewrites the file of a running serve (picked
// up by the watch), then writes an invalid version, which is rejected while
// the previous configuration keeps serving.
func TestServeReloadsOnFileChange(t *testing.T) {
	write, status, wait, logs := serveWithFile(t, true)
	write("/two")
	wait("reload on file change", func() bool { return status("/two") == 200 && status("/one") == 404 })

	write("[oops")
	wait("rejection logged", func() bool { return strings.Contains(logs.String(), "reload rejected") })
	if status("/two") != 200 {
		t.Fatal("an invalid file stopped the previous configuration")
	}
}

// TestServeReloadsOnSIGHUP turns the watch off: a changed file is not
// applied until SIGHUP.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	write, status, wait, _ := serveWithFile(t, false)
	write("/two")
	time.Sleep(300 * time.Millisecond)
	if status("/two") != 404 {
		t.Fatal("the file was reloaded with reload.watch off")
	}
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	wait("reload on SIGHUP", func() bool { return status("/two") == 200 })
}
