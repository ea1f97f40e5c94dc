package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/icmp"
)

// A probe of each kind against a real loopback server, with the failure
// reason checked per case (issue 18, acceptance 1).

type probeCase struct {
	name   string
	target string
	module string // a module's YAML, indented under modules.m
	want   Reason
	check  func(t *testing.T, r *Result)
}

func runCases(t *testing.T, p *Prober, cases []probeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mods := modules(t, "modules:\n  m:\n"+indent(c.module, "    "))
			r := p.Probe(context.Background(), c.target, "m", mods.Modules["m"])
			if r.Reason != c.want || r.Success != (c.want == ReasonNone) {
				t.Fatalf("reason %q (success %v, error %q), want %q", r.Reason, r.Success, r.Error, c.want)
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

func indent(s, pre string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = pre + l
	}
	return strings.Join(lines, "\n") + "\n"
}

func TestHTTP(t *testing.T) {
	pk := newPKI(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-App", "probe-test")
		w.Header().Set("Last-Modified", "Mon, 07 Dec 2026 00:00:00 GMT")
		io.WriteString(w, "all good")
	})
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/ok", http.StatusFound) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.Header.Get("X-Probe"), b)
	})
	plain := startTCPServer(t, mux)
	good := startHTTPS(t, mux, pk.good(t), nil)
	expired := startHTTPS(t, mux, pk.cert(t, []string{"127.0.0.1"}, time.Now().Add(-72*time.Hour), time.Now().Add(-24*time.Hour), false), nil)
	notYet := startHTTPS(t, mux, pk.cert(t, []string{"127.0.0.1"}, time.Now().Add(24*time.Hour), time.Now().Add(72*time.Hour), false), nil)
	wrongHost := startHTTPS(t, mux, pk.cert(t, []string{"other.test"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false), nil)
	selfSigned := startHTTPS(t, mux, pk.cert(t, []string{"127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), true), nil)
	pq := startHTTPS(t, mux, pk.good(t), func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519MLKEM768} })
	classic := startHTTPS(t, mux, pk.good(t), func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519} })
	tls12 := startHTTPS(t, mux, pk.good(t), func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 })
	clientCert := startHTTPS(t, mux, pk.good(t), func(c *tls.Config) { c.ClientAuth = tls.RequireAnyClientCert })
	h3 := startH3(t, mux, pk.good(t))
	stapledCert := pk.good(t)
	stapledCert.OCSPStaple = []byte{0x30, 0x03, 0x0a, 0x01, 0x00} // any bytes: the client only reports their presence
	stapled := startHTTPS(t, mux, stapledCert, nil)
	dnsAddr := startDNS(t)
	ca := "tls_config: {ca_file: " + pk.caFile + "}"

	p := &Prober{Resolver: loopbackResolver(dnsAddr)}
	runCases(t, p, []probeCase{
		{name: "http/1.1", target: plain + "/ok", module: "prober: http", check: func(t *testing.T, r *Result) {
			if r.HTTP.StatusCode != 200 || r.HTTP.Version != "HTTP/1.1" || r.TLS != nil || r.HTTP.LastModified.IsZero() {
				t.Errorf("http facts %+v, tls %v", r.HTTP, r.TLS)
			}
			if r.Phases.Connect <= 0 || r.Phases.FirstByte <= 0 {
				t.Errorf("phases %+v: connect and first byte must be measured", r.Phases)
			}
		}},
		{name: "h2 over TLS with ALPN and a post-quantum group", target: good.URL + "/ok", module: "prober: http\nhttp: {" + ca + "}", check: func(t *testing.T, r *Result) {
			if r.HTTP.Version != "HTTP/2.0" || r.TLS.ALPN != "h2" || r.TLS.Version != "TLS 1.3" || r.TLS.Group != "X25519MLKEM768" {
				t.Errorf("version %s, tls %+v", r.HTTP.Version, r.TLS)
			}
			if r.TLS.Issuer != "CN=probe test CA" || r.TLS.EarliestExpiry.Before(time.Now()) || r.TLS.LastChainExpiry.IsZero() || r.TLS.OCSPStaple {
				t.Errorf("certificate facts %+v", r.TLS)
			}
			if r.Phases.TLS <= 0 {
				t.Errorf("tls phase not measured: %+v", r.Phases)
			}
		}},
		{name: "HTTP/1.1 only when enable_http2 is false", target: good.URL + "/ok", module: "prober: http\nhttp: {enable_http2: false, " + ca + "}", check: func(t *testing.T, r *Result) {
			// The test server offers only h2 by ALPN: no protocol is agreed.
			if r.HTTP.Version != "HTTP/1.1" || r.TLS.ALPN == "h2" {
				t.Errorf("version %s alpn %q", r.HTTP.Version, r.TLS.ALPN)
			}
		}},
		{name: "server insists on the hybrid post-quantum group", target: pq.URL + "/ok", module: "prober: http\nhttp: {" + ca + "}", check: func(t *testing.T, r *Result) {
			if r.TLS.Group != "X25519MLKEM768" {
				t.Errorf("group %q", r.TLS.Group)
			}
		}},
		{name: "OCSP response stapled", target: stapled.URL + "/ok", module: "prober: http\nhttp: {" + ca + "}", check: func(t *testing.T, r *Result) {
			if !r.TLS.OCSPStaple {
				t.Error("ocsp_stapled not reported")
			}
		}},
		{name: "server offers only X25519", target: classic.URL + "/ok", module: "prober: http\nhttp: {" + ca + "}", check: func(t *testing.T, r *Result) {
			if r.TLS.Group != "X25519" {
				t.Errorf("group %q", r.TLS.Group)
			}
		}},
		{name: "TLS 1.2 server", target: tls12.URL + "/ok", module: "prober: http\nhttp: {" + ca + "}", check: func(t *testing.T, r *Result) {
			if r.TLS.Version != "TLS 1.2" || !strings.HasPrefix(r.TLS.Cipher, "TLS_ECDHE_") {
				t.Errorf("tls %+v", r.TLS)
			}
		}},
		{name: "min_version refuses TLS 1.2", target: tls12.URL + "/ok", module: "prober: http\nhttp: {tls_config: {ca_file: " + pk.caFile + ", min_version: TLS13}}", want: "tls_alert_protocol_version_not_supported"},
		{name: "expired certificate", target: expired.URL + "/ok", module: "prober: http\nhttp: {" + ca + "}", want: ReasonTLSCertExpired},
		{name: "certificate not yet valid", target: notYet.URL + "/ok", module: "prober: http\nhttp: {" + ca + "}", want: ReasonTLSCertNotYetValid},
		{name: "certificate for another host", target: wrongHost.URL + "/ok", module: "prober: http\nhttp: {" + ca + "}", want: ReasonTLSHostnameMismatch},
		{name: "self-signed certificate", target: selfSigned.URL + "/ok", module: "prober: http\nhttp: {" + ca + "}", want: ReasonTLSUnknownAuthority},
		{name: "insecure_skip_verify accepts the expired certificate", target: expired.URL + "/ok", module: "prober: http\nhttp: {tls_config: {insecure_skip_verify: true}}", check: func(t *testing.T, r *Result) {
			if !r.TLS.EarliestExpiry.Before(time.Now()) {
				t.Errorf("expiry %v should be past", r.TLS.EarliestExpiry)
			}
		}},
		{name: "server requires a client certificate", target: clientCert.URL + "/ok", module: "prober: http\nhttp: {enable_http2: false, " + ca + "}", want: "tls_alert_certificate_required"},
		{name: "status mismatch", target: plain + "/down", module: "prober: http", want: ReasonHTTPStatusMismatch, check: func(t *testing.T, r *Result) {
			if r.HTTP.StatusCode != 503 {
				t.Errorf("status %d", r.HTTP.StatusCode)
			}
		}},
		{name: "503 accepted by valid_status_codes", target: plain + "/down", module: "prober: http\nhttp: {valid_status_codes: [503]}"},
		{name: "body must match", target: plain + "/ok", module: "prober: http\nhttp: {fail_if_body_not_matches_regexp: ['healthy']}", want: ReasonBodyMismatch, check: func(t *testing.T, r *Result) {
			if !r.FailedDueToRegex {
				t.Error("failed_due_to_regex not set")
			}
		}},
		{name: "body must not match", target: plain + "/ok", module: "prober: http\nhttp: {fail_if_body_matches_regexp: ['good']}", want: ReasonBodyMismatch},
		{name: "header matches", target: plain + "/ok", module: "prober: http\nhttp: {fail_if_header_not_matches: [{header: X-App, regexp: '^probe-'}]}"},
		{name: "header missing", target: plain + "/ok", module: "prober: http\nhttp: {fail_if_header_not_matches: [{header: X-Missing, regexp: 'x'}]}", want: ReasonHeaderMismatch},
		{name: "version not accepted", target: plain + "/ok", module: "prober: http\nhttp: {valid_http_versions: [HTTP/2.0]}", want: ReasonHTTPVersionMismatch},
		{name: "fail_if_not_ssl", target: plain + "/ok", module: "prober: http\nhttp: {fail_if_not_ssl: true}", want: ReasonTLSRequired},
		{name: "redirect followed", target: plain + "/redirect", module: "prober: http", check: func(t *testing.T, r *Result) {
			if r.HTTP.Redirects != 1 || r.HTTP.StatusCode != 200 {
				t.Errorf("redirects %d status %d", r.HTTP.Redirects, r.HTTP.StatusCode)
			}
		}},
		{name: "redirect not followed", target: plain + "/redirect", module: "prober: http\nhttp: {no_follow_redirects: true, valid_status_codes: [302]}"},
		{name: "method, headers and body", target: plain + "/echo", module: "prober: http\nhttp: {method: POST, headers: {X-Probe: yes}, body: hello, fail_if_body_not_matches_regexp: ['^POST yes hello$']}"},
		{name: "connection refused", target: "http://" + closedPort(t) + "/", module: "prober: http", want: ReasonConnectRefused},
		{name: "slow answer times out", target: plain + "/slow", module: "prober: http\ntimeout: 300ms", want: ReasonTimeout},
		{name: "name does not exist", target: "http://missing.probe.test/", module: "prober: http\nhttp: {preferred_ip_protocol: ip4}", want: ReasonDNSNXDomain},
		{name: "HTTP/3 over QUIC", target: h3 + "ok", module: "prober: http\nhttp: {enable_http3: true, " + ca + "}", check: func(t *testing.T, r *Result) {
			if r.HTTP.Version != "HTTP/3.0" || r.QUIC == nil || r.TLS.ALPN != "h3" || r.TLS.Version != "TLS 1.3" {
				t.Fatalf("version %s quic %+v tls %+v", r.HTTP.Version, r.QUIC, r.TLS)
			}
			if r.QUIC.HandshakeRTT <= 0 || r.QUIC.PacketsSent == 0 || r.QUIC.Version == "" {
				t.Errorf("quic facts %+v", r.QUIC)
			}
		}},
		{name: "HTTP/3 with an expired certificate", target: startH3(t, mux, pk.cert(t, []string{"127.0.0.1"}, time.Now().Add(-72*time.Hour), time.Now().Add(-24*time.Hour), false)) + "ok",
			module: "prober: http\nhttp: {enable_http3: true, " + ca + "}", want: ReasonTLSCertExpired},
		{name: "HTTP/3 where nothing answers", target: "https://" + closedPort(t) + "/", module: "prober: http\ntimeout: 1s\nhttp: {enable_http3: true, " + ca + "}", want: ReasonQUICHandshake},
	})
}

