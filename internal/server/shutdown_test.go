package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
)

// TestGracefulShutdownFinishesInFlight starts a slow request, shuts the
// gateway down while it is in flight, and checks that the request completes
// and that new connections are refused.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	started := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "finished")
	}))
	cfg, err := config.Parse([]byte(lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: slow, match: {path: /slow}, upstream: up}]
shutdown: {drain_timeout: 5s}
`, up)), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	url := "http://" + g.Addr("main").String() + "/slow"

	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Get(url)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	<-started

	shutdownDone := make(chan error, 1)
	go func() { shutdownDone <- g.Shutdown(context.Background()) }()

	r := <-done
	if r.err != nil || r.status != 200 || r.body != "finished" {
		t.Fatalf("in-flight request: status %d body %q err %v; want 200 finished", r.status, r.body, r.err)
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := c.Get(url); err == nil {
		resp.Body.Close()
		t.Error("a new request succeeded after shutdown")
	}
}
