package listener_test

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/testpki"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// serveTLS accepts connections with conf until the test ends; each one is
// answered with "ok " and the client certificate's common name, or "-".
func serveTLS(t *testing.T, conf *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := c.(*tls.Conn)
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if tc.Handshake() != nil {
					return
				}
				who := "-"
				if chains := tc.ConnectionState().VerifiedChains; len(chains) > 0 {
					who = chains[0][0].Subject.CommonName
				}
				io.WriteString(c, "ok "+who)
			}()
		}
	}()
	return ln.Addr().String()
}

// dial connects, reads the whole answer (so TLS 1.3 session tickets, sent
// after the handshake, are received) and returns it with the state.
func dial(addr string, conf *tls.Config) (string, tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		return "", tls.ConnectionState{}, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(c)
	if err == nil && len(b) == 0 {
		err = io.ErrUnexpectedEOF
	}
	return string(b), c.ConnectionState(), err
}

func TestCertificateChosenBySNI(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	var certs []config.Certificate
	for i, names := range [][]string{{"a.test", "www.a.test"}, {"*.w.test"}, {"exact.w.test"}} {
		c, k := ca.Server(t, names...).Write(t, dir, string(rune('a'+i)))
		certs = append(certs, config.Certificate{CertFile: c, KeyFile: k})
	}
	lt, err := listener.NewTLS(&config.Listener{Name: "l", Address: "127.0.0.1:0", Protocols: []string{"h1"},
		TLS: &config.ListenerTLS{Certificates: certs}}, listener.TLSOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, sni, want string // want: the served certificate's first DNS name
	}{
		{"exact name", "a.test", "a.test"},
		{"second SAN", "www.a.test", "a.test"},
		{"upper case", "WWW.A.TEST", "a.test"},
		{"trailing dot", "a.test.", "a.test"},
		{"wildcard", "x.w.test", "*.w.test"},
		{"exact beats an earlier wildcard", "exact.w.test", "exact.w.test"},
		{"wildcard covers one label only", "x.y.w.test", "a.test"},
		{"wildcard does not cover the bare domain", "w.test", "a.test"},
		{"unknown name gets the first", "other.test", "a.test"},
		{"no SNI gets the first", "", "a.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := lt.Config().GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Leaf.DNSNames[0]; got != tt.want {
				t.Errorf("served %s, want %s", got, tt.want)
			}
		})
	}
}

// TestCertificateReload checks what a reload does with each kind
// of new file, through real handshakes.
func TestCertificateReload(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	first := ca.Server(t, "localhost")
	certFile, keyFile := first.Write(t, dir, "srv")
	var mu sync.Mutex
	outcomes := map[bool]int{}
	lt, err := listener.NewTLS(&config.Listener{Name: "l", Address: "127.0.0.1:0", Protocols: []string{"h1"},
		TLS: &config.ListenerTLS{Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}}}},
		listener.TLSOptions{Logger: quiet, Reloaded: func(kind string, ok bool) {
			mu.Lock()
			defer mu.Unlock()
			outcomes[ok]++
		}})
	if err != nil {
		t.Fatal(err)
	}
	addr := serveTLS(t, lt.Config())
	served := func(t *testing.T) string {
		t.Helper()
		_, st, err := dial(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		return st.PeerCertificates[0].SerialNumber.String()
	}

	second, third := ca.Server(t, "localhost"), ca.Server(t, "localhost")
	tests := []struct {
		name       string
		cert, key  []byte
		wantSerial string
		wantOK     bool
	}{
		{"new pair is served", second.CertPEM, second.KeyPEM, second.Serial().String(), true},
		{"mismatched key keeps the previous pair", third.CertPEM, second.KeyPEM, second.Serial().String(), false},
		{"garbage keeps the previous pair", []byte("-----BEGIN CERTIFICATE-----\nnope\n"), third.KeyPEM, second.Serial().String(), false},
		{"fixed pair is served", third.CertPEM, third.KeyPEM, third.Serial().String(), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			before := outcomes[tt.wantOK]
			mu.Unlock()
			testpki.WriteFileAtomic(t, certFile, tt.cert)
			testpki.WriteFileAtomic(t, keyFile, tt.key)
			lt.Reload()
			if got := served(t); got != tt.wantSerial {
				t.Errorf("served serial %s, want %s", got, tt.wantSerial)
			}
			mu.Lock()
			defer mu.Unlock()
			if outcomes[tt.wantOK] != before+1 {
				t.Errorf("reload outcome ok=%v counted %d times, want once", tt.wantOK, outcomes[tt.wantOK]-before)
			}
		})
	}
	t.Run("unchanged files are no reload", func(t *testing.T) {
		mu.Lock()
		before := outcomes[true] + outcomes[false]
		mu.Unlock()
		lt.Reload()
		mu.Lock()
		defer mu.Unlock()
		if n := outcomes[true] + outcomes[false]; n != before {
			t.Errorf("%d reloads reported for unchanged files", n-before)
		}
	})
}