func TestTLSResumption(t *testing.T) {
	pk := newPKI(t)
	srv := startHTTPS(t, http.NotFoundHandler(), pk.good(t), nil)
	// The http prober reads the answer, so the TLS 1.3 tickets that came
	// before it are in the cache for the next probe.
	mods := modules(t, "modules:\n  web:\n    prober: http\n    http: {valid_status_codes: [404], tls_config: {ca_file: "+pk.caFile+"}}\n")
	p := &Prober{Sessions: tls.NewLRUClientSessionCache(16)}
	target := srv.URL
	first := p.Probe(context.Background(), target, "web", mods.Modules["web"])
	if !first.Success || first.TLS.Resumed {
		t.Fatalf("first probe: success %v resumed %v (%s)", first.Success, first.TLS != nil && first.TLS.Resumed, first.Error)
	}
	for i := range 3 {
		r := p.Probe(context.Background(), target, "web", mods.Modules["web"])
		if !r.Success {
			t.Fatalf("probe %d: %s", i, r.Error)
		}
		if r.TLS.Resumed {
			return
		}
	}
	t.Fatal("no probe resumed the session")
}

func TestTCP(t *testing.T) {
	pk := newPKI(t)
	echoAddr := startTCP(t, echo)
	smtp := startTCP(t, smtpLike(pk.good(t)))
	tlsSrv := startHTTPS(t, http.NotFoundHandler(), pk.good(t), nil)
	tlsAddr := strings.TrimPrefix(tlsSrv.URL, "https://")
	ca := "tls_config: {ca_file: " + pk.caFile + "}"
	runCases(t, &Prober{}, []probeCase{
		{name: "connect only", target: echoAddr, module: "prober: tcp"},
		{name: "send and expect", target: echoAddr, module: "prober: tcp\ntcp:\n  query_response:\n  - send: PING\n  - expect: ^PING$"},
		{name: "expect mismatch", target: echoAddr, module: "prober: tcp\ntimeout: 500ms\ntcp:\n  query_response:\n  - send: PING\n  - expect: ^PONG$", want: ReasonExpectMismatch, check: func(t *testing.T, r *Result) {
			if !r.FailedDueToRegex {
				t.Error("failed_due_to_regex not set")
			}
		}},
		{name: "STARTTLS", target: smtp, module: "prober: tcp\ntcp:\n  " + ca + "\n  query_response:\n  - expect: ^220\n  - send: EHLO prober\n  - expect: ^250 STARTTLS\n  - send: STARTTLS\n  - expect: ^220\n  - starttls: true\n  - expect: ^220 .* over TLS\n  - send: QUIT", check: func(t *testing.T, r *Result) {
			if r.TLS == nil || r.TLS.Version != "TLS 1.3" {
				t.Errorf("tls %+v", r.TLS)
			}
		}},
		{name: "tls from the start", target: tlsAddr, module: "prober: tcp\ntcp: {tls: true, " + ca + "}"},
		{name: "refused", target: closedPort(t), module: "prober: tcp", want: ReasonConnectRefused},
		{name: "tls kind: handshake only", target: tlsAddr, module: "prober: tls\ntcp: {tls_config: {ca_file: " + pk.caFile + ", alpn: [h2, http/1.1]}}", check: func(t *testing.T, r *Result) {
			if r.TLS.ALPN != "h2" {
				t.Errorf("alpn %q", r.TLS.ALPN)
			}
		}},
		{name: "tls kind: plain server", target: smtp, module: "prober: tls\ntimeout: 1s", want: ReasonTLSHandshake},
		{name: "tls kind: server name mismatch", target: tlsAddr, module: "prober: tls\ntcp: {tls_config: {ca_file: " + pk.caFile + ", server_name: other.test}}", want: ReasonTLSHostnameMismatch},
	})
}

