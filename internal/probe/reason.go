package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
)

// Reason says why a probe failed, from a fixed vocabulary, so that
// failures can be counted and alerted on by kind. The empty Reason is a
// success.
type Reason string

// The vocabulary. A new reason is added here and in Reasons, never made up
// at a call site.
const (
	ReasonNone                Reason = ""
	ReasonDNSNXDomain         Reason = "dns_nxdomain"
	ReasonDNSError            Reason = "dns_error"
	ReasonConnectRefused      Reason = "connect_refused"
	ReasonConnectTimeout      Reason = "connect_timeout"
	ReasonConnectUnreachable  Reason = "connect_unreachable"
	ReasonConnectReset        Reason = "connect_reset"
	ReasonTLSCertExpired      Reason = "tls_cert_expired"
	ReasonTLSCertNotYetValid  Reason = "tls_cert_not_yet_valid"
	ReasonTLSHostnameMismatch Reason = "tls_hostname_mismatch"
	ReasonTLSUnknownAuthority Reason = "tls_unknown_authority"
	ReasonTLSHandshake        Reason = "tls_handshake"
	ReasonTLSRequired         Reason = "tls_required"
	ReasonTLSForbidden        Reason = "tls_forbidden"
	ReasonHTTPStatusMismatch  Reason = "http_status_mismatch"
	ReasonHTTPVersionMismatch Reason = "http_version_mismatch"
	ReasonHTTPProtocol        Reason = "http_protocol"
	ReasonBodyMismatch        Reason = "body_mismatch"
	ReasonHeaderMismatch      Reason = "header_mismatch"
	ReasonExpectMismatch      Reason = "expect_mismatch"
	ReasonDNSRcodeMismatch    Reason = "dns_rcode_mismatch"
	ReasonDNSAnswerMismatch   Reason = "dns_answer_mismatch"
	ReasonICMPNotPermitted    Reason = "icmp_not_permitted"
	ReasonICMPNoReply         Reason = "icmp_no_reply"
	ReasonGRPCNotServing      Reason = "grpc_not_serving"
	ReasonGRPCError           Reason = "grpc_error"
	ReasonQUICHandshake       Reason = "quic_handshake"
	ReasonTimeout             Reason = "timeout"
	ReasonConnectionClosed    Reason = "connection_closed"
	ReasonOther               Reason = "other"
	// ReasonTLSAlertPrefix starts the reasons for a TLS alert received from
	// the peer: tls_alert_handshake_failure, tls_alert_protocol_version, …
	// (the alert's name as RFC 8446 section 6 spells it).
	ReasonTLSAlertPrefix = "tls_alert_"
)

// Reasons lists the fixed reasons (without the tls_alert_* family), for
// documentation and for metrics that count by reason.
var Reasons = []Reason{
	ReasonDNSNXDomain, ReasonDNSError, ReasonConnectRefused, ReasonConnectTimeout,
	ReasonConnectUnreachable, ReasonConnectReset, ReasonTLSCertExpired, ReasonTLSCertNotYetValid,
	ReasonTLSHostnameMismatch, ReasonTLSUnknownAuthority, ReasonTLSHandshake, ReasonTLSRequired,
	ReasonTLSForbidden, ReasonHTTPStatusMismatch, ReasonHTTPVersionMismatch, ReasonHTTPProtocol,
	ReasonBodyMismatch, ReasonHeaderMismatch, ReasonExpectMismatch, ReasonDNSRcodeMismatch,
	ReasonDNSAnswerMismatch, ReasonICMPNotPermitted, ReasonICMPNoReply, ReasonGRPCNotServing,
	ReasonGRPCError, ReasonQUICHandshake, ReasonTimeout, ReasonConnectionClosed, ReasonOther,
}

// phase is where in a probe an error happened; it sharpens the reason of
// errors that look alike (a timeout while connecting is connect_timeout, a
// timeout later is timeout).
type phase uint8

const (
	phaseResolve phase = iota
	phaseConnect
	phaseTLS
	phaseExchange
)

// classify maps err, met in phase p, to a Reason.
func classify(err error, p phase) Reason {
	if err == nil {
		return ReasonNone
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return ReasonDNSNXDomain
		}
		if dnsErr.IsTimeout {
			return ReasonTimeout
		}
		return ReasonDNSError
	}
	// Certificate problems, in the order a user would fix them.
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			if strings.Contains(invalid.Detail, "before") {
				return ReasonTLSCertNotYetValid
			}
			return ReasonTLSCertExpired
		}
		return ReasonTLSHandshake
	}
	var hostErr x509.HostnameError
	if errors.As(err, &hostErr) {
		return ReasonTLSHostnameMismatch
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return ReasonTLSUnknownAuthority
	}
	var verify *tls.CertificateVerificationError
	if errors.As(err, &verify) {
		return ReasonTLSHandshake
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		return Reason(ReasonTLSAlertPrefix + alertName(alert))
	}
	// The server's alert arrives as a *net.OpError wrapping the alert's
	// text ("remote error: tls: handshake failure").
	if r, ok := remoteAlert(err); ok {
		return r
	}
	var recordErr tls.RecordHeaderError
	if errors.As(err, &recordErr) {
		return ReasonTLSHandshake
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonConnectRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ReasonConnectReset
	case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
		return ReasonConnectUnreachable
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err) {
		if p <= phaseConnect {
			return ReasonConnectTimeout
		}
		return ReasonTimeout
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		if p == phaseTLS {
			return ReasonTLSHandshake
		}
		return ReasonConnectionClosed
	}
	if p == phaseTLS {
		return ReasonTLSHandshake
	}
	return ReasonOther
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// alertName is an alert's name in the reason's form: lowercase, words
// joined by underscores.
func alertName(a tls.AlertError) string {
	// tls.AlertError's text is "tls: handshake failure".
	s := strings.TrimPrefix(a.Error(), "tls: ")
	return strings.ReplaceAll(s, " ", "_")
}

func remoteAlert(err error) (Reason, bool) {
	s := err.Error()
	i := strings.Index(s, "remote error: tls: ")
	if i < 0 {
		return "", false
	}
	name := s[i+len("remote error: tls: "):]
	if j := strings.IndexAny(name, ":;\n"); j >= 0 {
		name = name[:j]
	}
	return Reason(ReasonTLSAlertPrefix + strings.ReplaceAll(strings.TrimSpace(name), " ", "_")), true
}

// statusText is an error carrying only a gRPC status's message, to
// classify by its words what the channel lost in its wrapping.
type statusText string

func (s statusText) Error() string { return string(s) }

// errorFromStatus recovers what a gRPC status's message says about the
// connection: refused, reset, or a TLS alert or certificate problem.
func errorFromStatus(st interface{ Message() string }) error {
	msg := st.Message()
	switch {
	case strings.Contains(msg, "connection refused"):
		return syscall.ECONNREFUSED
	case strings.Contains(msg, "connection reset"):
		return syscall.ECONNRESET
	case strings.Contains(msg, "certificate has expired"), strings.Contains(msg, "certificate is not valid"):
		if strings.Contains(msg, "expired") {
			return x509.CertificateInvalidError{Reason: x509.Expired}
		}
	case strings.Contains(msg, "certificate is valid for"), strings.Contains(msg, "not valid for any names"):
		return x509.HostnameError{}
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return x509.UnknownAuthorityError{}
	}
	return statusText(msg)
}
