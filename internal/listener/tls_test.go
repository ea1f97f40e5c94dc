package listener_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/listener"
)

func TestSelfSigned(t *testing.T) {
	tests := []struct {
		name      string
		host      string
		wantDNS   []string
		wantExtra []string // IP SANs beyond 127.0.0.1 and ::1
	}{
		{name: "no host", host: "", wantDNS: []string{"localhost"}},
		{name: "host name", host: "gw.example.test", wantDNS: []string{"localhost", "gw.example.test"}},
		{name: "localhost is not repeated", host: "localhost", wantDNS: []string{"localhost"}},
		{name: "IPv4 address", host: "192.0.2.5", wantDNS: []string{"localhost"}, wantExtra: []string{"192.0.2.5"}},
		{name: "IPv6 address", host: "2001:db8::5", wantDNS: []string{"localhost"}, wantExtra: []string{"2001:db8::5"}},
		{name: "unspecified address adds nothing", host: "0.0.0.0", wantDNS: []string{"localhost"}},
		{name: "loopback is not repeated", host: "127.0.0.1", wantDNS: []string{"localhost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, fp, err := listener.SelfSigned(tt.host)
			if err != nil {
				t.Fatalf("SelfSigned: %v", err)
			}
			if len(cert.Certificate) != 1 {
				t.Fatalf("chain has %d certificates, want 1", len(cert.Certificate))
			}
			leaf, err := x509.ParseCertificate(cert.Certificate[0])
			if err != nil {
				t.Fatalf("parse: %v", err)
			}

			key, ok := cert.PrivateKey.(*ecdsa.PrivateKey)
			if !ok || key.Curve != elliptic.P256() {
				t.Errorf("key is %T, want an ECDSA P-256 key", cert.PrivateKey)
			}
			sum := sha256.Sum256(cert.Certificate[0])
			if fp != hex.EncodeToString(sum[:]) {
				t.Errorf("fingerprint = %s, want the SHA-256 of the DER certificate %x", fp, sum)
			}
			if cert.Leaf == nil || !cert.Leaf.Equal(leaf) {
				t.Error("Leaf is not the parsed certificate")
			}
			if !slices.Equal(leaf.DNSNames, tt.wantDNS) {
				t.Errorf("DNS SANs = %q, want %q", leaf.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if want := append([]string{"127.0.0.1", "::1"}, tt.wantExtra...); !slices.Equal(ips, want) {
				t.Errorf("IP SANs = %q, want %q", ips, want)
			}
			if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) {
				t.Error("certificate is not for server authentication")
			}
			now := time.Now()
			if now.Before(leaf.NotBefore) || leaf.NotAfter.Sub(now) < 360*24*time.Hour {
				t.Errorf("valid %v to %v, want from now for about a year", leaf.NotBefore, leaf.NotAfter)
			}
		})
	}
}

func TestSelfSignedCertificatesDiffer(t *testing.T) {
	_, a, err := listener.SelfSigned("")
	if err != nil {
		t.Fatal(err)
	}
	_, b, err := listener.SelfSigned("")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Error("two generated certificates have the same fingerprint")
	}
}

func TestSelfSignedServesLoopbackClients(t *testing.T) {
	cert, _, err := listener.SelfSigned("")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(cert.Leaf)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				io.WriteString(c, "ok")
			}()
		}
	}()

	for _, name := range []string{"localhost", "127.0.0.1"} {
		t.Run(name, func(t *testing.T) {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: roots, ServerName: name})
			if err != nil {
				t.Fatalf("handshake verifying %s: %v", name, err)
			}
			defer c.Close()
			b, _ := io.ReadAll(c)
			if string(b) != "ok" {
				t.Errorf("read %q, want ok", b)
			}
		})
	}
}

