package probe

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadModules(t *testing.T) {
	m := modules(t, `modules:
  http_2xx:
    prober: http
    timeout: 10s
    http:
      valid_status_codes: [200, 204]
      method: POST
      headers: {X-A: b}
      fail_if_body_not_matches_regexp: ["ok"]
      tls_config: {insecure_skip_verify: true, min_version: TLS12}
  dns:
    prober: dns
    dns: {query_name: example.org}
`)
	h := m.Modules["http_2xx"]
	if h.Prober != "http" || time.Duration(h.Timeout) != 10*time.Second || h.HTTP.Method != "POST" || len(h.HTTP.ValidStatusCodes) != 2 {
		t.Errorf("http module %+v", h)
	}
	d := m.Modules["dns"]
	if time.Duration(d.Timeout) != DefaultTimeout || d.DNS.QueryType != "ANY" || d.DNS.TransportProtocol != "udp" {
		t.Errorf("dns defaults: timeout %v type %q transport %q", time.Duration(d.Timeout), d.DNS.QueryType, d.DNS.TransportProtocol)
	}
}

// Bad modules files are refused with the file, line and field.
func TestLoadModulesErrors(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"unknown field", "modules:\n  web:\n    prober: http\n    http:\n      methd: GET\n", "test.yml:5: modules.web.http.methd: unknown field"},
		{"unsupported option", "modules:\n  web:\n    prober: http\n    http:\n      oauth2: {client_id: x}\n", "test.yml:5: modules.web.http.oauth2: not supported by penstock probe"},
		{"unknown prober", "modules:\n  web:\n    prober: smtp\n", `test.yml:2: modules.web.prober: "smtp" is not a prober`},
		{"bad duration", "modules:\n  web:\n    prober: http\n    timeout: soon\n", "test.yml:4: not a duration"},
		{"bad regexp", "modules:\n  web:\n    prober: http\n    http:\n      fail_if_body_matches_regexp: ['(']\n", "test.yml:5: bad regular expression"},
		{"bad status", "modules:\n  web:\n    prober: http\n    http: {valid_status_codes: [42]}\n", "test.yml:2: modules.web.http.valid_status_codes: 42 is not a status code"},
		{"dns without name", "modules:\n  d:\n    prober: dns\n", "test.yml:2: modules.d.dns.query_name: required"},
		{"bad query type", "modules:\n  d:\n    prober: dns\n    dns: {query_name: a, query_type: AX}\n", `modules.d.dns.query_type: "AX" is not a record type`},
		{"bad transport", "modules:\n  d:\n    prober: dns\n    dns: {query_name: a, transport_protocol: quic}\n", "modules.d.dns.transport_protocol"},
		{"bad ip protocol", "modules:\n  t:\n    prober: tcp\n    tcp: {preferred_ip_protocol: ip5}\n", `modules.t.tcp.preferred_ip_protocol: "ip5"`},
		{"bad tls version", "modules:\n  t:\n    prober: tcp\n    tcp: {tls_config: {min_version: TLS14}}\n", `modules.t.tcp.tls_config.min_version: "TLS14"`},
		{"bad group", "modules:\n  t:\n    prober: tls\n    tcp: {tls_config: {curve_preferences: [P999]}}\n", `curve_preferences: "P999"`},
		{"empty tcp step", "modules:\n  t:\n    prober: tcp\n    tcp: {query_response: [{}]}\n", "modules.t.tcp.query_response[0]: empty step"},
		{"no modules", "modules: {}\n", "modules: none defined"},
		{"empty file", "", "no modules"},
		{"not yaml", "modules: [\n", "test.yml:"},
		{"unknown top level", "modulez: {}\n", "test.yml:1: modulez: unknown field"},
		{"missing CA file", "modules:\n  web:\n    prober: http\n    http: {tls_config: {ca_file: /nonexistent/ca.pem}}\n", "test.yml:2: modules.web.http.tls_config.ca_file: open /nonexistent/ca.pem"},
		{"bad body limit", "modules:\n  web:\n    prober: http\n    http: {body_size_limit: lots}\n", "not a size"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadModules([]byte(c.text), "test.yml")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// The modules file blackbox_exporter ships loads as it is, but for the
// options that need what penstock refuses.
func TestLoadBlackboxExample(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "blackbox.yml"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadModules(data, "blackbox.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"http_2xx", "http_post_2xx", "tcp_connect", "pop3s_banner", "grpc", "grpc_plain", "ssh_banner", "irc_banner", "icmp", "icmp_ttl5"} {
		if m.Modules[name] == nil {
			t.Errorf("module %s missing", name)
		}
	}
}

func FuzzLoadModules(f *testing.F) {
	for _, s := range []string{
		"modules:\n  http_2xx:\n    prober: http\n",
		"modules:\n  d:\n    prober: dns\n    dns: {query_name: a, query_type: A, valid_rcodes: [NOERROR]}\n",
		"modules:\n  t:\n    prober: tcp\n    tcp:\n      query_response:\n      - expect: '^+OK'\n      - starttls: true\n",
		"modules:\n  web:\n    prober: http\n    http:\n      oauth2: {}\n",
		"modules: [\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		m, err := LoadModules([]byte(text), "fuzz.yml")
		if err == nil && len(m.Modules) == 0 {
			t.Fatal("no error and no modules")
		}
	})
}

func TestDefaultModulesLoad(t *testing.T) {
	m := DefaultModules()
	for _, name := range []string{"http_2xx", "tcp_connect", "tls_connect", "icmp", "grpc_plain", "dns_udp", "http3_2xx"} {
		if m.Modules[name] == nil {
			t.Errorf("built-in module %s missing", name)
		}
	}
	if GuessModule("https://x/") != "http_2xx" || GuessModule("x:22") != "tcp_connect" {
		t.Error("GuessModule")
	}
}
