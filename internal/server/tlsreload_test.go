package server_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/server"
	"github.com/penstock-dev/penstock/internal/testpki"
)

// certFiles is a certificate and key deployed in a directory in one of the
// ways operators deploy them, and replaced the same way.
type certFiles interface {
	paths() (certFile, keyFile string)
	replace(t *testing.T, c *testpki.Issued)
}

// renamed files are replaced by writing a temporary file and renaming it
// over the old one (editors, cert-manager's csi driver, most tools).
type renamed struct{ dir string }

func (r renamed) paths() (string, string) {
	return filepath.Join(r.dir, "tls.crt"), filepath.Join(r.dir, "tls.key")
}
func (r renamed) replace(t *testing.T, c *testpki.Issued) { c.Write(t, r.dir, "tls") }

// inPlace files are truncated and rewritten: a reader can see a half
// written file, or a new certificate with the old key.
type inPlace struct{ dir string }

func (p inPlace) paths() (string, string) {
	return filepath.Join(p.dir, "tls.crt"), filepath.Join(p.dir, "tls.key")
}
func (p inPlace) replace(t *testing.T, c *testpki.Issued) {
	certFile, keyFile := p.paths()
	if err := os.WriteFile(certFile, c.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

// secretVolume mimics a Kubernetes Secret volume: tls.crt and tls.key are
// symlinks into "..data", itself a symlink to a timestamped directory; an
// update writes a new directory and renames a new "..data" over the old.
type secretVolume struct {
	dir string
	gen *int
}

func (s secretVolume) paths() (string, string) {
	return filepath.Join(s.dir, "tls.crt"), filepath.Join(s.dir, "tls.key")
}
func (s secretVolume) replace(t *testing.T, c *testpki.Issued) {
	*s.gen++
	ts := fmt.Sprintf("..2026_11_21_%02d", *s.gen)
	if err := os.Mkdir(filepath.Join(s.dir, ts), 0o700); err != nil {
		t.Fatal(err)
	}
	c.Write(t, filepath.Join(s.dir, ts), "tls")
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		if _, err := os.Lstat(filepath.Join(s.dir, f)); err != nil {
			os.Symlink(filepath.Join("..data", f), filepath.Join(s.dir, f))
		}
	}
}

// TestCertificateReplacedWithoutFailedRequests replaces a listener's
// certificate and key on disk while clients keep opening fresh TLS
// connections: no request fails, and new connections get the new
// certificate within seconds, never the old one once the new one was seen.
func TestCertificateReplacedWithoutFailedRequests(t *testing.T) {
	ca := testpki.NewCA(t, "penstock test CA")
	rec := newRecorder(t, "up")
	tests := []struct {
		name  string
		files func(dir string) certFiles
	}{
		{"files renamed over", func(dir string) certFiles { return renamed{dir} }},
		{"files rewritten in place", func(dir string) certFiles { return inPlace{dir} }},
		{"Kubernetes Secret volume", func(dir string) certFiles { return secretVolume{dir, new(int)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := tt.files(t.TempDir())
			oldCert, newCert := ca.Server(t, "localhost"), ca.Server(t, "localhost")
			files.replace(t, oldCert)
			certFile, keyFile := files.paths()
			o := startObserved(t, lines(`listeners:
  - name: tls
    address: "127.0.0.1:0"
    tls: {certificates: [{cert_file: %s, key_file: %s}]}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path: /p}, upstream: up}]
`, certFile, keyFile, rec.addr()))
			url := baseURL(o.g, "tls") + "/p"

			// Two clients, each request on a new connection, until both have
			// seen the new certificate 20 times (bounded by count and time).
			const workers, maxRequests = 2, 4000
			deadline := time.Now().Add(15 * time.Second)
			swap := make(chan struct{})
			var swapOnce sync.Once
			type result struct {
				requests, failures  int
				sawNew, oldAfterNew int
				firstErr            error
			}
			results := make([]result, workers)
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := &results[w]
					c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
						DisableKeepAlives: true,
						TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"},
					}}
					defer c.CloseIdleConnections()
					for r.requests < maxRequests && r.sawNew < 20 && time.Now().Before(deadline) {
						r.requests++
						if r.requests == 30 {
							swapOnce.Do(func() { close(swap) })
						}
						resp, err := c.Get(url)
						if err == nil {
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode != http.StatusOK {
								err = fmt.Errorf("status %d", resp.StatusCode)
							}
						}
						if err != nil {
							r.failures++
							if r.firstErr == nil {
								r.firstErr = err
							}
							continue
						}
						switch serial := resp.TLS.PeerCertificates[0].SerialNumber; {
						case serial.Cmp(newCert.Serial()) == 0:
							r.sawNew++
						case r.sawNew > 0:
							r.oldAfterNew++
						case serial.Cmp(oldCert.Serial()) != 0:
							r.failures++
							r.firstErr = fmt.Errorf("served serial %x, neither old nor new", serial)
						}
					}
				}()
			}
			<-swap
			swapped := time.Now()
			files.replace(t, newCert)
			wg.Wait()
			took := time.Since(swapped)

			for w, r := range results {
				if r.failures > 0 {
					t.Errorf("client %d: %d of %d requests failed; first: %v", w, r.failures, r.requests, r.firstErr)
				}
				if r.sawNew < 20 {
					t.Errorf("client %d: new certificate served %d times in %d requests, want 20", w, r.sawNew, r.requests)
				}
				if r.oldAfterNew > 0 {
					t.Errorf("client %d: old certificate served %d times after the new one", w, r.oldAfterNew)
				}
			}
			t.Logf("%d+%d requests; both clients had the new certificate 20 times %v after the swap", results[0].requests, results[1].requests, took.Round(time.Millisecond))
			if got := seriesValue(t, o.reg, "penstock_tls_reloads_total", map[string]string{"listener": "tls", "kind": "certificates", "result": "success"}); got < 1 {
				t.Errorf("penstock_tls_reloads_total{result=success} = %g, want at least 1", got)
			}
			wantExpiry := float64(newCert.Pair.Leaf.NotAfter.Unix())
			if got := seriesValue(t, o.reg, "penstock_tls_certificate_not_after_timestamp_seconds", map[string]string{"listener": "tls", "cert_file": certFile}); got != wantExpiry {
				t.Errorf("certificate expiry metric = %g, want the new certificate's %g", got, wantExpiry)
			}
		})
	}
}

