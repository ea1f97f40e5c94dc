package probe

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// Modules is a loaded blackbox.yml: modules by name. It is immutable once
// loaded; a reload loads a new one.
type Modules struct {
	Modules map[string]*Module `yaml:"modules"`
}

// Module is one blackbox_exporter module: a prober and its settings.
type Module struct {
	// Prober is the probe kind: http, tcp, tls, dns, icmp or grpc ("tls"
	// is penstock's: a handshake only).
	Prober string `yaml:"prober"`
	// Timeout bounds the whole probe. Default 5s (in the exporter, the
	// scrape's timeout less a margin when that is shorter).
	Timeout Duration   `yaml:"timeout"`
	HTTP    HTTPModule `yaml:"http"`
	TCP     TCPModule  `yaml:"tcp"`
	DNS     DNSModule  `yaml:"dns"`
	ICMP    ICMPModule `yaml:"icmp"`
	GRPC    GRPCModule `yaml:"grpc"`
}

// Duration is a duration written the Prometheus way ("5s", "1m30s", "1d").
type Duration time.Duration

// UnmarshalYAML reads a Prometheus duration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := model.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: not a duration: %q (want e.g. 5s, 1m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// Regexp is a regular expression checked at load.
type Regexp struct{ *regexp.Regexp }

// UnmarshalYAML compiles the expression. Like blackbox_exporter, an
// expression is not anchored.
func (r *Regexp) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return fmt.Errorf("line %d: bad regular expression %q: %v", n.Line, s, err)
	}
	r.Regexp = re
	return nil
}

// HTTPModule is a module's http settings (blackbox_exporter's names).
type HTTPModule struct {
	// ValidStatusCodes are the accepted status codes; empty means 2xx.
	ValidStatusCodes []int `yaml:"valid_status_codes"`
	// ValidHTTPVersions are the accepted versions ("HTTP/1.1", "HTTP/2.0",
	// "HTTP/3.0"); empty accepts any.
	ValidHTTPVersions []string `yaml:"valid_http_versions"`
	// Method is the request method. Default GET.
	Method  string            `yaml:"method"`
	Headers map[string]string `yaml:"headers"`
	Body    string            `yaml:"body"`
	// NoFollowRedirects stops at the first response; by default up to 10
	// redirects are followed.
	NoFollowRedirects *bool `yaml:"no_follow_redirects"`
	// FollowRedirects is the newer spelling of the same switch. Default true.
	FollowRedirects *bool `yaml:"follow_redirects"`
	FailIfSSL       bool  `yaml:"fail_if_ssl"`
	FailIfNotSSL    bool  `yaml:"fail_if_not_ssl"`
	// FailIfBodyMatchesRegexp and FailIfBodyNotMatchesRegexp test the body.
	FailIfBodyMatchesRegexp    []Regexp      `yaml:"fail_if_body_matches_regexp"`
	FailIfBodyNotMatchesRegexp []Regexp      `yaml:"fail_if_body_not_matches_regexp"`
	FailIfHeaderMatches        []HeaderMatch `yaml:"fail_if_header_matches"`
	FailIfHeaderNotMatches     []HeaderMatch `yaml:"fail_if_header_not_matches"`
	TLSConfig                  TLSConfig     `yaml:"tls_config"`
	PreferredIPProtocol        string        `yaml:"preferred_ip_protocol"`
	IPProtocolFallback         *bool         `yaml:"ip_protocol_fallback"`
	EnableHTTP2                *bool         `yaml:"enable_http2"`
	Compression                string        `yaml:"compression"`
	BodySizeLimit              units         `yaml:"body_size_limit"`
	// EnableHTTP3 probes over QUIC (penstock's addition): the probe speaks
	// HTTP/3 only, with ALPN h3.
	EnableHTTP3 bool `yaml:"enable_http3"`
}

// units is a byte size ("10MB") or a plain number.
type units int64

// UnmarshalYAML reads a size.
func (u *units) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := parseBytes(s)
	if err != nil {
		return fmt.Errorf("line %d: %v", n.Line, err)
	}
	*u = units(v)
	return nil
}

// HeaderMatch tests a response header.
type HeaderMatch struct {
	Header       string `yaml:"header"`
	Regexp       Regexp `yaml:"regexp"`
	AllowMissing bool   `yaml:"allow_missing"`
}

