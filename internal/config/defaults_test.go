package config

import (
	"reflect"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	cfg, err := Parse(text(`
listeners:
  - name: plain
    address: ":8080"
  - name: secure
    address: ":8443"
    tls: {self_signed: true, client_auth: {}}
upstreams:
  - name: app
    endpoints: [{address: "127.0.0.1:9000"}]
routes:
  - name: all
    match: {path_prefix: /}
    upstream: app
admin: {}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	plain, secure := cfg.Listeners[0], cfg.Listeners[1]
	check("plain protocols", plain.Protocols, []string{"h1"})
	check("TLS protocols", secure.Protocols, []string{"h1", "h2"})
	check("TLS min_version", secure.TLS.MinVersion, "1.2")
	check("client_auth.mode", secure.TLS.ClientAuth.Mode, "none")
	check("session_ticket_keys_file", secure.TLS.SessionTicketKeysFile, "")
	check("read_header_timeout", plain.Limits.ReadHeaderTimeout.D(), 10*time.Second)
	check("idle_timeout", plain.Limits.IdleTimeout.D(), 60*time.Second)
	check("max_header_bytes", plain.Limits.MaxHeaderBytes.Int64(), int64(64<<10))
	check("max_concurrent_streams", plain.Limits.MaxConcurrentStreams, uint32(250))
	check("trusted_proxies", plain.TrustedProxies, []string(nil))

	u := cfg.Upstreams[0]
	check("balancing", u.Balancing, "round_robin")
	check("upstream protocol", u.Protocol, "h1")
	check("weight", u.Endpoints[0].Weight, 1)
	check("max_idle_per_endpoint", u.Pool.MaxIdlePerEndpoint, 64)
	check("max_per_endpoint", u.Pool.MaxPerEndpoint, 0)
	check("pool idle_timeout", u.Pool.IdleTimeout.D(), 90*time.Second)
	check("upstream tls", u.TLS, (*UpstreamTLS)(nil))

	r := cfg.Routes[0]
	check("connect", r.Timeouts.Connect.D(), 5*time.Second)
	check("response_header", r.Timeouts.ResponseHeader.D(), 60*time.Second)
	check("request", r.Timeouts.Request.D(), time.Duration(0))

	check("admin address", cfg.Admin.Address, "127.0.0.1:9901")
	check("log level", cfg.Logging.Level, "info")
	check("log format", cfg.Logging.Format, "json")
	check("drain_timeout", cfg.Shutdown.DrainTimeout.D(), 30*time.Second)

	// Defaults apply once: a second pass changes nothing.
	before := *cfg
	before.Listeners = append([]Listener(nil), cfg.Listeners...)
	cfg.SetDefaults()
	check("after a second SetDefaults", cfg.Listeners, before.Listeners)
}

func TestDefaultsKeepSetValuesAndAdminAbsent(t *testing.T) {
	cfg, err := Parse(text(`
listeners:
  - name: web
    address: ":8080"
    protocols: [h2c]
    limits: {max_header_bytes: 1KiB}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Listeners[0].Protocols; !reflect.DeepEqual(got, []string{"h2c"}) {
		t.Errorf("protocols = %v, want the configured [h2c]", got)
	}
	if got := cfg.Listeners[0].Limits.MaxHeaderBytes; got != 1<<10 {
		t.Errorf("max_header_bytes = %v, want the configured 1KiB", got)
	}
	if cfg.Admin != nil {
		t.Errorf("admin = %+v, want nil when the file has no admin block", cfg.Admin)
	}
}

func TestDefaultProtocolsAreFreshSlices(t *testing.T) {
	a := DefaultTLSProtocols()
	a[0] = "changed"
	if DefaultTLSProtocols()[0] != ProtocolH1 {
		t.Error("DefaultTLSProtocols shares its slice between calls")
	}
}