// TestBadCertificateKeepsTheOldOne replaces a certificate with files that do
// not load: the previous certificate keeps serving, the failure is counted,
// and a later good pair is picked up.
func TestBadCertificateKeepsTheOldOne(t *testing.T) {
	ca := testpki.NewCA(t, "penstock test CA")
	rec := newRecorder(t, "up")
	dir := t.TempDir()
	good := ca.Server(t, "localhost")
	certFile, keyFile := good.Write(t, dir, "tls")
	o := startObserved(t, lines(`listeners:
  - name: tls
    address: "127.0.0.1:0"
    tls: {certificates: [{cert_file: %s, key_file: %s}]}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path: /p}, upstream: up}]
`, certFile, keyFile, rec.addr()))
	url := baseURL(o.g, "tls") + "/p"
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"},
	}}
	served := func(t *testing.T) *big.Int {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatalf("request: %v", err)
		}
		resp.Body.Close()
		return resp.TLS.PeerCertificates[0].SerialNumber
	}
	failures := func() float64 {
		return seriesValue(t, o.reg, "penstock_tls_reloads_total", map[string]string{"listener": "tls", "kind": "certificates", "result": "failure"})
	}

	other := ca.Server(t, "localhost")
	tests := []struct {
		name      string
		cert, key []byte
	}{
		{"key of another certificate", other.CertPEM, good.KeyPEM},
		{"certificate is not PEM", []byte("not a certificate\n"), other.KeyPEM},
		{"empty key", other.CertPEM, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := failures()
			testpki.WriteFileAtomic(t, certFile, tt.cert)
			testpki.WriteFileAtomic(t, keyFile, tt.key)
			waitUntil(t, 5*time.Second, func() bool { return failures() > before })
			if got := served(t); got.Cmp(good.Serial()) != 0 {
				t.Errorf("served serial %x after a bad replacement, want the previous %x", got, good.Serial())
			}
		})
	}
	t.Run("a good pair afterwards is served", func(t *testing.T) {
		next := ca.Server(t, "localhost")
		next.Write(t, dir, "tls")
		waitUntil(t, 5*time.Second, func() bool { return served(t).Cmp(next.Serial()) == 0 })
	})
}

// waitUntil polls cond every 20ms until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("condition not met within %v", timeout)
		}
	}
}

