package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/probe/fleet"
)

func TestProbeOnce(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	var out, errOut bytes.Buffer
	if code := run([]string{"probe", "once", srv.URL + "/healthz"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var r struct {
		Success bool
		Module  string
		HTTP    struct {
			StatusCode int `json:"status_code"`
		}
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || !r.Success || r.Module != "http_2xx" || r.HTTP.StatusCode != 200 {
		t.Fatalf("result %s (%v)", out.String(), err)
	}
}

func TestProbeBadModulesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blackbox.yml")
	os.WriteFile(path, []byte("modules:\n  web:\n    prober: http\n    http:\n      proxy_url: http://proxy\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"probe", "serve", "-config", path, "-listen", "127.0.0.1:0"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if want := path + ":5: modules.web.http.proxy_url: not supported by penstock probe"; !strings.Contains(errOut.String(), want) {
		t.Fatalf("stderr %q, want %q", errOut.String(), want)
	}
}

func TestProbeRunBadTargets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "targets.txt")
	os.WriteFile(path, []byte("127.0.0.1:80\n127.0.0.1:81 nosuchmodule\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"probe", "run", "-targets", path}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if want := path + `:2: unknown module "nosuchmodule"`; !strings.Contains(errOut.String(), want) {
		t.Fatalf("stderr %q, want %q", errOut.String(), want)
	}
}

// The demo banner's probe command works against the demo's TLS listener
// (a self-signed certificate: -insecure), reporting the TLS facts.
func TestProbeOnceInsecureTLS(t *testing.T) {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	var out, errOut bytes.Buffer
	addr := strings.TrimPrefix(srv.URL, "https://")
	if code := run([]string{"probe", "once", "-insecure", "-module", "tls_connect", addr}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errOut.String())
	}
	for _, want := range []string{`"version":"TLS 1.3"`, `"group":"X25519MLKEM768"`, `"alpn":"http/1.1"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s: %s", want, out.String())
		}
	}
	if code := run([]string{"probe", "once", "-module", "tls_connect", addr}, &out, &errOut); code != 1 || !strings.Contains(out.String(), `"reason":"tls_unknown_authority"`) {
		t.Errorf("without -insecure: exit %d, %s", code, out.String())
	}
}

func TestProbeControllerBadInput(t *testing.T) {
	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.txt")
	os.WriteFile(targets, []byte("127.0.0.1:80\n10.0.0.0/33:80\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := run([]string{"probe", "controller", "-targets", targets, "-listen", "127.0.0.1:0"}, &out, &errOut); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if want := targets + `:2: target "10.0.0.0/33:80"`; !strings.Contains(errOut.String(), want) {
		t.Fatalf("stderr %q, want %q", errOut.String(), want)
	}
	errOut.Reset()
	if code := run([]string{"probe", "agent"}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "-controller is required") {
		t.Fatalf("agent without -controller: exit %d, stderr %q", code, errOut.String())
	}
}

// A controller and an agent, as the README's tour runs them: one cycle
// over a small target list, its results as JSON lines on the controller's
// standard output, each carrying the agent's vantage.
func TestProbeControllerAndAgent(t *testing.T) {
	dir := t.TempDir()
	targets := filepath.Join(dir, "targets.txt")
	os.WriteFile(targets, []byte("127.0.0.1:9\n127.0.0.0/30:9\n"), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("PENSTOCK_PROBE_TOKEN", "tour")
	var out, errOut bytes.Buffer
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"probe", "controller", "-targets", targets, "-listen", addr, "-cycles", "1", "-lease-timeout", "2s"}, &out, &errOut)
	}()
	a, err := fleet.NewAgent(fleet.AgentConfig{Controller: addr, Token: "tour", Vantage: "lab-a"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("controller exit %d: %s", c, errOut.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the cycle did not complete")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d result lines, want 5: %s", len(lines), out.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, `"vantage":"lab-a"`) || !strings.Contains(l, `"reason":"connect_refused"`) {
			t.Errorf("result line %s", l)
		}
	}
}
