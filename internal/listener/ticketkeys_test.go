package listener_test

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/listener"
	"github.com/penstock-dev/penstock/internal/testpki"
)

// writeTicketKeys writes keys as a text key file, first key first.
func writeTicketKeys(t *testing.T, path string, keys ...[]byte) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# session ticket keys, newest first\n")
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	testpki.WriteFileAtomic(t, path, []byte(b.String()))
}

func newTicketKey(t *testing.T) []byte {
	k := make([]byte, 32)
	rand.Read(k)
	return k
}

// TestSessionTicketKeysShared starts two listeners separately (as two
// processes, or one before and one after a restart) on the same key file:
// a session from one resumes on the other, survives a rotation that keeps
// the old key second, and stops resuming once the old key is removed.
func TestSessionTicketKeysShared(t *testing.T) {
	for _, version := range []struct {
		name string
		max  uint16
	}{{"TLS 1.3", tls.VersionTLS13}, {"TLS 1.2", tls.VersionTLS12}} {
		t.Run(version.name, func(t *testing.T) {
			ca := testpki.NewCA(t, "test CA")
			dir := t.TempDir()
			certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "srv")
			keysFile := filepath.Join(dir, "ticket-keys")
			oldKey, newKey := newTicketKey(t), newTicketKey(t)
			writeTicketKeys(t, keysFile, oldKey)

			lc := &config.Listener{Name: "l", Address: "127.0.0.1:0", Protocols: []string{"h1"},
				TLS: &config.ListenerTLS{Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}},
					SessionTicketKeysFile: keysFile}}
			start := func() (*listener.TLS, string) {
				lt, err := listener.NewTLS(lc, listener.TLSOptions{Logger: quiet})
				if err != nil {
					t.Fatal(err)
				}
				return lt, serveTLS(t, lt.Config())
			}
			a, addrA := start()
			b, addrB := start()

			// session returns a client whose cache holds one ticket from addr.
			session := func(t *testing.T, addr string) *tls.Config {
				t.Helper()
				conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MaxVersion: version.max,
					ClientSessionCache: tls.NewLRUClientSessionCache(1)}
				if _, st, err := dial(addr, conf); err != nil || st.DidResume {
					t.Fatalf("first connection: resumed %v, error %v", st.DidResume, err)
				}
				return conf
			}
			resumes := func(t *testing.T, conf *tls.Config, addr string) bool {
				t.Helper()
				_, st, err := dial(addr, conf)
				if err != nil {
					t.Fatalf("connection: %v", err)
				}
				return st.DidResume
			}

			if !resumes(t, session(t, addrA), addrB) {
				t.Fatal("a session from listener A did not resume on listener B")
			}
			// Independent listeners without a key file do not share sessions.
			plain := *lc
			plainTLS := *lc.TLS
			plainTLS.SessionTicketKeysFile = ""
			plain.TLS = &plainTLS
			lp, err := listener.NewTLS(&plain, listener.TLSOptions{Logger: quiet})
			if err != nil {
				t.Fatal(err)
			}
			if resumes(t, session(t, addrA), serveTLS(t, lp.Config())) {
				t.Fatal("a session resumed on a listener with its own keys: the test cannot tell shared keys apart")
			}

			beforeRotation := []*tls.Config{session(t, addrA), session(t, addrA)}

			// Rotation, step 1: the new key first, the old one second.
			writeTicketKeys(t, keysFile, newKey, oldKey)
			a.Reload()
			b.Reload()
			if !resumes(t, beforeRotation[0], addrB) {
				t.Error("a ticket made with the old key did not resume while the old key is second")
			}
			afterRotation := session(t, addrA)
			if !resumes(t, afterRotation, addrB) {
				t.Error("a ticket made with the new key did not resume")
			}

			// Step 2: the old key removed.
			writeTicketKeys(t, keysFile, newKey)
			a.Reload()
			b.Reload()
			if resumes(t, beforeRotation[1], addrB) {
				t.Error("a ticket made with a removed key resumed")
			}
			if !resumes(t, session(t, addrA), addrB) {
				t.Error("a ticket made with the remaining key did not resume")
			}

			// A broken file keeps the keys in use.
			testpki.WriteFileAtomic(t, keysFile, []byte("not a key\n"))
			b.Reload()
			if !resumes(t, session(t, addrA), addrB) {
				t.Error("a broken key file stopped resumption with the keys in use")
			}
		})
	}
}

func TestSessionTicketKeysFileErrors(t *testing.T) {
	ca := testpki.NewCA(t, "test CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "srv")
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte(base64.StdEncoding.EncodeToString(make([]byte, 16))), 0o600)
	for _, tt := range []struct{ name, file, want string }{
		{"missing", filepath.Join(dir, "absent"), "no such file"},
		{"short key", short, "key is 16 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := listener.NewTLS(&config.Listener{Name: "l", Address: "127.0.0.1:0", Protocols: []string{"h1"},
				TLS: &config.ListenerTLS{Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}},
					SessionTicketKeysFile: tt.file}}, listener.TLSOptions{Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), "tls.session_ticket_keys_file") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming tls.session_ticket_keys_file and %q", err, tt.want)
			}
		})
	}
}

// TestTicketKeysAfterClientCAReload checks the two reloads together: after
// the client CAs were reloaded (handshakes then use a copy of the
// configuration), a key rotation still takes effect.
func TestTicketKeysAfterClientCAReload(t *testing.T) {
	ca, clientCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "client CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t, "localhost").Write(t, dir, "srv")
	caFile := clientCA.WriteCA(t, filepath.Join(dir, "clients.pem"))
	keysFile := filepath.Join(dir, "ticket-keys")
	oldKey, newKey := newTicketKey(t), newTicketKey(t)
	writeTicketKeys(t, keysFile, oldKey)
	lc := &config.Listener{Name: "l", Address: "127.0.0.1:0", Protocols: []string{"h1"},
		TLS: &config.ListenerTLS{Certificates: []config.Certificate{{CertFile: certFile, KeyFile: keyFile}},
			ClientAuth:            &config.ClientAuth{Mode: config.ClientAuthVerifyIfGiven, CAFiles: []string{caFile}},
			SessionTicketKeysFile: keysFile}}
	a, err := listener.NewTLS(lc, listener.TLSOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	b, err := listener.NewTLS(lc, listener.TLSOptions{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	addrA, addrB := serveTLS(t, a.Config()), serveTLS(t, b.Config())
	session := func() *tls.Config {
		conf := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", ClientSessionCache: tls.NewLRUClientSessionCache(1)}
		if _, _, err := dial(addrA, conf); err != nil {
			t.Fatal(err)
		}
		return conf
	}
	resumesOnB := func(conf *tls.Config) bool {
		_, st, err := dial(addrB, conf)
		if err != nil {
			t.Fatal(err)
		}
		return st.DidResume
	}

	// B now trusts a second client CA as well.
	testpki.WriteFileAtomic(t, caFile, append(clientCA.PEM, testpki.NewCA(t, "second client CA").PEM...))
	b.Reload()
	old := session()
	if !resumesOnB(session()) {
		t.Fatal("no resumption on B after its CA reload")
	}
	writeTicketKeys(t, keysFile, newKey)
	a.Reload()
	b.Reload()
	if resumesOnB(old) {
		t.Error("a ticket of a removed key resumed on B after its CA reload")
	}
	if !resumesOnB(session()) {
		t.Error("a ticket of the new key did not resume on B after its CA reload")
	}
}