// TLSConfig is blackbox_exporter's (Prometheus's) tls_config.
type TLSConfig struct {
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	ServerName         string `yaml:"server_name"`
	// MinVersion and MaxVersion: TLS10, TLS11, TLS12 or TLS13.
	MinVersion string `yaml:"min_version"`
	MaxVersion string `yaml:"max_version"`
	// CurvePreferences names the key exchange groups to offer, in order
	// (penstock's addition): X25519MLKEM768, X25519, P256, …
	CurvePreferences []string `yaml:"curve_preferences"`
	// ALPN lists the application protocols to offer (penstock's addition,
	// for the tcp and tls probers; the http prober offers h2 and
	// http/1.1, or h3, itself).
	ALPN []string `yaml:"alpn"`

	// compiled is the configuration built at load: the CA and the client
	// certificate are read then (and again at each reload), not per probe.
	compiled *tls.Config
}

// TCPModule is a module's tcp settings.
type TCPModule struct {
	// QueryResponse is the dialogue after connecting: each step sends,
	// expects a line matching a regular expression, or upgrades to TLS.
	QueryResponse       []QueryResponse `yaml:"query_response"`
	TLS                 bool            `yaml:"tls"`
	TLSConfig           TLSConfig       `yaml:"tls_config"`
	PreferredIPProtocol string          `yaml:"preferred_ip_protocol"`
	IPProtocolFallback  *bool           `yaml:"ip_protocol_fallback"`
	SourceIPAddress     string          `yaml:"source_ip_address"`
}

// QueryResponse is one step of a tcp dialogue.
type QueryResponse struct {
	Expect   Regexp `yaml:"expect"`
	Send     string `yaml:"send"`
	StartTLS bool   `yaml:"starttls"`
}

// DNSModule is a module's dns settings.
type DNSModule struct {
	QueryName string `yaml:"query_name"`
	// QueryType is the record type. Default ANY.
	QueryType  string `yaml:"query_type"`
	QueryClass string `yaml:"query_class"`
	// TransportProtocol is udp (default) or tcp.
	TransportProtocol   string `yaml:"transport_protocol"`
	PreferredIPProtocol string `yaml:"preferred_ip_protocol"`
	IPProtocolFallback  *bool  `yaml:"ip_protocol_fallback"`
	SourceIPAddress     string `yaml:"source_ip_address"`
	// RecursionDesired sets the RD bit. Default true.
	RecursionDesired *bool `yaml:"recursion_desired"`
	// ValidRcodes are the accepted response codes. Default NOERROR.
	ValidRcodes        []string    `yaml:"valid_rcodes"`
	ValidateAnswer     RRValidator `yaml:"validate_answer_rrs"`
	ValidateAuthority  RRValidator `yaml:"validate_authority_rrs"`
	ValidateAdditional RRValidator `yaml:"validate_additional_rrs"`
	DNSOverTLS         bool        `yaml:"dns_over_tls"`
	TLSConfig          TLSConfig   `yaml:"tls_config"`
}

// RRValidator tests a section's records, each in its text form
// ("example.org.\t300\tIN\tA\t192.0.2.1").
type RRValidator struct {
	FailIfMatchesRegexp     []Regexp `yaml:"fail_if_matches_regexp"`
	FailIfAllMatchRegexp    []Regexp `yaml:"fail_if_all_match_regexp"`
	FailIfNotMatchesRegexp  []Regexp `yaml:"fail_if_not_matches_regexp"`
	FailIfNoneMatchesRegexp []Regexp `yaml:"fail_if_none_matches_regexp"`
}

// ICMPModule is a module's icmp settings.
type ICMPModule struct {
	PreferredIPProtocol string `yaml:"preferred_ip_protocol"`
	IPProtocolFallback  *bool  `yaml:"ip_protocol_fallback"`
	SourceIPAddress     string `yaml:"source_ip_address"`
	PayloadSize         int    `yaml:"payload_size"`
	TTL                 int    `yaml:"ttl"`
}

// GRPCModule is a module's grpc settings.
type GRPCModule struct {
	// Service is the service asked about; "" is the whole server.
	Service             string    `yaml:"service"`
	TLS                 bool      `yaml:"tls"`
	TLSConfig           TLSConfig `yaml:"tls_config"`
	PreferredIPProtocol string    `yaml:"preferred_ip_protocol"`
	IPProtocolFallback  *bool     `yaml:"ip_protocol_fallback"`
}

// unsupported are blackbox_exporter options penstock knows and refuses, by
// the path of their parent block ("http", "tcp", …) — the rest of an
// unknown key is a plain unknown field.
var unsupported = map[string][]string{
	"http": {"basic_auth", "authorization", "bearer_token", "bearer_token_file", "oauth2", "proxy_url",
		"no_proxy", "proxy_from_environment", "proxy_connect_header", "skip_resolve_phase_with_proxy",
		"body_file", "http_client_config", "fail_if_body_json_matches_cel", "fail_if_body_json_not_matches_cel"},
	"dns":  {"query_class_name"},
	"icmp": {"dont_fragment"},
}

