package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
)

// startGateway compiles yamlText (defaults applied) and serves it on
// loopback until the test ends.
func startGateway(t *testing.T, yamlText string) *server.Server {
	t.Helper()
	return startGatewayTB(t, yamlText)
}

// startGatewayTB is startGateway for tests and benchmarks.
func startGatewayTB(t testing.TB, yamlText string) *server.Server {
	t.Helper()
	cfg, err := config.Parse([]byte(yamlText), "test.yaml")
	if err != nil {
		t.Fatalf("parse config: %v\n%s", err, yamlText)
	}
	cfg.SetDefaults()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	g, err := server.New(cfg, server.Options{Logger: log})
	if err != nil {
		t.Fatalf("compile config: %v", err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	return g
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// seen is what a recording upstream observed of one request.
type seen struct {
	Upstream string      `json:"upstream"`
	Method   string      `json:"method"`
	Host     string      `json:"host"`
	URI      string      `json:"uri"`
	Proto    string      `json:"proto"`
	Header   http.Header `json:"header"`
	Body     string      `json:"body"`
}

// recorder is an upstream that answers every request with a JSON echo of
// what it saw, tagged with its name, and counts requests.
type recorder struct {
	name  string
	srv   *httptest.Server
	count atomic.Int64
}

func newRecorder(t *testing.T, name string) *recorder {
	t.Helper()
	r := &recorder{name: name}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.count.Add(1)
		body, _ := io.ReadAll(req.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Upstream", name)
		json.NewEncoder(w).Encode(seen{Upstream: name, Method: req.Method, Host: req.Host, URI: req.RequestURI,
			Proto: req.Proto, Header: req.Header, Body: string(body)})
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// addr is the recorder's host:port.
func (r *recorder) addr() string { return r.srv.Listener.Addr().String() }

// newUpstream starts an upstream with a custom handler.
func newUpstream(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// baseURL is the gateway listener's URL.
func baseURL(g *server.Server, listener string) string {
	scheme := "http"
	if strings.Contains(listener, "tls") {
		scheme = "https"
	}
	return scheme + "://" + g.Addr(listener).String()
}

// client is a plain HTTP/1.1 client that does not follow redirects.
var client = &http.Client{
	Timeout:       10 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// h2Client speaks HTTP/2 over TLS (certificate not verified: self-signed).
func h2Client() *http.Client {
	var p http.Protocols
	p.SetHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Protocols:       &p,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
}

// h2cClient speaks HTTP/2 over cleartext with prior knowledge.
func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &p}}
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, c *http.Client, method, url string, hdr map[string]string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, string(b)
}

// decodeSeen parses a recorder's echo.
func decodeSeen(t *testing.T, body string) seen {
	t.Helper()
	var s seen
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("upstream echo is not JSON: %v: %q", err, body)
	}
	return s
}

// errorBody is the error funnel's JSON body.
type errorBody struct {
	Error     string `json:"error"`
	Status    int    `json:"status"`
	RequestID string `json:"request_id"`
}

// lines joins formatted YAML lines (keeps test configs readable).
func lines(format string, args ...any) string { return fmt.Sprintf(format, args...) }
