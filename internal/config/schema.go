// Package config defines penstock's configuration file: its schema, strict
// decoding with file lines, and validation that reports every error at once.
//
// The types here are what the YAML file decodes into. Every field documents its
// meaning, unit and default; docs/configuration.md is the user-facing copy of
// the same text and must be kept in step with it.
//
// A file goes through three steps:
//
//	cfg, err := config.Load("penstock.yaml") // strict decoding, then SetDefaults
//	err = cfg.Validate()                     // every cross-field problem at once
//	// compile: packages that check further report through cfg.Errorf or a
//	// Collector, so their errors cite the same file and line.
//
// Every error is an Errors value listing FieldErrors such as
//
//	penstock.yaml: routes[2].match.path (line 41): must start with "/"
package config

// Config is one penstock configuration file.
type Config struct {
	// Listeners are the sockets penstock accepts client traffic on. At least one
	// is required.
	Listeners []Listener `yaml:"listeners"`
	// Upstreams are the named pools of endpoints that routes forward to.
	Upstreams []Upstream `yaml:"upstreams"`
	// Routes map requests (host, path, method, headers) to an upstream. Order
	// does not matter: precedence is by specificity (see docs/configuration.md).
	Routes []Route `yaml:"routes"`
	// Admin is the operator's listener (health and readiness). Optional:
	// absent (or null) means no admin listener; "admin: {}" enables it with
	// defaults.
	Admin *Admin `yaml:"admin"`
	// Logging controls penstock's own log output.
	Logging Logging `yaml:"logging"`
	// Shutdown controls graceful shutdown on SIGTERM/SIGINT.
	Shutdown Shutdown `yaml:"shutdown"`
	// Reload controls how configuration changes are picked up.
	Reload Reload `yaml:"reload"`

	// src records the file name and field lines when the Config was decoded
	// by Parse or Load; nil for a Config built in Go.
	src *source
}

