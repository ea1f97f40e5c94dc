package probe

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/quic-go/quic-go/http3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// pki is a test certificate authority that can also issue the broken
// certificates a prober must recognise: expired, for another host,
// self-signed.
type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "probe test CA"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca, caKey: key, caFile: file}
}

// cert issues a server certificate for names valid from notBefore to
// notAfter; selfSigned signs it with its own key.
func (p *pki) cert(t testing.TB, names []string, notBefore, notAfter time.Time, selfSigned bool) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]},
		NotBefore: notBefore, NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	parent, signer := p.ca, p.caKey
	if selfSigned {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// good is a valid certificate for localhost and 127.0.0.1.
func (p *pki) good(t testing.TB) tls.Certificate {
	return p.cert(t, []string{"localhost", "127.0.0.1"}, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), false)
}

// startHTTPS serves h over TLS (HTTP/2 and HTTP/1.1) with cert; cfg may
// adjust the server's TLS configuration.
func startHTTPS(t testing.TB, h http.Handler, cert tls.Certificate, cfg func(*tls.Config)) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	// The broken-certificate cases make the server log every refused
	// handshake; the test checks the client's side.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if cfg != nil {
		cfg(srv.TLS)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// startH3 serves h over HTTP/3 on loopback UDP and returns its https URL.
func startH3(t testing.TB, h http.Handler, cert tls.Certificate) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http3.Server{Handler: h, TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}})}
	go srv.Serve(pc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		pc.Close()
	})
	return "https://" + pc.LocalAddr().String() + "/"
}

// startTCP serves each connection with handle on a loopback port.
func startTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// smtpLike greets, answers EHLO, and upgrades to TLS on STARTTLS (RFC
// 3207), then greets again over TLS.
func smtpLike(cert tls.Certificate) func(net.Conn) {
	return func(c net.Conn) {
		rd := bufio.NewReader(c)
		c.Write([]byte("220 probe.test ESMTP\r\n"))
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				return
			}
			switch cmd := strings.ToUpper(strings.TrimSpace(line)); {
			case strings.HasPrefix(cmd, "EHLO"):
				c.Write([]byte("250-probe.test\r\n250 STARTTLS\r\n"))
			case cmd == "STARTTLS":
				c.Write([]byte("220 go ahead\r\n"))
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
				if tc.Handshake() != nil {
					return
				}
				tc.Write([]byte("220 probe.test ready over TLS\r\n"))
				bufio.NewReader(tc).ReadString('\n')
				return
			default:
				c.Write([]byte("500 unknown\r\n"))
			}
		}
	}
}

// echo copies lines back.
func echo(c net.Conn) {
	rd := bufio.NewReader(c)
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			return
		}
		c.Write([]byte(line))
	}
}

// startDNS serves a small zone over UDP and TCP on the same loopback port:
// probe.test. A 192.0.2.10 and SOA; anything else NXDOMAIN.
func startDNS(t testing.TB) string {
	t.Helper()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		name := strings.ToLower(q.Question[0].Name)
		switch {
		case name == "probe.test." && q.Question[0].Qtype == dns.TypeA:
			rr, _ := dns.NewRR("probe.test. 300 IN A 192.0.2.10")
			m.Answer = append(m.Answer, rr)
		case name == "probe.test." && q.Question[0].Qtype == dns.TypeSOA:
			rr, _ := dns.NewRR("probe.test. 300 IN SOA ns.probe.test. admin.probe.test. 2026120701 3600 600 86400 300")
			m.Answer = append(m.Answer, rr)
		case name == "probe.test.":
		default:
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})
	// One port for both transports: bind TCP first, then UDP on its port
	// (retrying if another process holds the UDP side).
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			ln.Close()
			continue
		}
		udp := &dns.Server{PacketConn: pc, Handler: handler}
		tcp := &dns.Server{Listener: ln, Handler: handler}
		go udp.ActivateAndServe()
		go tcp.ActivateAndServe()
		t.Cleanup(func() { udp.Shutdown(); tcp.Shutdown() })
		return ln.Addr().String()
	}
	t.Fatal("no loopback port free for both UDP and TCP")
	return ""
}

// startGRPC serves the health checking protocol; "ok" is SERVING and
// "down" NOT_SERVING.
func startGRPC(t testing.TB, cert *tls.Certificate) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if cert != nil {
		opts = append(opts, grpc.Creds(credentialsFor(*cert)))
	}
	srv := grpc.NewServer(opts...)
	hs := health.NewServer()
	hs.SetServingStatus("ok", grpc_health_v1.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", grpc_health_v1.HealthCheckResponse_NOT_SERVING)
	grpc_health_v1.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// closedPort is a loopback port nothing listens on.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// modules loads a blackbox.yml from text, failing the test on error.
func modules(t testing.TB, text string) *Modules {
	t.Helper()
	m, err := LoadModules([]byte(text), "test.yml")
	if err != nil {
		t.Fatal(err)
	}
	return m
}
