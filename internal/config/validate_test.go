package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTLSFiles writes a certificate and its key, a key of another pair, a
// CA bundle and a file that holds no PEM into a temporary directory, and
// returns the directory.
func writeTLSFiles(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return key
	}
	writePEM := func(name, typ string, der []byte) {
		data := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	key := newKey()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM("cert.pem", "CERTIFICATE", der)
	writePEM("ca.pem", "CERTIFICATE", der)
	for name, k := range map[string]*ecdsa.PrivateKey{"key.pem": key, "other-key.pem": newKey()} {
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(name, "EC PRIVATE KEY", kder)
	}
	if err := os.WriteFile(filepath.Join(dir, "garbage.pem"), []byte("not pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ticket-keys"), []byte("# one key\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// validPrefix is a valid config of 12 lines; text appended to it starts at
// line 13 (line 14 after a raw string's leading newline).
const validPrefix = minimalYAML

func TestValidate(t *testing.T) {
	dir := writeTLSFiles(t)
	tests := []struct {
		name string
		// yaml has {{dir}} replaced by the directory of writeTLSFiles.
		yaml string
		// want lists every error line in order. An entry ending in "..."
		// matches any line starting with the rest (for messages that embed
		// the standard library's wording).
		want []string
	}{
		{
			name: "minimal config is valid",
			yaml: validPrefix,
		},
		{
			name: "TLS everywhere is valid",
			yaml: `
listeners:
  - name: web
    address: ":8443"
    tls:
      certificates:
        - cert_file: {{dir}}/cert.pem
          key_file: {{dir}}/key.pem
upstreams:
  - name: secure
    protocol: h2
    tls: {ca_file: {{dir}}/ca.pem, server_name: localhost}
    endpoints: [{address: "localhost:9443"}]
routes:
  - name: all
    match: {path_prefix: /}
    upstream: secure
`,
		},
		{
			name: "no listeners",
			yaml: "logging: {level: info}\n",
			want: []string{`listeners (line 1): at least one listener is required`},
		},
		{
			name: "listener names",
			yaml: `
listeners:
  - address: ":8080"
  - name: web
    address: ":8081"
  - name: web
    address: ":8082"
`,
			want: []string{
				`listeners[0].name (line 2): is required`,
				`listeners[2].name (line 5): duplicate listener name "web" (first used by listeners[1])`,
			},
		},
		{
			name: "listener addresses",
			yaml: `
listeners:
  - {name: a, address: "localhost"}
  - {name: b, address: ":99999"}
  - {name: c, address: "unix:/run/penstock.sock"}
  - {name: d, address: "bad host:80"}
  - {name: e}
`,
			want: []string{
				`listeners[0].address (line 2): invalid address "localhost": want host:port such as "127.0.0.1:8080" or ":443"`,
				`listeners[1].address (line 3): invalid address ":99999": port "99999" is not a number from 0 to 65535`,
				`listeners[2].address (line 4): unix sockets are not supported here; use host:port such as "127.0.0.1:8080"`,
				`listeners[3].address (line 5): invalid address "bad host:80": host "bad host" is not an IP address or a DNS name`,
				`listeners[4].address (line 6): is required`,
			},
		},
		{
			name: "listeners on the same port",
			yaml: `
listeners:
  - {name: a, address: "127.0.0.1:8080"}
  - {name: b, address: "127.0.0.1:8080"}
  - {name: c, address: "0.0.0.0:9090"}
  - {name: d, address: "10.1.2.3:9090"}
  - {name: e, address: "127.0.0.1:0"}
  - {name: f, address: "127.0.0.1:0"}
  - {name: g, address: "[::1]:7070"}
  - {name: h, address: "127.0.0.1:7070"}
`,
			want: []string{
				`listeners[1].address (line 3): address "127.0.0.1:8080" conflicts with listeners[0]'s address`,
				`listeners[3].address (line 5): address "10.1.2.3:9090" conflicts with listeners[2]'s address`,
			},
		},
		{
			name: "protocol combinations",
			yaml: `
listeners:
  - name: plain
    address: ":8080"
    protocols: [h1, h2, h3]
  - name: secure
    address: ":8443"
    protocols: [h2c, h1, h1, h3, h4]
    tls: {self_signed: true}
`,
			want: []string{
				`listeners[0].protocols[1] (line 4): protocol "h2" needs TLS: add a tls block, or use "h2c" for HTTP/2 over cleartext`,
				`listeners[0].protocols[2] (line 4): protocol "h3" (HTTP/3 over QUIC) needs TLS: add a tls block`,
				`listeners[1].protocols[0] (line 7): protocol "h2c" is HTTP/2 over cleartext and cannot be used with TLS: use "h2"`,
				`listeners[1].protocols[2] (line 7): protocol "h1" is listed twice`,
				`listeners[1].protocols[4] (line 7): unknown protocol "h4"; a TLS listener speaks h1, h2 and h3`,
			},
		},
		{
			name: "http3 settings",
			yaml: `
listeners:
  - name: secure
    address: ":8443"
    protocols: [h1, h2, h3]
    tls: {self_signed: true}
    http3:
      alt_svc_port: 70000
      max_incoming_streams: -1
      handshake_rate_limit: -3
      alt_svc_exclude_hosts: ["ok.example.com", "bad host:1"]
`,
			want: []string{
				`listeners[0].http3.alt_svc_port (line 7): port 70000 is out of range 1-65535`,
				`listeners[0].http3.max_incoming_streams (line 8): must be at least 1`,
				`listeners[0].http3.handshake_rate_limit (line 9): must be 0 (off) or a positive rate per second`,
				`listeners[0].http3.alt_svc_exclude_hosts[1] (line 10): "bad host:1" is not a host name`,
			},
		},
		{
			name: "unknown engine",
			yaml: `
listeners:
  - name: a
    address: ":8080"
    engine: nginx
  - {name: b, address: ":8081", engine: stdhttp}
  - {name: c, address: ":8082", engine: native}
`,
			want: []string{
				`listeners[0].engine (line 4): unknown engine "nginx"; want "native" or "stdhttp"`,
			},
		},
		{
			name: "TLS without certificates, or with both",
			yaml: `
listeners:
  - name: a
    address: ":8443"
    tls: {min_version: "1.1"}
  - name: b
    address: ":9443"
    tls:
      self_signed: true
      certificates: [{cert_file: {{dir}}/cert.pem, key_file: {{dir}}/key.pem}]
`,
			want: []string{
				`listeners[0].tls (line 4): needs certificates or self_signed: true`,
				`listeners[0].tls.min_version (line 4): unknown TLS version "1.1"; want "1.2" or "1.3"`,
				`listeners[1].tls.self_signed (line 8): self_signed and certificates cannot both be set`,
			},
		},
		{
			name: "missing certificate file",
			yaml: `
listeners:
  - name: web
    address: ":8443"
    tls:
      certificates:
        - cert_file: {{dir}}/absent.pem
          key_file: {{dir}}/key.pem
        - key_file: {{dir}}/absent-key.pem
`,
			want: []string{
				`listeners[0].tls.certificates[0].cert_file (line 6): missing certificate file "{{dir}}/absent.pem"`,
				`listeners[0].tls.certificates[1].cert_file (line 8): is required`,
				`listeners[0].tls.certificates[1].key_file (line 8): missing key file "{{dir}}/absent-key.pem"`,
			},
		},
		{
			name: "certificate and key that do not pair",
			yaml: `
listeners:
  - name: web
    address: ":8443"
    tls:
      certificates:
        - cert_file: {{dir}}/cert.pem
          key_file: {{dir}}/other-key.pem
        - cert_file: {{dir}}/garbage.pem
          key_file: {{dir}}/key.pem
        - cert_file: {{dir}}
          key_file: {{dir}}/key.pem
`,
			want: []string{
				`listeners[0].tls.certificates[0].cert_file (line 6): certificate "{{dir}}/cert.pem" with key "{{dir}}/other-key.pem" does not load: tls: private key does not match public key`,
				`listeners[0].tls.certificates[1].cert_file (line 8): certificate "{{dir}}/garbage.pem" with key "{{dir}}/key.pem" does not load: tls: failed to find any PEM data in certificate input`,
				`listeners[0].tls.certificates[2].cert_file (line 10): certificate file "{{dir}}" is not a regular file`,
			},
		},
		{
			name: "client certificates and session ticket keys",
			yaml: `
listeners:
  - name: a
    address: ":8443"
    tls:
      self_signed: true
      client_auth: {mode: require, ca_files: [{{dir}}/ca.pem]}
      session_ticket_keys_file: {{dir}}/ticket-keys
  - name: b
    address: ":8444"
    tls:
      self_signed: true
      client_auth: {mode: optional}
      session_ticket_keys_file: {{dir}}/garbage.pem
  - name: c
    address: ":8445"
    tls:
      self_signed: true
      client_auth: {mode: verify_if_given}
      session_ticket_keys_file: {{dir}}/absent
  - name: d
    address: ":8446"
    tls:
      self_signed: true
      client_auth: {ca_files: [{{dir}}/ca.pem]}
  - name: e
    address: ":8447"
    tls:
      self_signed: true
      client_auth: {mode: require, ca_files: [{{dir}}/ca.pem, {{dir}}/garbage.pem, {{dir}}/absent.pem]}
`,
			want: []string{
				`listeners[1].tls.client_auth.mode (line 12): unknown mode "optional"; want "none", "verify_if_given" or "require"`,
				`listeners[1].tls.session_ticket_keys_file (line 13): session ticket key file "{{dir}}/garbage.pem" does not load: line 1: not base64: illegal base64 data at input byte 3`,
				`listeners[2].tls.client_auth.ca_files (line 18): is required with mode "verify_if_given": name the CAs that sign client certificates`,
				`listeners[2].tls.session_ticket_keys_file (line 19): missing session ticket key file "{{dir}}/absent"`,
				`listeners[3].tls.client_auth.ca_files (line 24): has no effect with mode "none"; set mode to "require" or "verify_if_given"`,
				`listeners[4].tls.client_auth.ca_files[1] (line 29): CA file "{{dir}}/garbage.pem" holds no PEM certificates`,
				`listeners[4].tls.client_auth.ca_files[2] (line 29): missing CA file "{{dir}}/absent.pem"`,
			},
		},
		{
			name: "trusted proxies",
			yaml: `
listeners:
  - name: web
    address: ":8080"
    trusted_proxies: [10.0.0.0/8, "::1", 192.168.1.300, "10.0.0.0/33"]
`,
			want: []string{
				`listeners[0].trusted_proxies[2] (line 4): invalid trusted proxy "192.168.1.300": want a CIDR such as "10.0.0.0/8" or an IP address`,
				`listeners[0].trusted_proxies[3] (line 4): invalid trusted proxy "10.0.0.0/33": want a CIDR such as "10.0.0.0/8" or an IP address`,
			},
		},
		{
			name: "upstream names and endpoints",
			yaml: `
listeners: [{name: web, address: ":8080"}]
upstreams:
  - endpoints: [{address: "10.0.0.1:80"}]
  - name: a
    endpoints: [{address: "10.0.0.1:80"}]
  - name: a
`,
			want: []string{
				`upstreams[0].name (line 3): is required`,
				`upstreams[2].name (line 6): duplicate upstream name "a" (first used by upstreams[1])`,
				`upstreams[2].endpoints (line 6): at least one endpoint is required`,
			},
		},
		{
			name: "bad endpoint addresses",
			yaml: `
listeners: [{name: web, address: ":8080"}]
upstreams:
  - name: a
    endpoints:
      - address: "backend"
      - address: "http://backend:8080"
      - address: "backend:0"
      - address: "backend:http"
      - address: ":8080"
      - address: "unix:run/app.sock"
      - address: "unix:/run/app.sock"
      - address: "[::1]:8080"
      - address: "[::1]:8080"
      - {}
`,
			want: []string{
				`upstreams[0].endpoints[0].address (line 5): invalid endpoint address "backend": want "host:port" or "unix:/path/to.sock"`,
				`upstreams[0].endpoints[1].address (line 6): invalid endpoint address "http://backend:8080": write host:port without a scheme`,
				`upstreams[0].endpoints[2].address (line 7): invalid endpoint address "backend:0": port "0" is not a number from 1 to 65535`,
				`upstreams[0].endpoints[3].address (line 8): invalid endpoint address "backend:http": port "http" is not a number from 1 to 65535`,
				`upstreams[0].endpoints[4].address (line 9): invalid endpoint address ":8080": the host is missing`,
				`upstreams[0].endpoints[5].address (line 10): invalid endpoint address "unix:run/app.sock": the socket path must be absolute, e.g. "unix:/run/app.sock"`,
				`upstreams[0].endpoints[8].address (line 13): endpoint "[::1]:8080" is listed twice (first as endpoints[7])`,
				`upstreams[0].endpoints[9].address (line 14): is required`,
			},
		},
		{
			name: "upstream settings",
			yaml: `
listeners: [{name: web, address: ":8080"}]
upstreams:
  - name: a
    endpoints: [{address: "a:80", weight: 1001}, {address: "b:80", weight: -1}]
    balancing: random
    protocol: h4
    pool: {max_idle_per_endpoint: -1, max_per_endpoint: -2}
  - name: b
    endpoints: [{address: "a:443"}]
    protocol: h2
  - name: c
    endpoints: [{address: "a:80"}]
    protocol: h2c
    tls: {ca_file: {{dir}}/absent.pem}
  - name: d
    endpoints: [{address: "a:443"}]
    tls: {ca_file: {{dir}}/garbage.pem}
  - name: e
    endpoints: [{address: "a:443"}, {address: "unix:/run/x.sock"}]
    protocol: h3
`,
			want: []string{
				`upstreams[0].endpoints[0].weight (line 4): weight 1001 is out of range: want 1 to 1000`,
				`upstreams[0].endpoints[1].weight (line 4): weight -1 is out of range: want 1 to 1000`,
				`upstreams[0].balancing (line 5): unknown balancing "random"; want round_robin, weighted_round_robin or least_request`,
				`upstreams[0].protocol (line 6): unknown protocol "h4"; want h1, h2c, h2 or h3`,
				`upstreams[0].pool.max_idle_per_endpoint (line 7): must not be negative, got -1`,
				`upstreams[0].pool.max_per_endpoint (line 7): must not be negative, got -2`,
				`upstreams[1].protocol (line 10): protocol "h2" needs a tls block; use "h2c" for HTTP/2 over cleartext`,
				`upstreams[2].protocol (line 13): protocol "h2c" is HTTP/2 over cleartext and cannot be used with tls; use "h2"`,
				`upstreams[2].tls.ca_file (line 14): missing CA file "{{dir}}/absent.pem"`,
				`upstreams[3].tls.ca_file (line 17): CA file "{{dir}}/garbage.pem" holds no PEM certificates`,
				`upstreams[4].endpoints[1].address (line 19): protocol "h3" runs over UDP and cannot reach a unix socket`,
				`upstreams[4].protocol (line 20): protocol "h3" (HTTP/3 over QUIC) needs a tls block`,
			},
		},
		{
			name: "route names and upstreams",
			yaml: `
listeners: [{name: web, address: ":8080"}]
upstreams: [{name: users-api, endpoints: [{address: "a:80"}]}]
routes:
  - match: {path: /a}
    upstream: users-api
  - name: b
    match: {path: /b}
    upstream: user-api
  - name: b
    match: {path: /c}
    upstream: billing
  - name: d
    match: {path: /d}
`,
			want: []string{
				`routes[0].name (line 4): is required`,
				`routes[1].upstream (line 8): unknown upstream "user-api"; did you mean "users-api"?`,
				`routes[2].name (line 9): duplicate route name "b" (first used by routes[1])`,
				`routes[2].upstream (line 11): unknown upstream "billing"`,
				`routes[3].upstream (line 12): is required`,
			},
		},
		{
			name: "route matchers",
			yaml: `
listeners: [{name: web, address: ":8080"}]
upstreams: [{name: app, endpoints: [{address: "a:80"}]}]
routes:
  - name: neither
    upstream: app
  - name: both
    upstream: app
    match: {path: /a, path_prefix: /a}
  - name: methods
    upstream: app
    match:
      path: /m
      methods: [get, POST, POST, "M SEARCH", M-SEARCH]
  - name: headers
    upstream: app
    match:
      path: /h
      headers:
        X-Tenant: a
        x-tenant: b
        "Bad Header": c
        x.dotted: d
`,
			want: []string{
				`routes[0].match (line 4): needs path, path_prefix or grpc`,
				`routes[1].match.path_prefix (line 8): path and path_prefix cannot both be set`,
				`routes[2].match.methods[0] (line 13): method "get" must be uppercase: "GET"`,
				`routes[2].match.methods[2] (line 13): method "POST" is listed twice`,
				`routes[2].match.methods[3] (line 13): invalid method "M SEARCH"`,
				`routes[3].match.headers.x-tenant (line 20): header "x-tenant" is listed twice (as "X-Tenant" too; names are case-insensitive)`,
				`routes[3].match.headers["Bad Header"] (line 21): invalid header name "Bad Header"`,
			},
		},
		{
			name: "admin, logging",
			yaml: validPrefix + `
admin: {address: "127.0.0.1:8080"}
logging: {level: verbose, format: xml}
`,
			want: []string{
				`admin.address (line 14): address "127.0.0.1:8080" conflicts with listeners[0]'s address`,
				`logging.level (line 15): unknown level "verbose"; want debug, info, warn or error`,
				`logging.format (line 15): unknown format "xml"; want json or text`,
			},
		},
		{
			name: "admin address",
			yaml: validPrefix + "admin: {address: \"localhost\"}\n",
			want: []string{
				`admin.address (line 13): invalid address "localhost": want host:port such as "127.0.0.1:8080" or ":443"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := strings.ReplaceAll(tt.yaml, "{{dir}}", dir)
			cfg, err := Parse(text(src), "")
			if err == nil {
				err = cfg.Validate()
			}
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !matchLines(got, tt.want, dir) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.ReplaceAll(strings.Join(tt.want, "\n"), "{{dir}}", dir))
			}
		})
	}
}

// matchLines compares error lines against wanted lines, in which "{{dir}}"
// stands for dir and a trailing "..." allows any ending.
func matchLines(got, want []string, dir string) bool {
	if len(got) != len(want) {
		return false
	}
	for i, w := range want {
		w = strings.ReplaceAll(w, "{{dir}}", dir)
		if prefix, ok := strings.CutSuffix(w, "..."); ok {
			if !strings.HasPrefix(got[i], prefix) {
				return false
			}
		} else if got[i] != w {
			return false
		}
	}
	return true
}

func TestValidateReportsEveryError(t *testing.T) {
	cfg, err := Parse(text(`
listeners:
  - name: web
    address: ":80800"
upstreams:
  - name: app
    endpoints: [{address: "app"}]
routes:
  - name: all
    match: {path_prefix: /}
    upstream: ap
logging: {level: loud}
`), "penstock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("Validate = %v, want Errors", err)
	}
	if len(es) != 4 {
		t.Fatalf("Validate found %d errors, want 4:\n%v", len(es), err)
	}
	for i, e := range es {
		if e.File != "penstock.yaml" {
			t.Errorf("error %d has File %q", i, e.File)
		}
		if i > 0 && es[i-1].Line > e.Line {
			t.Errorf("errors not ordered by line: %d before %d", es[i-1].Line, e.Line)
		}
	}
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Path != "listeners[0].address" || fe.Line != 3 {
		t.Errorf("first FieldError = %+v, want listeners[0].address at line 3", fe)
	}
}

func TestValidateConfigBuiltInGo(t *testing.T) {
	cfg := &Config{
		Listeners: []Listener{{Name: "web", Address: ":8080"}},
		Upstreams: []Upstream{{Name: "app", Endpoints: []Endpoint{{Address: "127.0.0.1:9000"}}}},
		Routes:    []Route{{Name: "all", Match: Match{PathPrefix: "/"}, Upstream: "missing"}},
	}
	cfg.SetDefaults()
	err := cfg.Validate()
	want := `routes[0].upstream: unknown upstream "missing"`
	if err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %s", err, want)
	}

	cfg.Routes[0].Upstream = "app"
	cfg.Routes[0].Timeouts.Connect = -1
	cfg.Listeners[0].Limits.MaxHeaderBytes = -1
	err = cfg.Validate()
	want = "listeners[0].limits.max_header_bytes: must not be negative, got -1\n" +
		"routes[0].timeouts.connect: must not be negative, got -1ns"
	if err == nil || err.Error() != want {
		t.Errorf("Validate = %v, want %s", err, want)
	}
}
