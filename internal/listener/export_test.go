package listener

import (
	"crypto/tls"
	"slices"

	"github.com/penstock-dev/penstock/internal/config"
)

// What the tests of package listener_test use and the server does not.

// TLSConfig builds the server TLS configuration of listener l, reading its
// files once: certificates are chosen by SNI (see TLS), nothing is
// reloaded. fingerprint is the SHA-256 of a generated self-signed
// certificate, or "". A listener that should follow its files uses NewTLS.
func TLSConfig(l *config.Listener) (conf *tls.Config, fingerprint string, err error) {
	t, err := NewTLS(l, TLSOptions{})
	if err != nil {
		return nil, "", err
	}
	return t.Config(), t.Fingerprint(), nil
}

// Certificates returns the certificates served now, in configuration order.
func (t *TLS) Certificates() []*tls.Certificate {
	return slices.Clone(t.cur.Load().certs.certs)
}
