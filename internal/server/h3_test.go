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
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/quic-go/quic-go"
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

// TestHandshakeFloodRequiresRetry lowers handshake_rate_limit to 2 per
// second and opens more connections than that: all succeed, and the ones
// over the limit were asked to validate their address first.
func TestHandshakeFloodRequiresRetry(t *testing.T) {
	rec := newRecorder(t, "up")
	o := startObserved(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}, http3: {handshake_rate_limit: 2}}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, rec.addr()))
	for i := range 6 {
		c, _ := h3Client(t)
		if resp, _ := do(t, c, "GET", baseURL(o.g, "tls")+"/", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("connection %d: status %d", i, resp.StatusCode)
		}
	}
	if got := exactSeriesValue(t, o.reg, "penstock_quic_retries_total", "listener=tls"); got < 1 {
		t.Errorf("penstock_quic_retries_total = %v, want at least 1", got)
	}
}

// holdHandshake is a client UDP socket that delays every datagram carrying
// a Handshake packet (RFC 9000 §17.2.4), so the client's Finished, and with
// it the handshake's completion, reaches the server only after the delay:
// requests sent in 0-RTT arrive while the server still waits for it, as on a
// long-distance link.
type holdHandshake struct {
	net.PacketConn
	delay time.Duration
}

func (h *holdHandshake) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !carriesHandshake(b) {
		return h.PacketConn.WriteTo(b, addr)
	}
	p := append([]byte(nil), b...)
	time.AfterFunc(h.delay, func() { h.PacketConn.WriteTo(p, addr) })
	return len(b), nil
}

// carriesHandshake walks the QUIC v1 packets coalesced in datagram b (RFC
// 9000 §12.2) and reports whether one is a Handshake packet.
func carriesHandshake(b []byte) bool {
	for len(b) > 7 && b[0]&0x80 != 0 { // long header
		typ := (b[0] & 0x30) >> 4
		if typ == 2 {
			return true
		}
		i := 5
		i += 1 + int(b[i]) // destination connection id
		if i >= len(b) {
			return false
		}
		i += 1 + int(b[i]) // source connection id
		if typ == 0 {      // Initial: token
			n, w := varint(b[i:])
			i += w + int(n)
		}
		if i >= len(b) {
			return false
		}
		n, w := varint(b[i:])
		i += w + int(n)
		if i > len(b) {
			return false
		}
		b = b[i:]
	}
	return false
}

// varint decodes a QUIC variable-length integer (RFC 9000 §16).
func varint(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 1
	}
	w := 1 << (b[0] >> 6)
	if len(b) < w {
		return 0, len(b) + 1
	}
	v := uint64(b[0] & 0x3f)
	for _, c := range b[1:w] {
		v = v<<8 | uint64(c)
	}
	return v, w
}

// earlyClient dials addr with QUIC, resuming from cache, and returns an
// HTTP/3 client connection; with hold it delays the handshake's completion.
func earlyClient(t *testing.T, addr string, cache tls.ClientSessionCache, tokens quic.TokenStore, hold time.Duration) *http3.ClientConn {
	t.Helper()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var pc net.PacketConn = udp
	if hold > 0 {
		pc = &holdHandshake{PacketConn: udp, delay: hold}
	}
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { tr.Close(); udp.Close() })
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := tr.DialEarly(ctx, ua,
		&tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache, NextProtos: []string{http3.NextProtoH3}, ServerName: "localhost"},
		&quic.Config{TokenStore: tokens})
	if err != nil {
		t.Fatal(err)
	}
	// Close so that the server hears of it at once rather than after its
	// idle timeout: the close may be coalesced with a Handshake packet and
	// held too, so the socket stays open until the hold has passed.
	t.Cleanup(func() {
		conn.CloseWithError(0x100, "")
		if hold > 0 {
			time.Sleep(hold + 100*time.Millisecond)
		}
	})
	return (&http3.Transport{}).NewClientConn(conn)
}

