package server_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/penstock-dev/penstock/internal/listener"
)

// writeCert writes a self-signed certificate for host into dir and returns
// the cert and key paths.
func writeCert(t *testing.T, dir, host string) (certFile, keyFile string) {
	t.Helper()
	cert, _, err := listener.SelfSigned(host)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, host+".crt"), filepath.Join(dir, host+".key")
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	return certFile, keyFile
}

// TestClientProtocols checks that one route serves HTTP/1.1 and HTTP/2 over
// TLS (chosen by ALPN) and h2c with prior knowledge, and that the upstream
// is reached over HTTP/1.1 in every case.
func TestClientProtocols(t *testing.T) {
	rec := newRecorder(t, "up")
	g := startGateway(t, lines(`listeners:
  - {name: plain, address: "127.0.0.1:0", protocols: [h1, h2c]}
  - {name: tls, address: "127.0.0.1:0", tls: {self_signed: true}}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path: /p}, upstream: up}]
`, rec.addr()))
	h1tls := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	tests := []struct {
		name      string
		c         *http.Client
		url       string
		wantProto int
	}{
		{"HTTP/1.1 plain", client, baseURL(g, "plain") + "/p", 1},
		{"h2c prior knowledge", h2cClient(), baseURL(g, "plain") + "/p", 2},
		{"HTTP/1.1 over TLS", h1tls, baseURL(g, "tls") + "/p", 1},
		{"HTTP/2 over TLS", h2Client(), baseURL(g, "tls") + "/p", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.c, "POST", tc.url, nil, nil)
			if resp.StatusCode != 200 || resp.ProtoMajor != tc.wantProto {
				t.Fatalf("status %d proto %s, want 200 over HTTP/%d", resp.StatusCode, resp.Proto, tc.wantProto)
			}
			s := decodeSeen(t, body)
			if s.Proto != "HTTP/1.1" {
				t.Errorf("upstream spoke %s, want HTTP/1.1", s.Proto)
			}
			wantScheme := "http"
			if resp.TLS != nil {
				wantScheme = "https"
			}
			if got := s.Header.Get("X-Forwarded-Proto"); got != wantScheme {
				t.Errorf("X-Forwarded-Proto %q, want %q", got, wantScheme)
			}
		})
	}
}

// TestTLSListener checks certificate choice by SNI, session resumption and
// the TLS 1.2 floor.
func TestTLSListener(t *testing.T) {
	dir := t.TempDir()
	aCert, aKey := writeCert(t, dir, "a.test")
	bCert, bKey := writeCert(t, dir, "b.test")
	rec := newRecorder(t, "up")
	g := startGateway(t, lines(`listeners:
  - name: tls
    address: "127.0.0.1:0"
    tls:
      certificates:
        - {cert_file: %s, key_file: %s}
        - {cert_file: %s, key_file: %s}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path: /p}, upstream: up}]
`, aCert, aKey, bCert, bKey, rec.addr()))
	addr := g.Addr("tls").String()

	served := func(t *testing.T, conf *tls.Config) (*tls.ConnectionState, error) {
		conn, err := tls.Dial("tcp", addr, conf)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		// Read the response so TLS 1.3 session tickets (sent after the
		// handshake) are received.
		io.WriteString(conn, "GET /p HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		io.ReadAll(conn)
		st := conn.ConnectionState()
		return &st, nil
	}
	for _, host := range []string{"a.test", "b.test"} {
		t.Run("SNI "+host, func(t *testing.T) {
			st, err := served(t, &tls.Config{ServerName: host, InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := st.PeerCertificates[0].DNSNames; !contains(got, host) {
				t.Errorf("served certificate for %v, want %s", got, host)
			}
		})
	}
	t.Run("unknown SNI gets the first certificate", func(t *testing.T) {
		st, err := served(t, &tls.Config{ServerName: "other.test", InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		if !contains(st.PeerCertificates[0].DNSNames, "a.test") {
			t.Errorf("served %v", st.PeerCertificates[0].DNSNames)
		}
	})
	t.Run("session resumption", func(t *testing.T) {
		conf := &tls.Config{ServerName: "a.test", InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
		if _, err := served(t, conf); err != nil {
			t.Fatal(err)
		}
		st, err := served(t, conf)
		if err != nil {
			t.Fatal(err)
		}
		if !st.DidResume {
			t.Error("second connection did not resume the session")
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		_, err := served(t, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Error("a TLS 1.1 handshake succeeded")
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestUpstreamTransports checks the ways penstock reaches upstreams: a unix
// socket, h2c with prior knowledge, and HTTP/2 over TLS with a CA file.
func TestUpstreamTransports(t *testing.T) {
	echoProto := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto)
	})

	sock := filepath.Join(t.TempDir(), "up.sock")
	uln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	usrv := &http.Server{Handler: echoProto}
	go usrv.Serve(uln)
	t.Cleanup(func() { usrv.Close() })

	h2c := httptest.NewUnstartedServer(echoProto)
	h2c.Config.Protocols = new(http.Protocols)
	h2c.Config.Protocols.SetHTTP1(true)
	h2c.Config.Protocols.SetUnencryptedHTTP2(true)
	h2c.Start()
	t.Cleanup(h2c.Close)

	h2tls := httptest.NewUnstartedServer(echoProto)
	h2tls.EnableHTTP2 = true
	h2tls.StartTLS()
	t.Cleanup(h2tls.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h2tls.Certificate().Raw}), 0o600)

	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: unix, endpoints: [{address: "unix:%s"}]}
  - {name: h2c, protocol: h2c, endpoints: [{address: %s}]}
  - {name: h2tls, protocol: h2, tls: {ca_file: %s, server_name: example.com}, endpoints: [{address: %s}]}
routes:
  - {name: unix, match: {path: /unix}, upstream: unix}
  - {name: h2c, match: {path: /h2c}, upstream: h2c}
  - {name: h2tls, match: {path: /h2tls}, upstream: h2tls}
`, sock, h2c.Listener.Addr(), caFile, h2tls.Listener.Addr()))
	tests := []struct{ path, want string }{
		{"/unix", "HTTP/1.1"},
		{"/h2c", "HTTP/2.0"},
		{"/h2tls", "HTTP/2.0"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			resp, body := do(t, client, "GET", baseURL(g, "main")+tc.path, nil, nil)
			if resp.StatusCode != 200 || body != tc.want {
				t.Errorf("status %d, upstream protocol %q; want 200 and %s", resp.StatusCode, body, tc.want)
			}
		})
	}
}
