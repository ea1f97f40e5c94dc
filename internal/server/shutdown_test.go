package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

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

// TestShutdownRefusesNewConnections: once a graceful shutdown begins, every
// listener stops accepting (a new connection is refused, not accepted and
// reset) while a request in flight still finishes (issue 13, finding 10).
func TestShutdownRefusesNewConnections(t *testing.T) {
	for _, engine := range []string{"native", "stdhttp"} {
		for _, scheme := range []string{"http", "https"} {
			t.Run(engine+"/"+scheme, func(t *testing.T) {
				release := make(chan struct{})
				started := make(chan struct{}, 1)
				up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					started <- struct{}{}
					<-release
					io.WriteString(w, "finished")
				}))
				tlsCfg := ""
				if scheme == "https" {
					tlsCfg = ", tls: {self_signed: true}"
				}
				cfg, err := config.Parse([]byte(lines(`listeners: [{name: main, address: "127.0.0.1:0", engine: %s%s}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: slow, match: {path: /slow}, upstream: up}]
shutdown: {drain_timeout: 10s}
access_log: {enabled: false}
`, engine, tlsCfg, up)), "test.yaml")
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
				addr := g.Addr("main").String()
				c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
					TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
				done := make(chan error, 1)
				go func() {
					resp, err := c.Get(scheme + "://" + addr + "/slow")
					if err == nil {
						_, err = io.ReadAll(resp.Body)
						resp.Body.Close()
					}
					done <- err
				}()
				<-started
				shutdownDone := make(chan error, 1)
				go func() { shutdownDone <- g.Shutdown(context.Background()) }()

				// The request is held upstream, so this is during the drain.
				refused := false
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
					nc, err := net.Dial("tcp", addr)
					if errors.Is(err, syscall.ECONNREFUSED) {
						refused = true
						break
					}
					// A connection caught in the backlog as the socket
					// closed is reset; the next one must be refused.
					if err == nil {
						nc.Close()
					}
					time.Sleep(10 * time.Millisecond)
				}
				if !refused {
					t.Error("new connections still accepted during the drain; want them refused")
				}
				close(release)
				if err := <-done; err != nil {
					t.Errorf("in-flight request: %v", err)
				}
				if err := <-shutdownDone; err != nil {
					t.Errorf("shutdown: %v", err)
				}
			})
		}
	}
}

// TestConnectionsOpenNeverNegative: TCP connections to a TLS listener that
// close before their handshake (load balancer health checks) are not
// counted as opened, so their close must not be counted either: the
// penstock_connections_open gauge stayed at -1 per such connection
// (issue 13, finding 13).
func TestConnectionsOpenNeverNegative(t *testing.T) {
	up := newRecorder(t, "up")
	for _, engine := range []string{"native", "stdhttp"} {
		t.Run(engine, func(t *testing.T) {
			o := startObserved(t, lines(`listeners: [{name: tls, address: "127.0.0.1:0", engine: %s, tls: {self_signed: true}}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, engine, up.addr()))
			addr := o.g.Addr("tls").String()
			for range 5 {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				nc.Close()
			}
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
			resp, err := c.Get("https://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			c.CloseIdleConnections()
			// Shutdown returns once every connection is closed.
			o.stop()
			for _, proto := range []string{"tcp", "http/1.1", "h2"} {
				m := findSeries(t, o.reg, "penstock_connections_open", func(m *dto.Metric) bool {
					return labels(m) == "listener=tls,protocol="+proto
				})
				if m != nil && value(m) != 0 {
					t.Errorf("penstock_connections_open{protocol=%q} = %v after every connection closed, want 0", proto, value(m))
				}
			}
		})
	}
}

// TestListeningLoggedOncePerListener: an https listener serving h1, h2 and
// h3 says "listening" once, naming its protocols, not once more for its UDP
// socket (issue 13, finding 10).
func TestListeningLoggedOncePerListener(t *testing.T) {
	up := newRecorder(t, "up")
	cfg, err := config.Parse([]byte(lines(`listeners: [{name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, up.addr())), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	var logs lockedBuffer
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer g.Shutdown(context.Background())
	if n := strings.Count(logs.String(), "msg=listening"); n != 1 {
		t.Errorf("%d \"listening\" lines for one listener, want 1:\n%s", n, logs.String())
	}
}