func TestDNS(t *testing.T) {
	srv := startDNS(t)
	runCases(t, &Prober{}, []probeCase{
		{name: "A over UDP", target: srv, module: "prober: dns\ndns: {query_name: probe.test, query_type: A, validate_answer_rrs: {fail_if_none_matches_regexp: ['192\\.0\\.2\\.10']}}", check: func(t *testing.T, r *Result) {
			if r.DNS.Answer != 1 || r.DNS.Rcode != "NOERROR" || !r.DNS.QuerySucceeded {
				t.Errorf("dns %+v", r.DNS)
			}
		}},
		{name: "A over TCP", target: srv, module: "prober: dns\ndns: {query_name: probe.test, query_type: A, transport_protocol: tcp}"},
		{name: "SOA serial", target: srv, module: "prober: dns\ndns: {query_name: probe.test, query_type: SOA}", check: func(t *testing.T, r *Result) {
			if r.DNS.Serial != 2026120701 {
				t.Errorf("serial %d", r.DNS.Serial)
			}
		}},
		{name: "NXDOMAIN", target: srv, module: "prober: dns\ndns: {query_name: nope.probe.test, query_type: A}", want: ReasonDNSNXDomain},
		{name: "NXDOMAIN accepted", target: srv, module: "prober: dns\ndns: {query_name: nope.probe.test, query_type: A, valid_rcodes: [NXDOMAIN]}"},
		{name: "answer must not match", target: srv, module: "prober: dns\ndns: {query_name: probe.test, query_type: A, validate_answer_rrs: {fail_if_matches_regexp: ['192\\.0\\.2\\.']}}", want: ReasonDNSAnswerMismatch},
		{name: "empty answer fails none-matches", target: srv, module: "prober: dns\ndns: {query_name: probe.test, query_type: AAAA, validate_answer_rrs: {fail_if_none_matches_regexp: ['.']}}", want: ReasonDNSAnswerMismatch},
		{name: "nothing listens (TCP)", target: closedPort(t), module: "prober: dns\ndns: {query_name: probe.test, transport_protocol: tcp}", want: ReasonConnectRefused},
	})
}

