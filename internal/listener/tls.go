// Package listener binds penstock's client-facing sockets and builds their
// TLS configuration: certificates chosen by SNI and reloaded when their
// files change, optional client certificates (mutual TLS), session ticket
// keys shared through a file, generated self-signed certificates for demos
// and tests, TLS 1.2 as the floor and ALPN for the enabled protocols.
package listener

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/penstock-dev/penstock/internal/ticketkeys"
)

// Kinds of files a TLS listener reloads, as passed to TLSOptions.Reloaded.
const (
	ReloadCertificates      = "certificates"
	ReloadClientCAs         = "client_cas"
	ReloadSessionTicketKeys = "session_ticket_keys"
)

// SelfSignedFile stands for a generated certificate's file in
// TLSOptions.CertificateLoaded.
const SelfSignedFile = "self_signed"

var errNoCertificates = errors.New("tls: no certificate configured")

// TLSOptions configure NewTLS beyond the listener's configuration. The zero
// value reads the files once and reports nothing.
type TLSOptions struct {
	// Logger receives reload results. Nil means slog.Default().
	Logger *slog.Logger
	// Watch re-reads the certificate, key, client CA and session ticket key
	// files when they change, until Close.
	Watch bool
	// Debounce is how long the files must stay quiet after a change before
	// they are read (a certificate and its key are rarely written at the
	// same instant). Zero means 250ms.
	Debounce time.Duration
	// Poll re-reads the files this often even when no change is signalled,
	// for file systems that send no events. Zero means 10s; negative turns
	// polling off.
	Poll time.Duration
	// Reloaded, when set, is told the outcome of each attempt to load a
	// changed file: kind is ReloadCertificates (once per changed pair),
	// ReloadClientCAs or ReloadSessionTicketKeys.
	Reloaded func(kind string, ok bool)
	// CertificateLoaded, when set, is told about each certificate the
	// listener serves, at start and whenever a reload replaces it: its
	// cert_file (SelfSignedFile for a generated one) and its expiry.
	CertificateLoaded func(certFile string, notAfter time.Time)
}

// Defaults of TLSOptions.
const (
	DefaultTLSDebounce = 250 * time.Millisecond
	DefaultTLSPoll     = 10 * time.Second
)

// TLS is a listener's live TLS configuration. Config never changes once
// built; the certificates, client CAs and session ticket keys behind it are
// replaced, for new handshakes, when their files change. Connections already
// established keep what they negotiated.
//
// Certificate selection: among the certificates whose DNS names (SANs; the
// subject common name when there are none) equal the client's server name,
// then those with a wildcard ("*.example.com") matching it, the first the
// client supports (key type, signature algorithms) is served; without a
// match, or without SNI, the first configured certificate is.
type TLS struct {
	conf        *tls.Config
	fingerprint string
	name        string
	cfg         config.ListenerTLS
	opts        TLSOptions
	log         *slog.Logger
	cur         atomic.Pointer[tlsState]
	// baseCAs is the client CA pool conf was built with.
	baseCAs *x509.CertPool

	// mu serialises reloads; handshakes never take it.
	mu         sync.Mutex
	pairs      []loadedPair
	caDigest   [32]byte
	keysDigest [32]byte
	watch      *reload.Files
}

// loadedPair is one configured certificate: the last pair that loaded and
// the digest of the last file contents tried.
type loadedPair struct {
	file   string
	digest [32]byte
	cert   *tls.Certificate
}

// tlsState is what handshakes read: replaced as a whole on reload.
type tlsState struct {
	certs     *certSet
	clientCAs *x509.CertPool
	// derived is Config with clientCAs, made on first use when clientCAs
	// differ from the pool Config was built with.
	derived atomic.Pointer[tls.Config]
}