// Listener is one TCP socket serving HTTP/1.1 and, when enabled, HTTP/2.
type Listener struct {
	// Name identifies the listener in logs and errors. Required, unique.
	Name string `yaml:"name"`
	// Address is host:port to bind, e.g. "127.0.0.1:8080" or ":443". Required.
	Address string `yaml:"address"`
	// Protocols lists what the listener speaks. Plain TCP: "h1" (default) and,
	// opt-in, "h2c" (HTTP/2 over cleartext, prior knowledge and Upgrade).
	// TLS: "h1" and "h2" offered by ALPN; default [h1, h2].
	Protocols []string `yaml:"protocols"`
	// TLS turns the listener into a TLS listener. Absent means plain TCP.
	TLS *ListenerTLS `yaml:"tls"`
	// Limits protect the listener from slow or oversized clients.
	Limits ListenerLimits `yaml:"limits"`
	// TrustedProxies lists CIDRs (or single addresses) whose incoming
	// X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and Forwarded
	// headers are kept and appended to. From any other peer those headers are
	// replaced. Default: none trusted.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// ListenerTLS configures TLS on a listener. TLS 1.2 is the minimum; session
// resumption (tickets) is on.
type ListenerTLS struct {
	// Certificates are served by SNI: the first whose names match the client's
	// server name wins; the first entry is the default when none matches.
	Certificates []Certificate `yaml:"certificates"`
	// SelfSigned generates an ECDSA P-256 certificate at start (for demos and
	// tests; its SHA-256 fingerprint is logged). Default false.
	SelfSigned bool `yaml:"self_signed"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
}

// Certificate is a PEM certificate chain and its private key.
type Certificate struct {
	// CertFile is the path to the PEM certificate chain. Required.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the path to the PEM private key. Required.
	KeyFile string `yaml:"key_file"`
}

// ListenerLimits are per-connection protections. Zero means the default.
type ListenerLimits struct {
	// ReadHeaderTimeout bounds the time to read a request's headers
	// (slowloris). Default 10s.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes keep-alive connections idle for this long. Default 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds the request line plus headers. Default 64KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// MaxConcurrentStreams bounds concurrent HTTP/2 streams per connection.
	// Default 250.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
}

// Upstream is a named pool of endpoints.
type Upstream struct {
	// Name is how routes refer to the pool. Required, unique.
	Name string `yaml:"name"`
	// Endpoints are the servers in the pool. At least one is required.
	Endpoints []Endpoint `yaml:"endpoints"`
	// Balancing picks an endpoint per request: "round_robin" (default),
	// "weighted_round_robin" (smooth, by Endpoint.Weight) or "least_request"
	// (power of two random choices by in-flight requests).
	Balancing string `yaml:"balancing"`
	// Protocol spoken to the endpoints: "h1" (default), "h2c" (HTTP/2 with
	// prior knowledge) or "h2" (HTTP/2 over TLS; needs TLS).
	Protocol string `yaml:"protocol"`
	// TLS, when present, makes penstock connect to the endpoints with TLS.
	TLS *UpstreamTLS `yaml:"tls"`
	// Pool sizes the keep-alive connection pool per endpoint.
	Pool Pool `yaml:"pool"`
	// PassiveHealth takes endpoints that fail to connect out of rotation.
	PassiveHealth PassiveHealth `yaml:"passive_health"`
}

// PassiveHealth judges endpoints by the requests penstock already sends:
// after MaxFails consecutive connection failures an endpoint leaves rotation
// for FailTimeout, then gets traffic again (NGINX's max_fails/fail_timeout).
// When every endpoint of a pool is out, requests get 503.
type PassiveHealth struct {
	// MaxFails is the number of consecutive connection failures that take an
	// endpoint out. Default 1; must be at least 1.
	MaxFails int `yaml:"max_fails"`
	// FailTimeout is how long an endpoint stays out. Default 10s.
	FailTimeout Duration `yaml:"fail_timeout"`
}

// Endpoint is one server of an upstream pool.
type Endpoint struct {
	// Address is "host:port" or "unix:/path/to.sock". Required.
	Address string `yaml:"address"`
	// Weight is the endpoint's share under weighted_round_robin. Default 1;
	// must be between 1 and 1000.
	Weight int `yaml:"weight"`
}

// UpstreamTLS configures TLS from penstock to an upstream.
type UpstreamTLS struct {
	// ServerName is sent as SNI and checked against the certificate.
	// Default: the endpoint's host.
	ServerName string `yaml:"server_name"`
	// CAFile is a PEM bundle of roots to trust. Default: the system roots.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify disables certificate verification. Never use it in
	// production. Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Pool sizes an upstream's keep-alive connections.
type Pool struct {
	// MaxIdlePerEndpoint is the number of idle keep-alive connections kept per
	// endpoint. Default 64.
	MaxIdlePerEndpoint int `yaml:"max_idle_per_endpoint"`
	// MaxPerEndpoint caps connections (idle and active) per endpoint; requests
	// beyond it wait. Default 0 (no cap).
	MaxPerEndpoint int `yaml:"max_per_endpoint"`
	// IdleTimeout closes an idle upstream connection after this long.
	// Default 90s.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// Route maps matching requests to an upstream.
type Route struct {
	// Name identifies the route in logs, metrics and errors. Required, unique.
	Name string `yaml:"name"`
	// Match selects the requests this route handles.
	Match Match `yaml:"match"`
	// Upstream names the pool requests are forwarded to. Required.
	Upstream string `yaml:"upstream"`
	// Timeouts bound each phase of forwarding.
	Timeouts RouteTimeouts `yaml:"timeouts"`
	// MaxRequestBody bounds the request body; larger bodies get 413.
	// Default 10MiB. Accepts bytes or a size such as "512KiB".
	MaxRequestBody ByteSize `yaml:"max_request_body"`
}

// Match is a route's request matcher. All given conditions must hold.
type Match struct {
	// Hosts the route serves: exact ("api.example.com"), wildcard
	// ("*.example.com", one or more labels) or empty for any host. A port in
	// the request's Host is ignored.
	Hosts []string `yaml:"hosts"`
	// Path is an exact path pattern: static segments, ":name" parameters (one
	// segment) and a trailing "*name" catch-all. Exactly one of Path and
	// PathPrefix is required.
	Path string `yaml:"path"`
	// PathPrefix matches the pattern itself and everything below it on a
	// segment boundary ("/static" matches "/static" and "/static/a", not
	// "/staticx"). Parameters are allowed; a catch-all is not.
	PathPrefix string `yaml:"path_prefix"`
	// Methods the route accepts, e.g. [GET, POST]. Empty means any. A request
	// whose path matches only routes with other methods gets 405.
	Methods []string `yaml:"methods"`
	// Headers that must be present with exactly these values (names are
	// case-insensitive).
	Headers map[string]string `yaml:"headers"`
}

// RouteTimeouts bound the phases of a forwarded request. Zero means default.
type RouteTimeouts struct {
	// Connect bounds dialing an upstream endpoint. Default 5s.
	Connect Duration `yaml:"connect"`
	// ResponseHeader bounds the wait for the upstream's response headers after
	// the request is written. Default 60s.
	ResponseHeader Duration `yaml:"response_header"`
	// Request bounds the whole exchange, body streaming included. Default 0
	// (none, so long-lived streams such as SSE are not cut).
	Request Duration `yaml:"request"`
}

// Admin is the operator's HTTP listener.
type Admin struct {
	// Address to bind. Default "127.0.0.1:9901". A non-loopback address
	// requires a token.
	Address string `yaml:"address"`
	// Token is the bearer token that mutating and debug endpoints require
	// (POST /config/reload, /debug/pprof/). Prefer TokenFile or TokenEnv:
	// GET /config shows this field redacted, but the file holds it in clear.
	Token string `yaml:"token" secret:"true"`
	// TokenFile is a file whose content (trimmed) is the token.
	TokenFile string `yaml:"token_file"`
	// TokenEnv names an environment variable holding the token.
	TokenEnv string `yaml:"token_env"`
}

// Logging configures penstock's own log.
type Logging struct {
	// Level is "debug", "info" (default), "warn" or "error".
	Level string `yaml:"level"`
	// Format is "json" (default) or "text".
	Format string `yaml:"format"`
}

// Shutdown configures graceful shutdown.
type Shutdown struct {
	// DrainTimeout is how long in-flight requests may run after a SIGTERM or
	// SIGINT before connections are closed. Default 30s.
	DrainTimeout Duration `yaml:"drain_timeout"`
}

// Reload controls how a running penstock picks up configuration changes.
// SIGHUP and POST /config/reload on the admin API always reload.
type Reload struct {
	// Watch reloads when the configuration file changes (its directory is
	// watched, so editors that write a new file and rename it, and Kubernetes
	// ConfigMap symlink swaps, are seen). Default true.
	Watch *bool `yaml:"watch"`
	// Debounce waits this long after the last change in a burst before
	// reloading. Default 250ms.
	Debounce Duration `yaml:"debounce"`
	// StreamGrace is how long requests still running on an upstream that a
	// reload removed or changed may continue (long-lived streams such as
	// server-sent events and WebSockets) before their connections are closed.
	// Default 60s.
	StreamGrace Duration `yaml:"stream_grace"`
}

// WatchEnabled reports whether the configuration file is watched.
func (r Reload) WatchEnabled() bool { return r.Watch == nil || *r.Watch }
