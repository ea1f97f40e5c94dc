// Package listener binds penstock's client-facing sockets and builds their
// TLS configuration: certificates chosen by SNI, generated self-signed
// certificates for demos and tests, TLS 1.2 as the floor and ALPN for the
// enabled protocols.
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
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// TLSConfig builds the server TLS configuration of listener l. With several
// certificates, crypto/tls serves the first whose names match the client's
// SNI and falls back to the first (Go's Config.Certificates selection).
// fingerprint is the SHA-256 of a generated self-signed certificate, or "".
func TLSConfig(l *config.Listener) (conf *tls.Config, fingerprint string, err error) {
	conf = &tls.Config{MinVersion: tls.VersionTLS12}
	if l.TLS.MinVersion == "1.3" {
		conf.MinVersion = tls.VersionTLS13
	}
	for i, c := range l.TLS.Certificates {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, "", fmt.Errorf("tls.certificates[%d]: %w", i, err)
		}
		conf.Certificates = append(conf.Certificates, pair)
	}
	if l.TLS.SelfSigned {
		host, _, _ := net.SplitHostPort(l.Address)
		cert, fp, err := SelfSigned(host)
		if err != nil {
			return nil, "", fmt.Errorf("tls.self_signed: %w", err)
		}
		conf.Certificates = append(conf.Certificates, cert)
		fingerprint = fp
	}
	// ALPN order is the server's preference (RFC 7301 §3.2): h2 first.
	if slices.Contains(l.Protocols, "h2") {
		conf.NextProtos = append(conf.NextProtos, "h2")
	}
	if slices.Contains(l.Protocols, "h1") {
		conf.NextProtos = append(conf.NextProtos, "http/1.1")
	}
	return conf, fingerprint, nil
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