// Kinds are the probers, in the order the docs list them.
var Kinds = []string{"http", "tcp", "tls", "dns", "icmp", "grpc"}

// DefaultTimeout bounds a probe whose module gives no timeout.
const DefaultTimeout = 5 * time.Second

// LoadModulesFile reads and checks a modules file.
func LoadModulesFile(path string) (*Modules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return LoadModules(data, path)
}

// LoadModules decodes a blackbox.yml strictly: an unknown field, an
// option penstock does not support or a bad value is an error naming the
// file, line and field path ("blackbox.yml:7: modules.web.http.oauth2: not
// supported").
func LoadModules(data []byte, filename string) (*Modules, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no modules", filename)
		}
		return nil, fmt.Errorf("%s: %v", filename, err)
	}
	var errs []string
	checkKeys(&root, reflect.TypeOf(Modules{}), "", filename, &errs)
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	var m Modules
	if err := root.Decode(&m); err != nil {
		// yaml's errors say "line N: …", one per line: make them
		// "file:N: …" like the others.
		msg := strings.TrimPrefix(err.Error(), "yaml: unmarshal errors:\n")
		var out []string
		for _, l := range strings.Split(msg, "\n") {
			out = append(out, lineRe.ReplaceAllString(strings.TrimSpace(l), filename+":$1: "))
		}
		return nil, errors.New(strings.Join(out, "\n"))
	}
	if len(m.Modules) == 0 {
		return nil, fmt.Errorf("%s: modules: none defined", filename)
	}
	names := make([]string, 0, len(m.Modules))
	for name := range m.Modules {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		mod := m.Modules[name]
		if mod == nil {
			return nil, fmt.Errorf("%s:%d: modules.%s: empty module", filename, lineOf(&root, "modules", name), name)
		}
		if err := mod.check(); err != nil {
			return nil, fmt.Errorf("%s:%d: modules.%s.%v", filename, lineOf(&root, "modules", name), name, err)
		}
	}
	return &m, nil
}

// Insecure returns a copy of m that accepts any certificate.
func (m *Module) Insecure() *Module {
	c := *m
	for _, t := range []*TLSConfig{&c.HTTP.TLSConfig, &c.TCP.TLSConfig, &c.DNS.TLSConfig, &c.GRPC.TLSConfig} {
		t.InsecureSkipVerify = true
		if t.compiled != nil {
			t.compiled = t.compiled.Clone()
			t.compiled.InsecureSkipVerify = true
		}
	}
	return &c
}