func TestGRPC(t *testing.T) {
	pk := newPKI(t)
	plain := startGRPC(t, nil)
	cert := pk.good(t)
	secure := startGRPC(t, &cert)
	expiredCert := pk.cert(t, []string{"127.0.0.1"}, time.Now().Add(-72*time.Hour), time.Now().Add(-24*time.Hour), false)
	expired := startGRPC(t, &expiredCert)
	runCases(t, &Prober{}, []probeCase{
		{name: "serving", target: plain, module: "prober: grpc\ngrpc: {service: ok}", check: func(t *testing.T, r *Result) {
			if r.GRPC.ServingStatus != "SERVING" || r.GRPC.StatusCode != 0 {
				t.Errorf("grpc %+v", r.GRPC)
			}
		}},
		{name: "whole server", target: plain, module: "prober: grpc"},
		{name: "not serving", target: plain, module: "prober: grpc\ngrpc: {service: down}", want: ReasonGRPCNotServing},
		{name: "unknown service", target: plain, module: "prober: grpc\ngrpc: {service: nope}", want: ReasonGRPCError, check: func(t *testing.T, r *Result) {
			if r.GRPC.StatusCode != 5 { // NOT_FOUND
				t.Errorf("status code %d", r.GRPC.StatusCode)
			}
		}},
		{name: "over TLS", target: secure, module: "prober: grpc\ngrpc: {service: ok, tls: true, tls_config: {ca_file: " + pk.caFile + "}}", check: func(t *testing.T, r *Result) {
			if r.TLS == nil || r.TLS.ALPN != "h2" {
				t.Errorf("tls %+v", r.TLS)
			}
		}},
		{name: "expired certificate", target: expired, module: "prober: grpc\ntimeout: 2s\ngrpc: {tls: true, tls_config: {ca_file: " + pk.caFile + "}}", want: ReasonTLSCertExpired},
		{name: "refused", target: closedPort(t), module: "prober: grpc\ntimeout: 1s", want: ReasonConnectRefused},
	})
}

