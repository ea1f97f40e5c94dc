package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/admin"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
)

// TestFunctionsView checks GET /functions after a request to a function
// route of a running gateway, and that a reload keeps an unchanged
// function's warm instance and replaces a changed one.
func TestFunctionsView(t *testing.T) {
	bootstrap, err := filepath.Abs("../function/testdata/curlfn/bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	text := func(timeout string) []byte {
		return []byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes:
  - {name: fn, match: {path_prefix: /fn}, upstream: "function:echo"}
access_log: {enabled: false}
functions:
  - {name: echo, command: [bash, "` + bootstrap + `"], timeout: ` + timeout + `, memory: 64MiB}
`)
	}
	cfg, err := config.Parse(text("5s"), "admin.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	get := func() {
		t.Helper()
		resp, err := http.Get("http://" + g.Addr("main").String() + "/fn/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), "bash saw /fn/x") {
			t.Fatalf("status %d: %s", resp.StatusCode, b)
		}
	}
	get()
	srv := httptest.NewServer(admin.Handler(admin.Options{Gateway: g}))
	defer srv.Close()
	type view struct {
		Functions []struct {
			Name      string `json:"name"`
			Mode      string `json:"mode"`
			Limits    string `json:"limits"`
			Timeout   string `json:"timeout"`
			Instances []struct {
				PID    int    `json:"pid"`
				State  string `json:"state"`
				Served int64  `json:"served"`
				Limits string `json:"limits"`
			} `json:"instances"`
		} `json:"functions"`
	}
	read := func() view {
		t.Helper()
		status, body := call(t, "GET", srv.URL+"/functions", "")
		if status != 200 {
			t.Fatalf("status %d: %s", status, body)
		}
		var v view
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return v
	}
	v := read()
	if len(v.Functions) != 1 || len(v.Functions[0].Instances) != 1 {
		t.Fatalf("%+v", v)
	}
	f, in := v.Functions[0], v.Functions[0].Instances[0]
	if f.Name != "echo" || f.Mode != "lambda" || f.Timeout != "5s" || in.State != "idle" || in.Served != 1 || in.PID == 0 {
		t.Errorf("%+v", v)
	}
	if f.Limits != "rlimit" && f.Limits != "cgroup_v2" || in.Limits == "" {
		t.Errorf("limits %q, instance %q", f.Limits, in.Limits)
	}

	// An unchanged function keeps its instance across a reload.
	same, _ := config.Parse(text("5s"), "admin.yaml")
	if err := g.Reload(same); err != nil {
		t.Fatal(err)
	}
	get()
	if v := read(); len(v.Functions[0].Instances) != 1 || v.Functions[0].Instances[0].PID != in.PID {
		t.Errorf("after a reload without change: %+v, want pid %d kept", v, in.PID)
	}
	// A changed one starts afresh.
	changed, _ := config.Parse(text("6s"), "admin.yaml")
	if err := g.Reload(changed); err != nil {
		t.Fatal(err)
	}
	get()
	deadline := time.Now().Add(15 * time.Second)
	for {
		v := read()
		if v.Functions[0].Timeout == "6s" && len(v.Functions[0].Instances) == 1 && v.Functions[0].Instances[0].PID != in.PID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a reload with a change: %+v", v)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
