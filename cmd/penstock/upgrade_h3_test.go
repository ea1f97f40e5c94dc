package main

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	p := startServed(t, `listeners: [{name: main, address: "`+addr+`", protocols: [h1, h2, h3], tls: {self_signed: true}}]
upstreams: [{name: up, endpoints: [{address: "`+upLn.Addr().String()+`"}]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
shutdown: {drain_timeout: 20s}
logging: {format: text}
`)
	pidFile, logs := p.pidFile, p.logs

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

// TestBinaryUpgradeUnderHTTP3Load upgrades three times while penstock bench
// sends HTTP/3 requests at a fixed rate over QUIC connections it keeps open
// and never retries: no request may fail.
func TestBinaryUpgradeUnderHTTP3Load(t *testing.T) {
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
	p := startServed(t, `listeners: [{name: main, address: "`+addr+`", protocols: [h1, h2, h3], tls: {self_signed: true}}]
upstreams: [{name: up, endpoints: [{address: "`+upLn.Addr().String()+`"}]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
shutdown: {drain_timeout: 10s}
logging: {format: text}
`)
	dir, bin, pidFile, logs := p.dir, penstockBinary(t), p.pidFile, p.logs

	report := filepath.Join(dir, "bench.json")
	load := exec.Command(bin, "bench", "run", "--proto", "h3", "--insecure", "--rate", "200", "--duration", "20s",
		"--connections", "8", "--quiet", "--json", report, "https://"+addr+"/x")
	loadOut := &strings.Builder{}
	load.Stdout, load.Stderr = loadOut, loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	loadDone := make(chan error, 1)
	go func() { loadDone <- load.Wait() }()

	for round := 1; round <= 3; round++ {
		time.Sleep(2 * time.Second)
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
	select {
	case err := <-loadDone:
		if err != nil {
			t.Fatalf("penstock bench: %v\n%s", err, loadOut)
		}
	case <-time.After(60 * time.Second):
		load.Process.Kill()
		t.Fatal("penstock bench did not finish")
	}
	var r struct {
		Requests  int            `json:"requests"`
		Responses int            `json:"responses"`
		Errors    map[string]int `json:"errors"`
		Status    map[string]int `json:"status"`
	}
	b, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	t.Logf("HTTP/3 across 3 upgrades: %d requests, %d responses, status %v, errors %v", r.Requests, r.Responses, r.Status, r.Errors)
	if r.Requests < 1000 || r.Status["200"] != r.Requests || len(r.Errors) > 0 {
		t.Errorf("%d requests, %d answered 200, errors %v\n%s\n%s", r.Requests, r.Status["200"], r.Errors, loadOut, logs())
	}
}