// TestWatchStopsOnClose checks that a watching TLS configuration follows
// its files and leaves no goroutine behind after Close, however many times
// listeners are built and replaced.
func TestWatchStopsOnClose(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "srv")
	lc := &config.Listener{Name: "l", Address: "127.0.0.1:0", Protocols: []string{"h1"},
		TLS: &config.ListenerTLS{Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}}}}

	before := runtime.NumGoroutine()
	for range 20 {
		lt, err := listener.NewTLS(lc, listener.TLSOptions{Logger: quiet, Watch: true, Debounce: 10 * time.Millisecond, Poll: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		lt.Close()
		lt.Close() // twice is harmless
	}

	// One that watches: a new pair written is served without calling Reload.
	lt, err := listener.NewTLS(lc, listener.TLSOptions{Logger: quiet, Watch: true, Debounce: 10 * time.Millisecond, Poll: -1})
	if err != nil {
		t.Fatal(err)
	}
	next := ca.Server(t, "localhost")
	next.Write(t, dir, "srv")
	deadline := time.Now().Add(5 * time.Second)
	for lt.Certificates()[0].Leaf.SerialNumber.Cmp(next.Serial()) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("new certificate not loaded within 5s of the file change")
		}
		time.Sleep(10 * time.Millisecond)
	}
	lt.Close()

	deadline = time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestClientAuth(t *testing.T) {
	ca, clientCA, otherCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "client CA"), testpki.NewCA(t, "other CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "srv")
	caFile := clientCA.WriteCA(t, filepath.Join(dir, "clients.pem"))
	alice, mallory := clientCA.Client(t, "alice"), otherCA.Client(t, "mallory")

	start := func(t *testing.T, mode string) (string, *listener.TLS) {
		t.Helper()
		ta := &config.ClientAuth{Mode: mode}
		if mode != config.ClientAuthNone {
			ta.CAFiles = []string{caFile}
		}
		lt, err := listener.NewTLS(&config.Listener{Name: "l", Address: "127.0.0.1:0", Protocols: []string{"h1"},
			TLS: &config.ListenerTLS{Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}}, ClientAuth: ta}},
			listener.TLSOptions{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		return serveTLS(t, lt.Config()), lt
	}
	client := func(c *testpki.Issued, max uint16) *tls.Config {
		conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MaxVersion: max}
		if c != nil {
			// Sent whatever CAs the server names, as a misconfigured or
			// hostile client would.
			conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c.Pair, nil }
		}
		return conf
	}
	tests := []struct {
		name   string
		mode   string
		cert   *testpki.Issued
		want   string // the answer, or "" for a refused handshake
		maxVer uint16
	}{
		{"none: no certificate asked", config.ClientAuthNone, nil, "ok -", 0},
		{"none: a certificate sent is ignored", config.ClientAuthNone, alice, "ok -", 0},
		{"verify_if_given: without a certificate", config.ClientAuthVerifyIfGiven, nil, "ok -", 0},
		{"verify_if_given: a valid certificate identifies the client", config.ClientAuthVerifyIfGiven, alice, "ok alice", 0},
		{"verify_if_given: an unknown CA is refused", config.ClientAuthVerifyIfGiven, mallory, "", 0},
		{"require: without a certificate is refused", config.ClientAuthRequire, nil, "", 0},
		{"require: a valid certificate", config.ClientAuthRequire, alice, "ok alice", 0},
		{"require: a valid certificate over TLS 1.2", config.ClientAuthRequire, alice, "ok alice", tls.VersionTLS12},
		{"require: an unknown CA is refused", config.ClientAuthRequire, mallory, "", 0},
		{"require: without a certificate over TLS 1.2", config.ClientAuthRequire, nil, "", tls.VersionTLS12},
	}
	addrs := map[string]string{}
	for _, mode := range []string{config.ClientAuthNone, config.ClientAuthVerifyIfGiven, config.ClientAuthRequire} {
		addrs[mode], _ = start(t, mode)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := addrs[tt.mode]
			got, _, err := dial(addr, client(tt.cert, tt.maxVer))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("served %q, want the handshake refused", got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("answer %q, error %v; want %q", got, err, tt.want)
			}
		})
	}

	t.Run("CA file reload", func(t *testing.T) {
		addr, lt := start(t, config.ClientAuthRequire)
		if _, _, err := dial(addr, client(mallory, 0)); err == nil {
			t.Fatal("mallory accepted before the CA change")
		}
		// The operator now trusts the other CA instead.
		testpki.WriteFileAtomic(t, caFile, otherCA.PEM)
		lt.Reload()
		if got, _, err := dial(addr, client(mallory, 0)); err != nil || got != "ok mallory" {
			t.Errorf("mallory after the CA change: %q, %v; want accepted", got, err)
		}
		if _, _, err := dial(addr, client(alice, 0)); err == nil {
			t.Error("alice accepted after her CA was removed")
		}
		// A CA file that does not parse keeps the current CAs.
		testpki.WriteFileAtomic(t, caFile, []byte("not PEM"))
		lt.Reload()
		if got, _, err := dial(addr, client(mallory, 0)); err != nil || got != "ok mallory" {
			t.Errorf("mallory after a broken CA file: %q, %v; want still accepted", got, err)
		}
	})

	t.Run("resumed session is checked against reloaded CAs", func(t *testing.T) {
		caFile2 := clientCA.WriteCA(t, filepath.Join(dir, "clients2.pem"))
		lt, err := listener.NewTLS(&config.Listener{Name: "l", Address: "127.0.0.1:0", Protocols: []string{"h1"},
			TLS: &config.ListenerTLS{Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}},
				ClientAuth: &config.ClientAuth{Mode: config.ClientAuthRequire, CAFiles: []string{caFile2}}}},
			listener.TLSOptions{Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		addr := serveTLS(t, lt.Config())
		conf := client(alice, 0)
		conf.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		if _, _, err := dial(addr, conf); err != nil {
			t.Fatal(err)
		}
		if _, st, err := dial(addr, conf); err != nil || !st.DidResume {
			t.Fatalf("second connection: resumed %v, error %v; want a resumption", st.DidResume, err)
		}
		testpki.WriteFileAtomic(t, caFile2, otherCA.PEM)
		lt.Reload()
		_, st, err := dial(addr, conf)
		if err == nil && st.DidResume {
			t.Error("a session of a client whose CA was removed resumed")
		}
	})
}

func TestClientAuthConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "test CA")
	certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "srv")
	notPEM := filepath.Join(dir, "not.pem")
	testpki.WriteFileAtomic(t, notPEM, []byte("hello"))
	tests := []struct {
		name  string
		files []string
		want  string
	}{
		{"missing CA file", []string{filepath.Join(dir, "absent.pem")}, "tls.client_auth.ca_files"},
		{"CA file without certificates", []string{notPEM}, "holds no PEM certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := listener.NewTLS(&config.Listener{Name: "l", Address: "127.0.0.1:0", Protocols: []string{"h1"},
				TLS: &config.ListenerTLS{Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}},
					ClientAuth: &config.ClientAuth{Mode: config.ClientAuthRequire, CAFiles: tt.files}}},
				listener.TLSOptions{Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
