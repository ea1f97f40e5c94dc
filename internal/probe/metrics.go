package probe

import (
	"hash/fnv"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Register writes r's metrics into reg under blackbox_exporter's names and
// label sets (version 0.23: probe_success, probe_duration_seconds,
// probe_http_duration_seconds{phase}, probe_ssl_earliest_cert_expiry, …),
// and penstock's additions under penstock_probe_* names. Use a fresh
// registry per probe, as the exporter does per scrape.
func Register(reg prometheus.Registerer, r *Result) {
	g := func(name, help string, v float64) {
		m := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
		m.Set(v)
		reg.MustRegister(m)
	}
	vec := func(name, help string, labels []string, values map[string]float64) {
		m := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		for k, v := range values {
			m.WithLabelValues(strings.Split(k, "\x00")...).Set(v)
		}
		reg.MustRegister(m)
	}
	g("probe_success", "Displays whether or not the probe was a success", b2f(r.Success))
	g("probe_duration_seconds", "Returns how long the probe took to complete in seconds", sec(r.Duration))
	if r.Addr != "" {
		g("probe_dns_lookup_time_seconds", "Returns the time taken for probe dns lookup in seconds", sec(r.Phases.Resolve))
		g("probe_ip_protocol", "Specifies whether probe ip protocol is IP4 or IP6", float64(r.IPProtocol))
		g("probe_ip_addr_hash", "Specifies the hash of IP address. It's useful to detect if the IP address changes.", ipHash(r.Addr))
	}
	switch r.Kind {
	case "http":
		h := r.HTTP
		if h == nil {
			h = &HTTPFacts{}
		}
		vec("probe_http_duration_seconds", "Duration of http request by phase, summed over all redirects", []string{"phase"}, map[string]float64{
			"resolve": sec(r.Phases.Resolve), "connect": sec(r.Phases.Connect), "tls": sec(r.Phases.TLS),
			"processing": sec(r.Phases.FirstByte), "transfer": sec(r.Phases.Transfer),
		})
		g("probe_http_content_length", "Length of http content response", float64(h.ContentLength))
		g("probe_http_uncompressed_body_length", "Length of uncompressed response body", float64(h.BodyLength))
		g("probe_http_redirects", "The number of redirects", float64(h.Redirects))
		g("probe_http_ssl", "Indicates if SSL was used for the final redirect", b2f(r.TLS != nil))
		g("probe_http_status_code", "Response HTTP status code", float64(h.StatusCode))
		g("probe_http_version", "Returns the version of HTTP of the probe response", httpVersion(h.Version))
		g("probe_failed_due_to_regex", "Indicates if probe failed due to regex", b2f(r.FailedDueToRegex))
		if !h.LastModified.IsZero() {
			g("probe_http_last_modified_timestamp_seconds", "Returns the Last-Modified HTTP response header in unixtime", float64(h.LastModified.Unix()))
		}
		registerTLS(r, g, vec)
	case "tcp", "tls":
		g("probe_failed_due_to_regex", "Indicates if probe failed due to regex", b2f(r.FailedDueToRegex))
		registerTLS(r, g, vec)
	case "dns":
		d := r.DNS
		if d == nil {
			d = &DNSFacts{}
		}
		vec("probe_dns_duration_seconds", "Duration of DNS request by phase", []string{"phase"}, map[string]float64{
			"resolve": sec(r.Phases.Resolve), "connect": sec(r.Phases.Connect), "request": sec(r.Phases.Request),
		})
		g("probe_dns_answer_rrs", "Returns number of entries in the answer resource record list", float64(d.Answer))
		g("probe_dns_authority_rrs", "Returns number of entries in the authority resource record list", float64(d.Authority))
		g("probe_dns_additional_rrs", "Returns number of entries in the additional resource record list", float64(d.Additional))
		g("probe_dns_query_succeeded", "Displays whether or not the query was executed successfully", b2f(d.QuerySucceeded))
		if d.Serial != 0 {
			g("probe_dns_serial", "Returns the serial number of the zone", float64(d.Serial))
		}
	case "icmp":
		vec("probe_icmp_duration_seconds", "Duration of icmp request by phase", []string{"phase"}, map[string]float64{
			"resolve": sec(r.Phases.Resolve), "setup": sec(r.Phases.Setup), "rtt": sec(r.Phases.RTT),
		})
		if r.ICMP != nil && r.ICMP.HopLimit > 0 {
			g("probe_icmp_reply_hop_limit", "Replied packet hop limit (TTL for ipv4)", float64(r.ICMP.HopLimit))
		}
	case "grpc":
		gf := r.GRPC
		if gf == nil {
			gf = &GRPCFacts{StatusCode: -1}
		}
		vec("probe_grpc_duration_seconds", "Duration of gRPC request by phase", []string{"phase"}, map[string]float64{
			"resolve": sec(r.Phases.Resolve), "check": sec(r.Phases.Request),
		})
		statuses := map[string]float64{"UNKNOWN": 0, "SERVING": 0, "NOT_SERVING": 0, "SERVICE_UNKNOWN": 0}
		if _, ok := statuses[gf.ServingStatus]; ok {
			statuses[gf.ServingStatus] = 1
		}
		vec("probe_grpc_healthcheck_response", "Response HealthCheck response", []string{"serving_status"}, statuses)
		g("probe_grpc_ssl", "Indicates if SSL was used for the connection", b2f(r.TLS != nil))
		g("probe_grpc_status_code", "Response gRPC status code", float64(gf.StatusCode))
		expiry := 0.0
		if r.TLS != nil {
			expiry = float64(r.TLS.EarliestExpiry.Unix())
			vec("probe_tls_version_info", "Returns the TLS version used or NaN when unknown", []string{"version"}, map[string]float64{r.TLS.Version: 1})
		}
		g("probe_ssl_earliest_cert_expiry", "Returns last SSL chain expiry in unixtime", expiry)
	}
	registerPenstock(r, g, vec)
}

type gaugeFunc func(name, help string, v float64)
type vecFunc func(name, help string, labels []string, values map[string]float64)

// registerTLS adds the certificate and version metrics blackbox_exporter
// gives for a TLS connection.
func registerTLS(r *Result, g gaugeFunc, vec vecFunc) {
	t := r.TLS
	if t == nil {
		return
	}
	g("probe_ssl_earliest_cert_expiry", "Returns last SSL chain expiry in unixtime", float64(t.EarliestExpiry.Unix()))
	g("probe_ssl_last_chain_expiry_timestamp_seconds", "Returns last SSL chain expiry in timestamp", float64(t.LastChainExpiry.Unix()))
	vec("probe_ssl_last_chain_info", "Contains SSL leaf certificate information", []string{"fingerprint_sha256", "subject", "issuer", "subjectalternative"},
		map[string]float64{strings.Join([]string{t.Fingerprint, t.Subject, t.Issuer, t.SANs}, "\x00"): 1})
	vec("probe_tls_version_info", "Returns the TLS version used or NaN when unknown", []string{"version"}, map[string]float64{t.Version: 1})
}

// registerPenstock adds what blackbox_exporter does not say: the failure
// reason, the negotiated ALPN, cipher and key exchange group, resumption,
// OCSP stapling and the QUIC facts.
func registerPenstock(r *Result, g gaugeFunc, vec vecFunc) {
	if !r.Success {
		vec("penstock_probe_failure_info", "The reason the probe failed, from a fixed vocabulary (docs/probe.md)", []string{"reason"}, map[string]float64{string(r.Reason): 1})
	}
	if t := r.TLS; t != nil {
		vec("penstock_probe_tls_info", "The negotiated TLS parameters: ALPN protocol, cipher suite and key exchange group", []string{"alpn", "cipher", "group"},
			map[string]float64{t.ALPN + "\x00" + t.Cipher + "\x00" + t.Group: 1})
		g("penstock_probe_tls_resumed", "Whether the TLS session was resumed", b2f(t.Resumed))
		g("penstock_probe_tls_ocsp_stapled", "Whether the server stapled an OCSP response", b2f(t.OCSPStaple))
	}
	if q := r.QUIC; q != nil {
		g("penstock_probe_quic_handshake_rtt_seconds", "The QUIC connection's smoothed RTT after the handshake", sec(q.HandshakeRTT))
		g("penstock_probe_quic_0rtt_used", "Whether the request went in 0-RTT data", b2f(q.Used0RTT))
		g("penstock_probe_quic_packets_lost", "Packets the QUIC connection declared lost", float64(q.PacketsLost))
	}
	if r.HTTP != nil {
		g("penstock_probe_http_write_seconds", "Time to write the request, summed over redirects", sec(r.Phases.Write))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sec(s Seconds) float64 { return float64(s) / 1e9 }

// httpVersion turns "HTTP/1.1" into 1.1, as blackbox_exporter does.
func httpVersion(proto string) float64 {
	switch proto {
	case "HTTP/1.0":
		return 1.0
	case "HTTP/1.1":
		return 1.1
	case "HTTP/2.0":
		return 2
	case "HTTP/3.0":
		return 3
	}
	return 0
}

// ipHash is blackbox_exporter's probe_ip_addr_hash: FNV-1a of the
// address's bytes (4 for IPv4).
func ipHash(addr string) float64 {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return 0
	}
	h := fnv.New32a()
	h.Write(a.Unmap().AsSlice())
	return float64(h.Sum32())
}
