package metrics

import (
	"crypto/tls"
	"fmt"
	"time"
)

// ConnOpened counts a client connection opened on listener, speaking proto
// ("HTTP/1.1", "HTTP/2.0", "h2c"...; only a label value).
func (m *Metrics) ConnOpened(listener, proto string) {
	m.connsOpen.WithLabelValues(listener, proto).Inc()
}

// ConnClosed counts a connection closed; listener and proto must be the
// ones given to ConnOpened.
func (m *Metrics) ConnClosed(listener, proto string) {
	m.connsOpen.WithLabelValues(listener, proto).Dec()
}

// SendTimeout counts a response reset on listener because it made no
// progress for the listener's send timeout.
func (m *Metrics) SendTimeout(listener string) {
	m.sendTimeouts.WithLabelValues(listener).Inc()
}

// HTTP2Calmed counts an HTTP/2 connection of listener closed with GOAWAY
// ENHANCE_YOUR_CALM (rapid reset).
func (m *Metrics) HTTP2Calmed(listener string) {
	m.http2Calmed.WithLabelValues(listener).Inc()
}

// HTTP2WindowGrown counts an HTTP/2 connection's receive window grown on
// listener (the bandwidth-delay product of its uploads exceeded it).
func (m *Metrics) HTTP2WindowGrown(listener string) {
	m.http2WindowGrown.WithLabelValues(listener).Inc()
}

// TLSHandshake counts a completed TLS handshake on listener, by protocol
// version (tls.VersionTLS13...) and whether the session was resumed.
func (m *Metrics) TLSHandshake(listener string, version uint16, resumed bool) {
	r := "false"
	if resumed {
		r = "true"
	}
	m.tlsHandshakes.WithLabelValues(listener, tlsVersion(version), r).Inc()
}

// tlsVersion is version as OpenTelemetry's tls.protocol.version writes it.
func tlsVersion(version uint16) string {
	switch version {
	case tls.VersionTLS10:
		return "1.0"
	case tls.VersionTLS11:
		return "1.1"
	case tls.VersionTLS12:
		return "1.2"
	case tls.VersionTLS13:
		return "1.3"
	}
	return fmt.Sprintf("0x%04x", version)
}

// TLSReload counts an attempt to load a changed TLS file on listener; kind
// is "certificates", "client_cas" or "session_ticket_keys".
func (m *Metrics) TLSReload(listener, kind string, ok bool) {
	result := "success"
	if !ok {
		result = "failure"
	}
	m.tlsReloads.WithLabelValues(listener, kind, result).Inc()
}

// TLSCertificate records the expiry of the certificate listener serves from
// certFile.
func (m *Metrics) TLSCertificate(listener, certFile string, notAfter time.Time) {
	m.tlsNotAfter.WithLabelValues(listener, certFile).Set(float64(notAfter.Unix()))
}