// NewTLS builds listener l's TLS configuration and, with opts.Watch, starts
// following its files. Errors name the field whose file does not load.
// Close stops the watching.
func NewTLS(l *config.Listener, opts TLSOptions) (*TLS, error) {
	lt := l.TLS
	if lt == nil {
		return nil, errors.New("listener has no tls block")
	}
	t := &TLS{name: l.Name, cfg: *lt, opts: opts, log: opts.Logger}
	if t.log == nil {
		t.log = slog.Default()
	}
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if lt.MinVersion == config.TLSVersion13 {
		conf.MinVersion = tls.VersionTLS13
	}
	var watched []string
	for i, c := range lt.Certificates {
		p, err := readPair(c)
		if err != nil {
			return nil, fmt.Errorf("tls.certificates[%d]: %w", i, err)
		}
		t.pairs = append(t.pairs, p)
		watched = append(watched, c.CertFile, c.KeyFile)
	}
	if lt.SelfSigned {
		host, _, _ := net.SplitHostPort(l.Address)
		cert, fp, err := SelfSigned(host)
		if err != nil {
			return nil, fmt.Errorf("tls.self_signed: %w", err)
		}
		t.pairs = append(t.pairs, loadedPair{file: SelfSignedFile, cert: &cert})
		t.fingerprint = fp
	}
	// Certificates stays empty: crypto/tls would serve its first entry to
	// clients without SNI without asking GetCertificate.
	conf.GetCertificate = t.getCertificate
	st := &tlsState{certs: t.certSet()}

	if ca := lt.ClientAuth; ca != nil && ca.Mode != "" && ca.Mode != config.ClientAuthNone {
		pool, digest, err := readCAs(ca.CAFiles)
		if err != nil {
			return nil, fmt.Errorf("tls.client_auth.ca_files: %w", err)
		}
		conf.ClientAuth = tls.VerifyClientCertIfGiven
		if ca.Mode == config.ClientAuthRequire {
			conf.ClientAuth = tls.RequireAndVerifyClientCert
		}
		conf.ClientCAs, t.baseCAs, t.caDigest, st.clientCAs = pool, pool, digest, pool
		conf.GetConfigForClient = t.configForClient
		watched = append(watched, ca.CAFiles...)
	}
	if f := lt.SessionTicketKeysFile; f != "" {
		keys, digest, err := readTicketKeys(f)
		if err != nil {
			return nil, fmt.Errorf("tls.session_ticket_keys_file: %w", err)
		}
		conf.SetSessionTicketKeys(keys)
		t.keysDigest = digest
		watched = append(watched, f)
	}
	// ALPN order is the server's preference (RFC 7301 §3.2): h2 first.
	if slices.Contains(l.Protocols, config.ProtocolH2) {
		conf.NextProtos = append(conf.NextProtos, "h2")
	}
	if slices.Contains(l.Protocols, config.ProtocolH1) {
		conf.NextProtos = append(conf.NextProtos, "http/1.1")
	}
	t.conf = conf
	t.cur.Store(st)
	if opts.CertificateLoaded != nil {
		for _, p := range t.pairs {
			opts.CertificateLoaded(p.file, p.cert.Leaf.NotAfter)
		}
	}
	if opts.Watch && len(watched) > 0 {
		debounce, poll := opts.Debounce, opts.Poll
		if debounce <= 0 {
			debounce = DefaultTLSDebounce
		}
		if poll == 0 {
			poll = DefaultTLSPoll
		}
		w, err := reload.WatchFiles(watched, debounce, poll, t.log, t.Reload)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		t.watch = w
		// A file changed between reading it above and the watch starting
		// would otherwise go unnoticed until its next change.
		t.Reload()
	}
	return t, nil
}

// Config is the listener's TLS configuration, for tls.NewListener or a
// QUIC listener. A caller may set fields the listener does not use (such as
// VerifyConnection or NextProtos) before the first handshake.
func (t *TLS) Config() *tls.Config { return t.conf }

// Fingerprint is the SHA-256 of a generated self-signed certificate in hex,
// or "".
func (t *TLS) Fingerprint() string { return t.fingerprint }

// Close stops following the files and waits for a reload in progress. The
// configuration keeps working with what it has. Safe to call more than once.
func (t *TLS) Close() {
	if t.watch != nil {
		t.watch.Close()
	}
}

func (t *TLS) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return t.cur.Load().certs.get(hello)
}

// configForClient serves reloaded client CAs: tls.Config.ClientCAs cannot
// change on a Config in use, so after a CA reload handshakes get a copy of
// Config with the new pool.
func (t *TLS) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	st := t.cur.Load()
	if st.clientCAs == t.baseCAs {
		return nil, nil
	}
	if d := st.derived.Load(); d != nil {
		return d, nil
	}
	// Cloned here, not at reload, so that the copy has the fields the
	// caller set on Config after NewTLS and the current ticket keys.
	d := t.conf.Clone()
	d.GetConfigForClient = nil
	d.ClientCAs = st.clientCAs
	st.derived.CompareAndSwap(nil, d)
	return st.derived.Load(), nil
}

func (t *TLS) certSet() *certSet {
	certs := make([]*tls.Certificate, len(t.pairs))
	for i, p := range t.pairs {
		certs[i] = p.cert
	}
	return newCertSet(certs)
}