// writeKeyPair writes a generated certificate and key as PEM files.
func writeKeyPair(t *testing.T, host string) (certFile, keyFile string, leaf *x509.Certificate) {
	t.Helper()
	cert, _, err := listener.SelfSigned(host)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(cert.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert.Leaf
}

func TestTLSConfig(t *testing.T) {
	certFile, keyFile, _ := writeKeyPair(t, "files.example.test")
	tests := []struct {
		name            string
		listener        config.Listener
		wantALPN        []string
		wantMin         uint16
		wantCerts       int
		wantFingerprint bool
	}{
		{
			name:     "h1 and h2: h2 preferred, TLS 1.3 floor",
			listener: config.Listener{Address: "127.0.0.1:8443", Protocols: []string{"h1", "h2"}, TLS: &config.ListenerTLS{SelfSigned: true, MinVersion: "1.3"}},
			wantALPN: []string{"h2", "http/1.1"}, wantMin: tls.VersionTLS13, wantCerts: 1, wantFingerprint: true,
		},
		{
			name:     "order in the config does not change the preference",
			listener: config.Listener{Address: "127.0.0.1:8443", Protocols: []string{"h2", "h1"}, TLS: &config.ListenerTLS{SelfSigned: true}},
			wantALPN: []string{"h2", "http/1.1"}, wantMin: tls.VersionTLS12, wantCerts: 1, wantFingerprint: true,
		},
		{
			name:     "h1 only",
			listener: config.Listener{Address: ":8443", Protocols: []string{"h1"}, TLS: &config.ListenerTLS{SelfSigned: true, MinVersion: "1.2"}},
			wantALPN: []string{"http/1.1"}, wantMin: tls.VersionTLS12, wantCerts: 1, wantFingerprint: true,
		},
		{
			name:     "h2 only",
			listener: config.Listener{Address: ":8443", Protocols: []string{"h2"}, TLS: &config.ListenerTLS{SelfSigned: true}},
			wantALPN: []string{"h2"}, wantMin: tls.VersionTLS12, wantCerts: 1, wantFingerprint: true,
		},
		{
			name: "certificate files, no fingerprint",
			listener: config.Listener{Address: ":8443", Protocols: []string{"h1", "h2"},
				TLS: &config.ListenerTLS{Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}}}},
			wantALPN: []string{"h2", "http/1.1"}, wantMin: tls.VersionTLS12, wantCerts: 1,
		},
		{
			name: "certificate files and a self-signed one",
			listener: config.Listener{Address: ":8443", Protocols: []string{"h1"},
				TLS: &config.ListenerTLS{SelfSigned: true, Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}}}},
			wantALPN: []string{"http/1.1"}, wantMin: tls.VersionTLS12, wantCerts: 2, wantFingerprint: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lt, err := listener.NewTLS(&tt.listener, listener.TLSOptions{})
			if err != nil {
				t.Fatalf("NewTLS: %v", err)
			}
			conf, fp := lt.Config(), lt.Fingerprint()
			if !slices.Equal(conf.NextProtos, tt.wantALPN) {
				t.Errorf("NextProtos = %q, want %q", conf.NextProtos, tt.wantALPN)
			}
			if conf.MinVersion != tt.wantMin {
				t.Errorf("MinVersion = %#x, want %#x", conf.MinVersion, tt.wantMin)
			}
			if n := len(lt.Certificates()); n != tt.wantCerts {
				t.Errorf("%d certificates, want %d", n, tt.wantCerts)
			}
			if got := fp != ""; got != tt.wantFingerprint {
				t.Errorf("fingerprint = %q, want one: %v", fp, tt.wantFingerprint)
			}
			if tt.wantFingerprint && len(fp) != 64 {
				t.Errorf("fingerprint %q is not 64 hex digits", fp)
			}
		})
	}
}

func TestTLSConfigSelfSignedCoversTheListenHost(t *testing.T) {
	lt, err := listener.NewTLS(&config.Listener{Address: "gw.example.test:8443", Protocols: []string{"h1"},
		TLS: &config.ListenerTLS{SelfSigned: true}}, listener.TLSOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fp := lt.Fingerprint()
	cert := lt.Certificates()[0]
	if err := cert.Leaf.VerifyHostname("gw.example.test"); err != nil {
		t.Errorf("self-signed certificate does not cover the listen host: %v", err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	if fp != hex.EncodeToString(sum[:]) {
		t.Errorf("fingerprint %s is not the served certificate's", fp)
	}
}

func TestTLSConfigCertificateErrors(t *testing.T) {
	certFile, keyFile, _ := writeKeyPair(t, "")
	tests := []struct {
		name  string
		certs []config.Certificate
		want  string
	}{
		{name: "missing cert file", certs: []config.Certificate{{CertFile: filepath.Join(t.TempDir(), "absent.pem"), KeyFile: keyFile}}, want: "tls.certificates[0]"},
		{name: "key and cert swapped", certs: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}, {CertFile: keyFile, KeyFile: certFile}}, want: "tls.certificates[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := listener.TLSConfig(&config.Listener{Address: ":8443", Protocols: []string{"h1"},
				TLS: &config.ListenerTLS{Certificates: tt.certs}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("TLSConfig error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestTLSConfigNegotiatesALPNOverLoopback(t *testing.T) {
	conf, _, err := listener.TLSConfig(&config.Listener{Address: "127.0.0.1:0", Protocols: []string{"h1", "h2"},
		TLS: &config.ListenerTLS{SelfSigned: true, MinVersion: "1.3"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()

	tests := []struct {
		name    string
		offer   []string
		max     uint16
		want    string
		wantErr bool
	}{
		{name: "client offers both: server prefers h2", offer: []string{"http/1.1", "h2"}, want: "h2"},
		{name: "client offers http/1.1", offer: []string{"http/1.1"}, want: "http/1.1"},
		{name: "TLS 1.2 client is refused", offer: []string{"h2"}, max: tls.VersionTLS12, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", ln.Addr().String(),
				&tls.Config{InsecureSkipVerify: true, NextProtos: tt.offer, MaxVersion: tt.max})
			if (err != nil) != tt.wantErr {
				t.Fatalf("handshake error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer c.Close()
			if got := c.ConnectionState().NegotiatedProtocol; got != tt.want {
				t.Errorf("negotiated %q, want %q", got, tt.want)
			}
		})
	}
}