// TestZeroRTT resumes a connection with 0-RTT and checks RFC 8470's rules:
// an early GET on a route with early_data reaches the upstream at once with
// "Early-Data: 1"; an early GET elsewhere waits for the handshake; an early
// POST is never forwarded and gets 425.
func TestZeroRTT(t *testing.T) {
	var arrived atomic.Int64 // when the upstream last saw a request, UnixNano
	var count atomic.Int64
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		if r.URL.Path == "/retry" && r.Header.Get("Early-Data") == "1" {
			// An upstream that refuses anything that might be a replay.
			w.WriteHeader(http.StatusTooEarly)
			io.WriteString(w, "too early")
			return
		}
		arrived.Store(time.Now().UnixNano())
		io.WriteString(w, r.Header.Get("Early-Data"))
	}))
	g := startGateway(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}, http3: {zero_rtt: true}}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - {name: early, match: {path: /early}, upstream: up, early_data: true}
  - {name: retry, match: {path: /retry}, upstream: up, early_data: true}
  - {name: plain, match: {path_prefix: /plain}, upstream: up}
`, up))
	addr := g.Addr("tls").String()
	const hold = 300 * time.Millisecond

	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantEarly  string // Early-Data header the upstream sees
		wantWait   bool   // the request must reach the upstream only after the handshake
		wantCalls  int64  // requests the upstream gets; 0 means 1 for a 200
	}{
		{name: "GET on an early_data route goes at once", method: http3.MethodGet0RTT, path: "/early", wantStatus: 200, wantEarly: "1"},
		{name: "GET elsewhere waits for the handshake", method: http3.MethodGet0RTT, path: "/plain", wantStatus: 200, wantWait: true},
		{name: "POST is never forwarded early", method: "POST", path: "/early", wantStatus: 425},
		{name: "upstream 425 is retried after the handshake", method: http3.MethodGet0RTT, path: "/retry", wantStatus: 200, wantWait: true, wantCalls: 2},
	}
	// send resumes a connection with 0-RTT and sends one request in its
	// first flight; it returns the response, its body, how long after
	// sending the upstream saw the request and how many requests it got.
	send := func(t *testing.T, method, path string) (*http.Response, string, time.Duration, int64) {
		cache := tls.NewLRUClientSessionCache(4)
		tokens := quic.NewLRUTokenStore(4, 4)
		// A first, complete connection leaves a session ticket behind.
		first := earlyClient(t, addr, cache, tokens, 0)
		req, _ := http.NewRequest("GET", "https://"+addr+"/plain/warmup", nil)
		resp, err := first.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		first.CloseWithError(0x100, "")

		before := count.Load()
		cc := earlyClient(t, addr, cache, tokens, hold)
		start := time.Now()
		if method == "POST" {
			// http3's RoundTrip never sends a POST early; a raw stream
			// does, as a replaying attacker would.
			str, err := cc.OpenRequestStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("POST", "https://"+addr+path, nil)
			if err := str.SendRequestHeader(req); err != nil {
				t.Fatal(err)
			}
			str.Close()
			resp, err = str.ReadResponse()
		} else {
			req, _ := http.NewRequest(method, "https://"+addr+path, nil)
			resp, err = cc.RoundTrip(req)
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body), time.Unix(0, arrived.Load()).Sub(start), count.Load() - before
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp *http.Response
			var body string
			var took time.Duration
			var calls int64
			// 0-RTT packets can be lost (dropped while the server sets the
			// connection up) and are then resent after the handshake, as
			// ordinary requests. Try again until the request did arrive
			// early, which each case can tell from what came back.
			for attempt := 1; ; attempt++ {
				resp, body, took, calls = send(t, tt.method, tt.path)
				arrivedEarly := true
				switch {
				case tt.method == "POST":
					arrivedEarly = resp.StatusCode != 200
				case tt.wantEarly == "1":
					arrivedEarly = body == "1"
				case tt.wantCalls == 2:
					arrivedEarly = calls == 2
				}
				if arrivedEarly || attempt == 3 {
					break
				}
				t.Logf("attempt %d: the request arrived after the handshake; again", attempt)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus != 200 {
				if calls != 0 {
					t.Errorf("upstream got %d requests, want none", calls)
				}
				return
			}
			if want := max(tt.wantCalls, 1); calls != want {
				t.Errorf("upstream got %d requests, want %d", calls, want)
			}
			if body != tt.wantEarly {
				t.Errorf("upstream saw Early-Data %q, want %q", body, tt.wantEarly)
			}
			// The client holds its handshake back for hold, so a request
			// that waited for the handshake arrives after it.
			if tt.wantWait && took < hold {
				t.Errorf("upstream reached after %v, before the %v handshake completed", took, hold)
			}
		})
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