// Reload re-reads every file now and swaps in what changed and loads; a
// file that does not load is logged and its previous content keeps being
// used. The watcher calls it; it is exported for SIGHUP-style triggers.
func (t *TLS) Reload() {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.cur.Load()
	next := &tlsState{certs: cur.certs, clientCAs: cur.clientCAs}
	changed := false

	certsChanged := false
	for i, c := range t.cfg.Certificates {
		certPEM, keyPEM, err := readFiles(c.CertFile, c.KeyFile)
		if err != nil {
			// Typically mid-rename; the rename's own event retries.
			t.log.Warn("certificate not reloaded: the previous one keeps serving", "listener", t.name,
				"cert_file", c.CertFile, "key_file", c.KeyFile, "error", err)
			t.report(ReloadCertificates, false)
			continue
		}
		d := digest(certPEM, keyPEM)
		if d == t.pairs[i].digest {
			continue
		}
		t.pairs[i].digest = d
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.log.Error("certificate not reloaded: the previous one keeps serving", "listener", t.name,
				"cert_file", c.CertFile, "key_file", c.KeyFile, "error", err)
			t.report(ReloadCertificates, false)
			continue
		}
		if old := t.pairs[i].cert; slices.EqualFunc(old.Certificate, pair.Certificate, slices.Equal) {
			// Same chain, re-encoded key or re-written file.
			t.report(ReloadCertificates, true)
			continue
		}
		t.pairs[i].cert = &pair
		certsChanged = true
		t.log.Info("certificate reloaded", "listener", t.name, "cert_file", c.CertFile,
			"subject", pair.Leaf.Subject.String(), "serial", pair.Leaf.SerialNumber.Text(16),
			"not_after", pair.Leaf.NotAfter.UTC().Format(time.RFC3339))
		t.report(ReloadCertificates, true)
		if t.opts.CertificateLoaded != nil {
			t.opts.CertificateLoaded(c.CertFile, pair.Leaf.NotAfter)
		}
	}
	if certsChanged {
		next.certs = t.certSet()
		changed = true
	}

	if t.baseCAs != nil {
		files := t.cfg.ClientAuth.CAFiles
		pool, d, err := readCAs(files)
		switch {
		case err != nil && d == t.caDigest:
		case err != nil:
			t.caDigest = d
			t.log.Error("client CAs not reloaded: the previous ones stay trusted", "listener", t.name,
				"ca_files", files, "error", err)
			t.report(ReloadClientCAs, false)
		case d != t.caDigest:
			t.caDigest = d
			next.clientCAs = pool
			changed = true
			t.log.Info("client CAs reloaded", "listener", t.name, "ca_files", files)
			t.report(ReloadClientCAs, true)
		}
	}

	if f := t.cfg.SessionTicketKeysFile; f != "" {
		keys, d, err := readTicketKeys(f)
		switch {
		case err != nil && d == t.keysDigest:
		case err != nil:
			t.keysDigest = d
			t.log.Error("session ticket keys not reloaded: the previous ones stay in use", "listener", t.name,
				"file", f, "error", err)
			t.report(ReloadSessionTicketKeys, false)
		case d != t.keysDigest:
			t.keysDigest = d
			// Safe on a Config in use (crypto/tls documents it for
			// rotation); a copy made for reloaded client CAs has the old
			// keys, so the new state below drops it.
			t.conf.SetSessionTicketKeys(keys)
			changed = true
			t.log.Info("session ticket keys reloaded", "listener", t.name, "file", f, "keys", len(keys))
			t.report(ReloadSessionTicketKeys, true)
		}
	}

	if changed {
		t.cur.Store(next)
	}
}

func (t *TLS) report(kind string, ok bool) {
	if t.opts.Reloaded != nil {
		t.opts.Reloaded(kind, ok)
	}
}

// readPair reads and parses a certificate and its key.
func readPair(c config.Certificate) (loadedPair, error) {
	certPEM, keyPEM, err := readFiles(c.CertFile, c.KeyFile)
	if err != nil {
		return loadedPair{}, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return loadedPair{}, fmt.Errorf("certificate %q with key %q: %w", c.CertFile, c.KeyFile, err)
	}
	return loadedPair{file: c.CertFile, digest: digest(certPEM, keyPEM), cert: &pair}, nil
}

// readCAs reads PEM bundles into one pool. The digest covers the contents
// read, also when they do not parse.
func readCAs(files []string) (*x509.CertPool, [32]byte, error) {
	pool := x509.NewCertPool()
	contents := make([][]byte, 0, len(files))
	var errs []error
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, [32]byte{}, err
		}
		contents = append(contents, b)
		if !pool.AppendCertsFromPEM(b) {
			errs = append(errs, fmt.Errorf("CA file %q holds no PEM certificates", f))
		}
	}
	return pool, digest(contents...), errors.Join(errs...)
}

func readTicketKeys(file string) ([][32]byte, [32]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, [32]byte{}, err
	}
	keys, err := ticketkeys.Parse(b)
	if err != nil {
		return nil, digest(b), fmt.Errorf("%s: %w", file, err)
	}
	return keys, digest(b), nil
}

func readFiles(names ...string) ([]byte, []byte, error) {
	var out [2][]byte
	for i, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, nil, err
		}
		out[i] = b
	}
	return out[0], out[1], nil
}

// digest hashes contents with their lengths, so that moving bytes from one
// file to the next changes it.
func digest(contents ...[]byte) [32]byte {
	h := sha256.New()
	for _, b := range contents {
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	return [32]byte(h.Sum(nil))
}

// SelfSigned generates an ECDSA P-256 certificate valid for localhost, the
// loopback addresses and host (when it is a name or address), for one year.
// It returns the certificate and its SHA-256 fingerprint in hex.
func SelfSigned(host string) (tls.Certificate, string, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "penstock self-signed", Organization: []string{"penstock"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() && !ip.IsLoopback() {
		tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
	} else if ip == nil && host != "" && host != "localhost" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, "", err
	}
	sum := sha256.Sum256(der)
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, hex.EncodeToString(sum[:]), nil
}