// watchers counts the goroutines watching TLS files.
func watchers() int {
	buf := make([]byte, 1<<20)
	return strings.Count(string(buf[:runtime.Stack(buf, true)]), "reload.(*Files).loop")
}

// TestCertificateWatchesEndWithTheirListener checks that each TLS listener
// watches its files for exactly as long as it serves: a listener replaced
// or removed by a reload, and every listener at shutdown, stops watching.
func TestCertificateWatchesEndWithTheirListener(t *testing.T) {
	ca := testpki.NewCA(t, "penstock test CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "tls")
	rec := newRecorder(t, "up")
	conf := func(listeners ...string) *config.Config {
		text := "listeners:\n"
		for _, l := range listeners {
			text += fmt.Sprintf("  - {%s, tls: {certificates: [{cert_file: %s, key_file: %s}]}}\n", l, certFile, keyFile)
		}
		return mustConfig(t, text+fmt.Sprintf("upstreams: [{name: up, endpoints: [{address: %s}]}]\nroutes: [{name: r, match: {path: /p}, upstream: up}]\n", rec.addr()))
	}
	base := watchers()
	g, err := server.New(conf(`name: a, address: "127.0.0.1:0"`, `name: b, address: "127.0.0.1:0"`), server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	a, b := g.Addr("a").String(), g.Addr("b").String()
	steps := []struct {
		name   string
		reload *config.Config // nil: shut down
		want   int
	}{
		{"started", nil, 2},
		{"unchanged listeners keep their watch", conf(`name: a, address: "`+a+`"`, `name: b, address: "`+b+`"`), 2},
		{"changed listener replaces its watch", conf(`name: a, address: "`+a+`", limits: {idle_timeout: 5s}`, `name: b, address: "`+b+`"`), 2},
		{"removed listener ends its watch", conf(`name: a, address: "` + a + `", limits: {idle_timeout: 5s}`), 1},
		{"shutdown ends every watch", nil, 0},
	}
	for i, st := range steps {
		switch {
		case st.reload != nil:
			if err := g.Reload(st.reload); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		case i > 0:
			if err := g.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		waitUntil(t, 5*time.Second, func() bool { return watchers()-base == st.want })
	}
}

// TestSessionResumesOnAnotherGateway starts two gateways on the same session
// ticket key file, as two nodes behind a load balancer (or one process
// before and after a restart): a client's session from the first resumes on
// the second.
func TestSessionResumesOnAnotherGateway(t *testing.T) {
	ca := testpki.NewCA(t, "penstock test CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "tls")
	keysFile := filepath.Join(dir, "ticket-keys")
	// The documented way to make a key: head -c 32 /dev/urandom | base64
	key := make([]byte, 32)
	rand.Read(key)
	testpki.WriteFileAtomic(t, keysFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"))
	rec := newRecorder(t, "up")
	text := lines(`listeners:
  - name: tls
    address: "127.0.0.1:0"
    tls: {certificates: [{cert_file: %s, key_file: %s}], session_ticket_keys_file: %s}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path: /p}, upstream: up}]
`, certFile, keyFile, keysFile, rec.addr())
	first, second := startObserved(t, text), startObserved(t, text)

	for _, proto := range []string{"http/1.1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			tr := &http.Transport{
				DisableKeepAlives: true,
				ForceAttemptHTTP2: proto == "h2",
				TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", NextProtos: []string{proto},
					ClientSessionCache: tls.NewLRUClientSessionCache(4)},
			}
			c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
			get := func(o *observed) *tls.ConnectionState {
				t.Helper()
				resp, err := c.Get(baseURL(o.g, "tls") + "/p")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				tr.CloseIdleConnections()
				if resp.TLS.NegotiatedProtocol != proto {
					t.Fatalf("negotiated %q, want %q", resp.TLS.NegotiatedProtocol, proto)
				}
				return resp.TLS
			}
			if st := get(first); st.DidResume {
				t.Fatal("first connection resumed")
			}
			before := seriesValue(t, second.reg, "penstock_tls_handshakes_total", map[string]string{"listener": "tls", "resumed": "true"})
			if st := get(second); !st.DidResume {
				t.Error("session from the first gateway did not resume on the second")
			}
			if got := seriesValue(t, second.reg, "penstock_tls_handshakes_total", map[string]string{"listener": "tls", "resumed": "true"}); got != before+1 {
				t.Errorf("resumed handshakes on the second gateway: %g, want %g", got, before+1)
			}
		})
	}
}