// check validates a module and fills its defaults.
func (m *Module) check() error {
	if !contains(Kinds, m.Prober) {
		return fmt.Errorf("prober: %q is not a prober (want one of %s)", m.Prober, strings.Join(Kinds, ", "))
	}
	if m.Timeout < 0 {
		return fmt.Errorf("timeout: must be positive")
	}
	if m.Timeout == 0 {
		m.Timeout = Duration(DefaultTimeout)
	}
	for _, p := range []struct{ field, v string }{
		{"http.preferred_ip_protocol", m.HTTP.PreferredIPProtocol}, {"tcp.preferred_ip_protocol", m.TCP.PreferredIPProtocol},
		{"dns.preferred_ip_protocol", m.DNS.PreferredIPProtocol}, {"icmp.preferred_ip_protocol", m.ICMP.PreferredIPProtocol},
		{"grpc.preferred_ip_protocol", m.GRPC.PreferredIPProtocol},
	} {
		if p.v != "" && p.v != "ip4" && p.v != "ip6" {
			return fmt.Errorf("%s: %q (want ip4 or ip6)", p.field, p.v)
		}
	}
	for _, t := range []struct {
		field string
		c     *TLSConfig
	}{{"http.tls_config", &m.HTTP.TLSConfig}, {"tcp.tls_config", &m.TCP.TLSConfig}, {"dns.tls_config", &m.DNS.TLSConfig}, {"grpc.tls_config", &m.GRPC.TLSConfig}} {
		if err := t.c.check(); err != nil {
			return fmt.Errorf("%s.%v", t.field, err)
		}
	}
	switch m.Prober {
	case "http":
		for _, v := range m.HTTP.ValidHTTPVersions {
			if !contains([]string{"HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/2.0", "HTTP/3", "HTTP/3.0"}, v) {
				return fmt.Errorf("http.valid_http_versions: %q is not an HTTP version", v)
			}
		}
		for _, c := range m.HTTP.ValidStatusCodes {
			if c < 100 || c > 599 {
				return fmt.Errorf("http.valid_status_codes: %d is not a status code", c)
			}
		}
		if m.HTTP.Compression != "" && !contains([]string{"gzip", "br", "deflate", "identity"}, m.HTTP.Compression) {
			return fmt.Errorf("http.compression: %q (want gzip, br, deflate or identity)", m.HTTP.Compression)
		}
		if m.HTTP.Compression != "" && m.HTTP.Compression != "identity" && m.HTTP.Compression != "gzip" {
			return fmt.Errorf("http.compression: %q is not supported (gzip and identity are)", m.HTTP.Compression)
		}
	case "tcp":
		for i, q := range m.TCP.QueryResponse {
			if q.Expect.Regexp == nil && q.Send == "" && !q.StartTLS {
				return fmt.Errorf("tcp.query_response[%d]: empty step (want expect, send or starttls)", i)
			}
		}
	case "dns":
		if m.DNS.QueryName == "" {
			return fmt.Errorf("dns.query_name: required")
		}
		if m.DNS.QueryType == "" {
			m.DNS.QueryType = "ANY"
		}
		if _, ok := dnsType(m.DNS.QueryType); !ok {
			return fmt.Errorf("dns.query_type: %q is not a record type", m.DNS.QueryType)
		}
		if m.DNS.QueryClass != "" {
			if _, ok := dnsClass(m.DNS.QueryClass); !ok {
				return fmt.Errorf("dns.query_class: %q is not a class", m.DNS.QueryClass)
			}
		}
		switch m.DNS.TransportProtocol {
		case "":
			m.DNS.TransportProtocol = "udp"
		case "udp", "tcp":
		default:
			return fmt.Errorf("dns.transport_protocol: %q (want udp or tcp)", m.DNS.TransportProtocol)
		}
		for _, rc := range m.DNS.ValidRcodes {
			if _, ok := dnsRcode(rc); !ok {
				return fmt.Errorf("dns.valid_rcodes: %q is not a response code", rc)
			}
		}
	case "icmp":
		if m.ICMP.PayloadSize < 0 || m.ICMP.PayloadSize > 65000 {
			return fmt.Errorf("icmp.payload_size: %d (want 0 to 65000)", m.ICMP.PayloadSize)
		}
		if m.ICMP.TTL < 0 || m.ICMP.TTL > 255 {
			return fmt.Errorf("icmp.ttl: %d (want 0 to 255)", m.ICMP.TTL)
		}
	}
	return nil
}

func (c *TLSConfig) check() error {
	for _, v := range []struct{ field, v string }{{"min_version", c.MinVersion}, {"max_version", c.MaxVersion}} {
		if _, ok := tlsVersions[v.v]; v.v != "" && !ok {
			return fmt.Errorf("%s: %q (want TLS10, TLS11, TLS12 or TLS13)", v.field, v.v)
		}
	}
	for _, g := range c.CurvePreferences {
		if _, ok := curveByName(g); !ok {
			return fmt.Errorf("curve_preferences: %q is not a key exchange group", g)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fmt.Errorf("cert_file and key_file: give both or neither")
	}
	cfg, err := c.compile()
	if err != nil {
		return err
	}
	c.compiled = cfg
	return nil
}

// checkKeys walks a mapping node against the struct type t, reporting
// unknown and unsupported keys with their line.
func checkKeys(n *yaml.Node, t reflect.Type, path, filename string, errs *[]string) {
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			checkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), filename, errs)
		}
		return
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, c := range n.Content {
			checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), filename, errs)
		}
		return
	case t.Kind() != reflect.Struct || n.Kind != yaml.MappingNode:
		return
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" && f.IsExported() {
			fields[name] = f.Type
		}
	}
	if t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType) {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		ft, ok := fields[k.Value]
		if !ok {
			block := path[strings.LastIndex(path, ".")+1:]
			if contains(unsupported[block], k.Value) {
				*errs = append(*errs, fmt.Sprintf("%s:%d: %s: not supported by penstock probe", filename, k.Line, join(path, k.Value)))
			} else {
				*errs = append(*errs, fmt.Sprintf("%s:%d: %s: unknown field", filename, k.Line, join(path, k.Value)))
			}
			continue
		}
		checkKeys(n.Content[i+1], ft, join(path, k.Value), filename, errs)
	}
}

var lineRe = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// lineOf finds the line of the key at path in the document (0 when absent).
func lineOf(root *yaml.Node, path ...string) int {
	n := root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line, n, found = n.Content[i].Line, n.Content[i+1], true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
