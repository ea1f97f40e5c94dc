package probe

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"strconv"
	"strings"
	"time"
)

// Result is what one probe found. Durations are in seconds in JSON, as in
// the metrics. Fields that do not apply to the probe's kind stay empty and
// are left out of the JSON line.
type Result struct {
	// Target is the probed target as given; Module the module's name.
	Target string `json:"target"`
	Module string `json:"module,omitempty"`
	// Kind is the prober: http, tcp, tls, dns, icmp or grpc.
	Kind string `json:"kind"`
	// Start is when the probe began.
	Start time.Time `json:"start"`
	// Success is the verdict; Reason says why not.
	Success bool   `json:"success"`
	Reason  Reason `json:"reason,omitempty"`
	// Error is the underlying error's text, for people.
	Error string `json:"error,omitempty"`
	// Duration is the whole probe.
	Duration Seconds `json:"duration_seconds"`
	// Phases are the per-phase timings: resolve, connect, tls, write
	// (request written), first_byte (waiting for the answer: blackbox's
	// "processing") and transfer; dns adds request, icmp setup and rtt.
	Phases Phases `json:"phases"`
	// Addr is the address probed after resolution; IPProtocol 4 or 6.
	Addr       string `json:"addr,omitempty"`
	IPProtocol int    `json:"ip_protocol,omitempty"`

	HTTP *HTTPFacts `json:"http,omitempty"`
	TLS  *TLSFacts  `json:"tls,omitempty"`
	QUIC *QUICFacts `json:"quic,omitempty"`
	DNS  *DNSFacts  `json:"dns,omitempty"`
	ICMP *ICMPFacts `json:"icmp,omitempty"`
	GRPC *GRPCFacts `json:"grpc,omitempty"`
	// FailedDueToRegex is set when a body, header or expect regular
	// expression decided the failure (blackbox's probe_failed_due_to_regex).
	FailedDueToRegex bool `json:"failed_due_to_regex,omitempty"`
}

// Seconds is a duration written as seconds in JSON.
type Seconds time.Duration

// MarshalJSON writes s as a number of seconds.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return []byte(strings.TrimRight(strings.TrimRight(formatFloat(time.Duration(s).Seconds()), "0"), ".")), nil
}

// UnmarshalJSON reads a number of seconds.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	*s = Seconds(f * 1e9)
	return nil
}

// Phases holds the timings of a probe's phases; a phase not reached is 0.
type Phases struct {
	Resolve   Seconds `json:"resolve"`
	Connect   Seconds `json:"connect"`
	TLS       Seconds `json:"tls"`
	Write     Seconds `json:"write,omitempty"`
	FirstByte Seconds `json:"first_byte,omitempty"`
	Transfer  Seconds `json:"transfer,omitempty"`
	Request   Seconds `json:"request,omitempty"`
	Setup     Seconds `json:"setup,omitempty"`
	RTT       Seconds `json:"rtt,omitempty"`
}

// HTTPFacts are an HTTP probe's facts.
type HTTPFacts struct {
	StatusCode int `json:"status_code"`
	// Version is the protocol of the final response: "HTTP/1.1", "HTTP/2.0"
	// or "HTTP/3.0".
	Version       string `json:"version"`
	Redirects     int    `json:"redirects"`
	ContentLength int64  `json:"content_length"`
	BodyLength    int64  `json:"body_length"`
	// LastModified is the Last-Modified header as a time, when present.
	LastModified time.Time `json:"last_modified,omitzero"`
}

// TLSFacts are the facts of a TLS (or QUIC) handshake.
type TLSFacts struct {
	Version string `json:"version"`
	Cipher  string `json:"cipher"`
	// Group is the key exchange group (X25519, X25519MLKEM768, …); the
	// hybrid post-quantum groups show here.
	Group string `json:"group"`
	// ALPN is the negotiated application protocol ("" when none).
	ALPN       string `json:"alpn"`
	Resumed    bool   `json:"resumed"`
	OCSPStaple bool   `json:"ocsp_stapled"`
	// EarliestExpiry is the earliest NotAfter in the peer's chain;
	// LastChainExpiry the earliest NotAfter of the verified chain that
	// expires last (blackbox's two expiry metrics).
	EarliestExpiry  time.Time `json:"earliest_cert_expiry"`
	LastChainExpiry time.Time `json:"last_chain_expiry,omitzero"`
	// Leaf describes the peer's certificate.
	Subject     string `json:"subject"`
	Issuer      string `json:"issuer"`
	SANs        string `json:"subject_alternative_names,omitempty"`
	Serial      string `json:"serial"`
	Fingerprint string `json:"fingerprint_sha256"`
}

// QUICFacts are the facts of an HTTP/3 probe's QUIC connection.
type QUICFacts struct {
	// HandshakeRTT is the smoothed RTT when the handshake completed.
	HandshakeRTT Seconds `json:"handshake_rtt"`
	Used0RTT     bool    `json:"used_0rtt"`
	PacketsLost  uint64  `json:"packets_lost"`
	PacketsSent  uint64  `json:"packets_sent"`
	Version      string  `json:"version"`
}

// tlsFacts reads a handshake's facts from its state.
func tlsFacts(cs tls.ConnectionState) *TLSFacts {
	f := &TLSFacts{
		Version:    tlsVersionName(cs.Version),
		Cipher:     tls.CipherSuiteName(cs.CipherSuite),
		Group:      groupName(cs.CurveID),
		ALPN:       cs.NegotiatedProtocol,
		Resumed:    cs.DidResume,
		OCSPStaple: len(cs.OCSPResponse) > 0,
	}
	for _, c := range cs.PeerCertificates {
		if f.EarliestExpiry.IsZero() || c.NotAfter.Before(f.EarliestExpiry) {
			f.EarliestExpiry = c.NotAfter
		}
	}
	// The verified chain that lasts longest decides when the connection
	// stops verifying; its earliest expiry is the one to watch.
	for _, chain := range cs.VerifiedChains {
		var earliest time.Time
		for _, c := range chain {
			if earliest.IsZero() || c.NotAfter.Before(earliest) {
				earliest = c.NotAfter
			}
		}
		if earliest.After(f.LastChainExpiry) {
			f.LastChainExpiry = earliest
		}
	}
	if len(cs.PeerCertificates) > 0 {
		leaf := cs.PeerCertificates[0]
		f.Subject = leaf.Subject.String()
		f.Issuer = leaf.Issuer.String()
		f.SANs = strings.Join(leaf.DNSNames, ",")
		f.Serial = leaf.SerialNumber.Text(16)
		sum := sha256.Sum256(leaf.Raw)
		f.Fingerprint = hex.EncodeToString(sum[:])
	}
	return f
}

// tlsVersionName spells a TLS version as blackbox_exporter's
// probe_tls_version_info does ("TLS 1.3").
func tlsVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS10:
		return "TLS 1.0"
	case tls.VersionTLS11:
		return "TLS 1.1"
	case tls.VersionTLS12:
		return "TLS 1.2"
	case tls.VersionTLS13:
		return "TLS 1.3"
	}
	return "unknown"
}

// groupName names a key exchange group; 0 (no key exchange, as in a TLS
// 1.2 RSA handshake) is "".
func groupName(id tls.CurveID) string {
	if id == 0 {
		return ""
	}
	return id.String()
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'f', 9, 64) }