func TestICMP(t *testing.T) {
	mods := modules(t, "modules:\n  icmp:\n    prober: icmp\n    timeout: 2s\n    icmp: {preferred_ip_protocol: ip4}\n")
	r := (&Prober{}).Probe(context.Background(), "127.0.0.1", "icmp", mods.Modules["icmp"])
	// Whether this process may open an ICMP socket depends on the machine:
	// either the echo comes back, or the reason says it was not permitted.
	allowed := icmpAllowed()
	switch {
	case allowed && !r.Success:
		t.Fatalf("an ICMP socket opens here, but the probe failed: %s (%s)", r.Reason, r.Error)
	case allowed && (r.Phases.RTT <= 0 || r.ICMP.Socket == ""):
		t.Fatalf("rtt %v socket %q", r.Phases.RTT, r.ICMP.Socket)
	case !allowed && r.Reason != ReasonICMPNotPermitted:
		t.Fatalf("no ICMP socket may open here; reason %q, want %q", r.Reason, ReasonICMPNotPermitted)
	}
	t.Logf("icmp: success %v reason %q socket %+v rtt %v", r.Success, r.Reason, r.ICMP, time.Duration(r.Phases.RTT))
}

// icmpAllowed says whether either kind of ICMP socket opens here.
func icmpAllowed() bool {
	for _, network := range []string{"udp4", "ip4:icmp"} {
		if c, err := icmp.ListenPacket(network, "0.0.0.0"); err == nil {
			c.Close()
			return true
		}
	}
	return false
}

// loopbackResolver resolves through the DNS server at addr.
func loopbackResolver(addr string) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
}

// startTCPServer serves h over plain HTTP/1.1 and returns its base URL.
func startTCPServer(t *testing.T, h http.Handler) string {
	srv := &http.Server{Handler: h}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
