package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go/http3"

	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/server"
)

// h3Client speaks HTTP/3 (certificate not verified: self-signed). Close its
// transport to close its QUIC connections.
func h3Client(t *testing.T) (*http.Client, *http3.Transport) {
	t.Helper()
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Timeout: 10 * time.Second, Transport: tr}, tr
}

// tls1Client speaks HTTP/1.1 over TLS.
func tls1Client() *http.Client {
	var p http.Protocols
	p.SetHTTP1(true)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		Protocols:       &p,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHTTP3ServesTheSameRoutes sends the same request over HTTP/1.1, HTTP/2
// and HTTP/3 to one TLS listener and checks that all three reach the same
// upstream through the same route, are logged and counted under that route,
// and that the QUIC connection shows up in the metrics with sane values.
func TestHTTP3ServesTheSameRoutes(t *testing.T) {
	rec := newRecorder(t, "orders")
	o := startObserved(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}}
upstreams: [{name: orders, endpoints: [{address: %s}]}]
routes: [{name: order, match: {path: "/orders/:id"}, upstream: orders}]
`, rec.addr()))
	h3c, h3tr := h3Client(t)
	clients := []struct {
		name  string
		c     *http.Client
		proto string
	}{
		{"HTTP/1.1", tls1Client(), "HTTP/1.1"},
		{"HTTP/2", h2Client(), "HTTP/2.0"},
		{"HTTP/3", h3c, "HTTP/3.0"},
	}
	for _, cl := range clients {
		t.Run(cl.name, func(t *testing.T) {
			resp, body := do(t, cl.c, "GET", baseURL(o.g, "tls")+"/orders/7?v=1", map[string]string{"X-Tenant": "acme"}, nil)
			if resp.StatusCode != 200 || resp.Proto != cl.proto {
				t.Fatalf("status %d proto %s, want 200 %s", resp.StatusCode, resp.Proto, cl.proto)
			}
			s := decodeSeen(t, body)
			if s.Upstream != "orders" || s.URI != "/orders/7?v=1" || s.Header.Get("X-Tenant") != "acme" || s.Header.Get("X-Forwarded-Proto") != "https" {
				t.Errorf("upstream saw %+v", s)
			}
			if resp.Header.Get("X-Upstream") != "orders" {
				t.Errorf("response headers %v", resp.Header)
			}
		})
	}
	if got := exactSeriesValue(t, o.reg, "penstock_http_server_request_duration_seconds", "method=GET,route=order,status_class=2xx"); got != 3 {
		t.Errorf("route order counted %v requests, want 3 (one per protocol)", got)
	}
	if got := exactSeriesValue(t, o.reg, "penstock_connections_open", "listener=tls,protocol=h3"); got != 1 {
		t.Errorf("open h3 connections = %v, want 1", got)
	}

	// Statistics are recorded when a connection closes.
	h3tr.Close()
	waitFor(t, "the QUIC connection to be counted closed", func() bool {
		return exactSeriesValue(t, o.reg, "penstock_connections_open", "listener=tls,protocol=h3") == 0
	})
	for _, m := range []struct {
		name, labels string
		ok           func(float64) bool
		want         string
	}{
		{"penstock_quic_handshakes_total", "listener=tls,result=ok", func(v float64) bool { return v == 1 }, "1"},
		{"penstock_quic_packets_sent_total", "listener=tls", func(v float64) bool { return v >= 3 }, ">= 3"},
		{"penstock_quic_packets_lost_total", "listener=tls", func(v float64) bool { return v == 0 }, "0 on loopback"},
		{"penstock_quic_smoothed_rtt_seconds", "listener=tls", func(v float64) bool { return v == 1 }, "one observation"},
	} {
		if v := exactSeriesValue(t, o.reg, m.name, m.labels); !m.ok(v) {
			t.Errorf("%s{%s} = %v, want %s", m.name, m.labels, v, m.want)
		}
	}
	problems, err := testutil.GatherAndLint(o.reg, "penstock_quic_handshakes_total", "penstock_quic_packets_sent_total",
		"penstock_quic_packets_lost_total", "penstock_quic_smoothed_rtt_seconds")
	if err != nil || len(problems) > 0 {
		t.Errorf("QUIC metrics do not pass the Prometheus linter: %v %v", err, problems)
	}

	ls := o.lines(t)
	if len(ls) != 3 {
		t.Fatalf("%d access log lines for 3 requests", len(ls))
	}
	for i, want := range []string{"HTTP/1.1", "HTTP/2.0", "HTTP/3.0"} {
		if ls[i]["protocol"] != want || ls[i]["route"] != "order" || ls[i]["status"] != 200.0 {
			t.Errorf("line %d = %v, want protocol %s route order", i, ls[i], want)
		}
	}
}

// TestAltSvc checks the HTTP/3 advertisement on TCP responses: present by
// default with the bound port, configurable, absent when turned off, for
// excluded hosts and on HTTP/3 responses themselves.
func TestAltSvc(t *testing.T) {
	rec := newRecorder(t, "up")
	tests := []struct {
		name   string
		http3  string // the listener's http3 block
		protos string
		host   string
		client func(t *testing.T) *http.Client
		want   string // "PORT" stands for the bound port; "" for no header
	}{
		{name: "HTTP/1.1 gets the default advertisement", protos: "[h1, h2, h3]", client: func(*testing.T) *http.Client { return tls1Client() }, want: `h3=":PORT"; ma=86400`},
		{name: "HTTP/2 gets it too", protos: "[h1, h2, h3]", client: func(*testing.T) *http.Client { return h2Client() }, want: `h3=":PORT"; ma=86400`},
		{name: "HTTP/3 responses carry none", protos: "[h1, h2, h3]", client: func(t *testing.T) *http.Client { c, _ := h3Client(t); return c }},
		{name: "port and max age for a balancer in front", protos: "[h1, h2, h3]", http3: "{alt_svc_port: 443, alt_svc_max_age: 1h}", client: func(*testing.T) *http.Client { return h2Client() }, want: `h3=":443"; ma=3600`},
		{name: "turned off", protos: "[h1, h2, h3]", http3: "{alt_svc: false}", client: func(*testing.T) *http.Client { return h2Client() }},
		{name: "excluded host", protos: "[h1, h2, h3]", http3: "{alt_svc_exclude_hosts: [NoUDP.example.com]}", host: "noudp.example.com:8443", client: func(*testing.T) *http.Client { return tls1Client() }},
		{name: "other hosts still get it", protos: "[h1, h2, h3]", http3: "{alt_svc_exclude_hosts: [noudp.example.com]}", host: "www.example.com", client: func(*testing.T) *http.Client { return tls1Client() }, want: `h3=":PORT"; ma=86400`},
		{name: "no h3, no advertisement", protos: "[h1, h2]", client: func(*testing.T) *http.Client { return h2Client() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h3block := ""
			if tt.http3 != "" {
				h3block = ", http3: " + tt.http3
			}
			g := startGateway(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: %s, tls: {self_signed: true}%s}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, tt.protos, h3block, rec.addr()))
			hdr := map[string]string{}
			if tt.host != "" {
				hdr["Host"] = tt.host
			}
			resp, _ := do(t, tt.client(t), "GET", baseURL(g, "tls")+"/x", hdr, nil)
			_, port, _ := net.SplitHostPort(g.Addr("tls").String())
			want := strings.ReplaceAll(tt.want, "PORT", port)
			if got := resp.Header.Get("Alt-Svc"); got != want || len(resp.Header.Values("Alt-Svc")) > 1 {
				t.Errorf("Alt-Svc = %q, want %q", resp.Header.Values("Alt-Svc"), want)
			}
		})
	}
}

// TestAltSvcReplacesTheUpstreams checks that a listener advertising HTTP/3
// replaces an upstream's Alt-Svc (which names the upstream's ports) and one
// that does not passes it on.
func TestAltSvcReplacesTheUpstreams(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Alt-Svc", `h3=":9999"; ma=60`)
	}))
	g := startGateway(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}, http3: {alt_svc_port: 443}}
  - {name: plain, address: "127.0.0.1:0"}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, up))
	tests := []struct {
		name, listener string
		c              *http.Client
		want           string
	}{
		{"advertising listener replaces it", "tls", h2Client(), `h3=":443"; ma=86400`},
		{"other listener passes it on", "plain", client, `h3=":9999"; ma=60`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := do(t, tt.c, "GET", baseURL(g, tt.listener)+"/", nil, nil)
			if got := resp.Header.Values("Alt-Svc"); len(got) != 1 || got[0] != tt.want {
				t.Errorf("Alt-Svc = %q, want only %q", got, tt.want)
			}
		})
	}
}

// TestQlogDir checks that http3.qlog_dir gets one qlog file per QUIC
// connection.
func TestQlogDir(t *testing.T) {
	rec := newRecorder(t, "up")
	dir := filepath.Join(t.TempDir(), "qlog")
	g := startGateway(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}, http3: {qlog_dir: %q}}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, dir, rec.addr()))
	c, tr := h3Client(t)
	do(t, c, "GET", baseURL(g, "tls")+"/", nil, nil)
	tr.Close()
	waitFor(t, "a qlog file with events", func() bool {
		files, _ := filepath.Glob(filepath.Join(dir, "*_server.sqlog"))
		if len(files) != 1 {
			return false
		}
		b, _ := os.ReadFile(files[0])
		// Complete: the connection's close was recorded.
		return strings.Contains(string(b), "transport:packet_received") && strings.Contains(string(b), "transport:connection_closed")
	})
}

// TestHTTP3GracefulShutdown starts a slow HTTP/3 request, shuts the gateway
// down while it is in flight and checks that it completes.
func TestHTTP3GracefulShutdown(t *testing.T) {
	started := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "finished")
	}))
	cfg := mustConfig(t, lines(`listeners: [{name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: slow, match: {path: /slow}, upstream: up}]
shutdown: {drain_timeout: 5s}
`, up))
	g, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	c, _ := h3Client(t)
	url := baseURL(g, "tls") + "/slow"
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get(url)
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
		t.Fatalf("in-flight HTTP/3 request: status %d body %q err %v; want 200 finished", r.status, r.body, r.err)
	}
	if err := <-shutdownDone; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	c2, _ := h3Client(t)
	c2.Timeout = time.Second
	if resp, err := c2.Get(url); err == nil {
		resp.Body.Close()
		t.Error("a new HTTP/3 request succeeded after shutdown")
	}
}

// TestHTTP3ReloadKeepsSocket changes a listener's settings while an HTTP/3
// request is in flight: the request finishes on the server that accepted
// its connection, and new connections are served on the same UDP port with
// the new settings.
func TestHTTP3ReloadKeepsSocket(t *testing.T) {
	started := make(chan struct{}, 1)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, "ok")
	}))
	conf := `listeners: [{name: tls, address: %q, protocols: [h1, h2, h3], tls: {self_signed: true}, http3: {alt_svc_max_age: %s}}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`
	g := startGateway(t, lines(conf, "127.0.0.1:0", "1h", up))
	addr := g.Addr("tls").String()
	c, _ := h3Client(t)
	done := make(chan int, 1)
	go func() {
		resp, err := c.Get("https://" + addr + "/slow")
		if err != nil {
			t.Error(err)
			done <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-started
	if err := g.Reload(mustConfig(t, lines(conf, addr, "2h", up))); err != nil {
		t.Fatal(err)
	}
	if status := <-done; status != 200 {
		t.Fatalf("request in flight across the reload: status %d", status)
	}
	c2, _ := h3Client(t)
	if resp, _ := do(t, c2, "GET", "https://"+addr+"/new", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("new connection after reload: %d", resp.StatusCode)
	}
	if resp, _ := do(t, h2Client(), "GET", "https://"+addr+"/x", nil, nil); !strings.HasSuffix(resp.Header.Get("Alt-Svc"), "ma=7200") {
		t.Errorf("Alt-Svc after reload = %q, want the new max age", resp.Header.Get("Alt-Svc"))
	}
}

// TestUpstreamHTTP3 forwards to an HTTP/3 upstream (protocol: h3) and checks
// the request arrives over HTTP/3, and that an endpoint where nothing
// answers QUIC counts as a connection failure: the next endpoint is tried.
func TestUpstreamHTTP3(t *testing.T) {
	cert, _, err := listener.SelfSigned("localhost")
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.Proto+" "+r.Header.Get("X-Forwarded-Proto"))
		}),
	}
	go srv.Serve(udp)
	t.Cleanup(func() { srv.Close(); udp.Close() })
	// A UDP port nobody serves: the QUIC handshake times out.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.LocalAddr().String()
	dead.Close()

	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: h3, protocol: h3, tls: {insecure_skip_verify: true}, endpoints: [{address: %q}, {address: %q}]}
routes: [{name: r, match: {path_prefix: /}, upstream: h3, timeouts: {connect: 300ms}}]
`, deadAddr, udp.LocalAddr().String()))
	for i := range 3 {
		resp, body := do(t, client, "GET", baseURL(g, "main")+"/", nil, nil)
		if resp.StatusCode != 200 || body != "HTTP/3.0 http" {
			t.Fatalf("request %d: status %d body %q, want 200 and the upstream's HTTP/3.0", i, resp.StatusCode, body)
		}
	}
}
