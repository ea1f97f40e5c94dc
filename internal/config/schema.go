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
//	// compile (snapshot.Compile, which runs Validate): packages that check
//	// further report through cfg.Errorf or a Collector, so their errors
//	// cite the same file and line.
//
// A route's fields that belong to its pipeline stages (max_request_body,
// cache, ...) are not part of this schema: they are kept as written
// (Route.Stages) and each stage of internal/pipeline decodes, defaults and
// checks its own, through DecodeStageFields and CheckStageFields, when the
// config is compiled or checked (gateway.CheckRoutes is such a Checker).
//
// Every error is an Errors value listing FieldErrors such as
//
//	penstock.yaml: routes[2].match.path (line 41): must start with "/"
package config

import "go.yaml.in/yaml/v3"

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
	// AccessLog writes one line per request.
	AccessLog AccessLog `yaml:"access_log"`
	// Metrics configures the Prometheus metrics on the admin API.
	Metrics Metrics `yaml:"metrics"`
	// Tracing configures trace context propagation and OpenTelemetry spans.
	Tracing Tracing `yaml:"tracing"`
	// Limits are the named rate limits routes apply (see Limit).
	Limits []Limit `yaml:"limits"`
	// Functions are the executables penstock runs on demand and routes
	// serve as upstreams (functions.go).
	Functions []Function `yaml:"functions"`
	// Postgres is the PostgreSQL-aware proxy (pooling, read/write
	// splitting, breakers). Absent means none. See postgres.go.
	Postgres *Postgres `yaml:"postgres"`

	// src records the file name and field lines when the Config was decoded
	// by Parse or Load; nil for a Config built in Go.
	src *source
}

// Listener is one TCP socket serving HTTP/1.1 and, when enabled, HTTP/2;
// with "h3" in Protocols, also a UDP socket at the same address serving
// HTTP/3.
type Listener struct {
	// Name identifies the listener in logs and errors. Required, unique.
	Name string `yaml:"name"`
	// Address is host:port to bind, e.g. "127.0.0.1:8080" or ":443". Required.
	Address string `yaml:"address"`
	// Protocols lists what the listener speaks. Plain TCP: "h1" (default) and,
	// opt-in, "h2c" (HTTP/2 over cleartext with prior knowledge).
	// TLS: "h1" and "h2" offered by ALPN; default [h1, h2]; opt-in "h3"
	// (HTTP/3 over QUIC on the same address, UDP).
	Protocols []string `yaml:"protocols"`
	// Engine is the HTTP server implementation: "native" (default),
	// penstock's own HTTP/1.1 engine (HTTP/2 through net/http on the same
	// socket), or "stdhttp", Go's net/http server for everything, kept for
	// comparison. Clients see the same behaviour from both.
	Engine string `yaml:"engine"`
	// TLS turns the listener into a TLS listener. Absent means plain TCP.
	TLS *ListenerTLS `yaml:"tls"`
	// Limits protect the listener from slow or oversized clients.
	Limits ListenerLimits `yaml:"limits"`
	// HTTP3 tunes HTTP/3, served when Protocols lists "h3".
	HTTP3 ListenerHTTP3 `yaml:"http3"`
	// TrustedProxies lists CIDRs (or single addresses) whose incoming
	// X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and Forwarded
	// headers are kept and appended to. From any other peer those headers are
	// replaced. Default: none trusted.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// ListenerTLS configures TLS on a listener. TLS 1.2 is the minimum; session
// resumption (tickets) is on. Certificate, key, CA and ticket key files are
// watched and reloaded without a restart.
type ListenerTLS struct {
	// Certificates are served by SNI: the first whose names match the client's
	// server name wins; the first entry is the default when none matches.
	Certificates []Certificate `yaml:"certificates"`
	// SelfSigned generates an ECDSA P-256 certificate at start (for demos and
	// tests; its SHA-256 fingerprint is logged). Default false.
	SelfSigned bool `yaml:"self_signed"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or "1.3".
	MinVersion string `yaml:"min_version"`
	// ClientAuth asks clients for a certificate (mutual TLS). Absent means
	// no client certificate is requested.
	ClientAuth *ClientAuth `yaml:"client_auth"`
	// SessionTicketKeysFile is a file of session ticket keys shared by every
	// penstock process serving the same names, so a session resumes on any of
	// them and across restarts. One key per line, 32 bytes in base64 (make
	// one with: head -c 32 /dev/urandom | base64), or a binary file of 32-byte
	// keys; the first key encrypts new tickets, every key decrypts. The file
	// is re-read when it changes. Default "": each process makes its own keys
	// and rotates them daily, so resumption works only with that process.
	SessionTicketKeysFile string `yaml:"session_ticket_keys_file"`
}

// ClientAuth configures client certificate authentication (mutual TLS) on a
// TLS listener. The verified certificate is available to the pipeline in
// the request's TLS connection state.
type ClientAuth struct {
	// Mode is "none" (default: no certificate requested), "verify_if_given"
	// (a certificate is optional, but one that is sent must verify) or
	// "require" (the handshake fails without a certificate that verifies).
	Mode string `yaml:"mode"`
	// CAFiles are PEM bundles of the certificate authorities that client
	// certificates must chain to. Required unless mode is "none". Re-read
	// when they change, like the certificates.
	CAFiles []string `yaml:"ca_files"`
}

// Certificate is a PEM certificate chain and its private key. Both files are
// re-read when they change; a new pair that does not load (unparseable, or
// a key that does not match the certificate) is logged and the previous
// pair keeps serving.
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
	// IdleTimeout closes keep-alive connections idle for this long (HTTP/3:
	// without requests). Default 60s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds the request line plus headers. Default 64KiB.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// MaxConcurrentStreams bounds concurrent HTTP/2 streams per connection.
	// Default 250.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// SendTimeout bounds how long an HTTP/2 or HTTP/3 response may make no
	// progress towards the client, for instance because the client's flow
	// control window stays closed: past it the stream is reset and its
	// resources are freed (NGINX's send_timeout). Each write that goes
	// through extends it. Default 60s.
	SendTimeout Duration `yaml:"send_timeout"`
	// HTTP2MaxReceiveWindow is the largest flow-control window an HTTP/2
	// connection and its streams grow to for request bodies: they start
	// at 1 MiB and grow with the measured bandwidth-delay product. It
	// bounds the request body bytes one connection can make penstock
	// buffer. Default 16MiB.
	HTTP2MaxReceiveWindow ByteSize `yaml:"http2_max_receive_window"`
}

// ListenerHTTP3 configures a listener's HTTP/3 (QUIC) side. HTTP/3 is served
// on a UDP socket bound to the listener's address, by the same routes as
// HTTP/1.1 and HTTP/2.
type ListenerHTTP3 struct {
	// AltSvc advertises HTTP/3 on the listener's HTTP/1.1 and HTTP/2
	// responses with an Alt-Svc header (RFC 7838), so browsers switch to it.
	// Default true.
	AltSvc *bool `yaml:"alt_svc"`
	// AltSvcMaxAge is how long clients may remember the advertisement (the
	// "ma" parameter, whole seconds). Default 24h.
	AltSvcMaxAge Duration `yaml:"alt_svc_max_age"`
	// AltSvcPort is the UDP port advertised, when clients reach HTTP/3 on
	// another port than the bound one (a layer 4 balancer in front).
	// Default 0: the bound port.
	AltSvcPort int `yaml:"alt_svc_port"`
	// AltSvcExcludeHosts are request hosts (exact, case-insensitive, port
	// ignored) whose responses carry no Alt-Svc. Default none.
	AltSvcExcludeHosts []string `yaml:"alt_svc_exclude_hosts"`
	// MaxIdleTimeout closes a QUIC connection without network activity for
	// this long. Default 30s.
	MaxIdleTimeout Duration `yaml:"max_idle_timeout"`
	// MaxIncomingStreams bounds concurrent requests (bidirectional streams)
	// per connection. Default 100.
	MaxIncomingStreams int64 `yaml:"max_incoming_streams"`
	// ZeroRTT accepts TLS 1.3 early data (0-RTT) on resumed connections.
	// Early requests can be replayed by an attacker: only routes with
	// early_data: true serve them, and only for GET, HEAD and OPTIONS
	// (others get 425 Too Early). Default false.
	ZeroRTT bool `yaml:"zero_rtt"`
	// QlogDir, when set, writes one qlog file per QUIC connection into this
	// directory (for debugging; costs CPU and disk). Default "" (none).
	QlogDir string `yaml:"qlog_dir"`
	// HandshakeRateLimit is the rate of new QUIC handshakes per second above
	// which clients must first prove their address with a Retry (RFC 9000
	// §8.1.2), which costs them one round trip and blunts spoofed floods.
	// 0 disables the check. Default 1000.
	HandshakeRateLimit int `yaml:"handshake_rate_limit"`
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
	// prior knowledge), "h2" (HTTP/2 over TLS; needs TLS) or "h3" (HTTP/3
	// over QUIC, UDP to the endpoint's port; needs TLS, no unix sockets).
	Protocol string `yaml:"protocol"`
	// Client is the HTTP/1.1 client used when Protocol is "h1": "native"
	// (default), penstock's own client, which allocates nothing per request
	// and needs no goroutine per connection; or "stdhttp", Go's net/http
	// Transport. HTTP/2 pools always use net/http.
	Client string `yaml:"client"`
	// TLS, when present, makes penstock connect to the endpoints with TLS.
	TLS *UpstreamTLS `yaml:"tls"`
	// Pool sizes the keep-alive connection pool per endpoint.
	Pool Pool `yaml:"pool"`
	// PassiveHealth takes endpoints that fail to connect out of rotation.
	PassiveHealth PassiveHealth `yaml:"passive_health"`
	// HealthCheck, when present, probes the endpoints actively.
	HealthCheck *HealthCheck `yaml:"health_check"`
	// OutlierDetection, when present, ejects endpoints that answer worse
	// than their peers.
	OutlierDetection *OutlierDetection `yaml:"outlier_detection"`
	// CircuitBreaker, when present, refuses at once for a pool or endpoint
	// whose recent requests mostly failed.
	CircuitBreaker *CircuitBreaker `yaml:"circuit_breaker"`
}

// PassiveHealth judges endpoints by the requests penstock already sends:
// after MaxFails consecutive connection failures an endpoint leaves rotation
// for FailTimeout, then gets traffic again (NGINX's max_fails/fail_timeout).
// When every endpoint of a pool is out, one request per endpoint and
// TrialInterval goes through as a trial (a success puts the endpoint back at
// once) and the others get 503.
type PassiveHealth struct {
	// MaxFails is the number of consecutive connection failures that take an
	// endpoint out. Default 1; must be at least 1.
	MaxFails int `yaml:"max_fails"`
	// FailTimeout is how long an endpoint stays out. Default 10s.
	FailTimeout Duration `yaml:"fail_timeout"`
	// TrialInterval is how often an endpoint that is out gets one trial
	// request while no endpoint of its pool is in rotation, so that a pool is
	// never empty much longer than its endpoints are really down. Default
	// 1s; values at or above fail_timeout mean no trials.
	TrialInterval Duration `yaml:"trial_interval"`
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
	// AccessLog overrides the global access log sampling for this route.
	AccessLog *RouteAccessLog `yaml:"access_log"`
	// Tracing sets per-route tracing options.
	Tracing RouteTracing `yaml:"tracing"`
	// Retry says which failed attempts are sent to another endpoint.
	Retry RouteRetry `yaml:"retry"`
	// Split, when present, divides the route's requests between upstream
	// pools (arms) and may mirror them to a shadow pool (split.go).
	Split *RouteSplit `yaml:"split"`
	// Upgrades lists the protocols a client may switch this route's
	// HTTP/1.1 connections to with Upgrade (RFC 9110 §7.8), which penstock
	// then tunnels to the upstream. Only "websocket" (RFC 6455) can be
	// listed; an upgrade to anything else (h2c among them) is never
	// tunnelled: the request goes upstream as a plain one, Upgrade removed.
	// An empty list tunnels none. Default [websocket].
	Upgrades *[]string `yaml:"upgrades"`
	// Batch, when present, holds single inference requests and sends them
	// upstream as one batch request (batch.go).
	Batch *RouteBatch `yaml:"batch"`
	// Stages holds the route's fields that belong to its pipeline stages
	// (max_request_body, early_data, early_hints, push, cache, ...), as
	// written. Each stage of internal/pipeline declares, defaults and
	// validates its own fields and decodes them from here as strictly as the
	// rest of the file (DecodeStageFields); a field no stage owns is an
	// unknown field (CheckStageFields).
	Stages StageFields `yaml:",inline"`
}

// StageFields are a route's stage fields by name, each the YAML value as
// written (anchors and merge keys resolved when decoded).
type StageFields map[string]*yaml.Node

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
	// case-insensitive). Values often are shared secrets (an internal key),
	// so GET /config shows them as <redacted>.
	Headers map[string]string `yaml:"headers" secret:"values"`
	// GRPC matches gRPC calls by service and method, in place of Path and
	// Methods (see GRPCMatch). Default none.
	GRPC *GRPCMatch `yaml:"grpc"`
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
	// IdleGrace is how long a draining server (after a SIGTERM, in a binary
	// upgrade, or the old server of a listener a reload changed) keeps an
	// idle HTTP/1.1 keep-alive connection open for its next request, which
	// it answers with "Connection: close", before closing it. At most the
	// listener's idle_timeout and drain_timeout. Default 5s.
	IdleGrace Duration `yaml:"idle_grace"`
	// StreamDrainTimeout is how long the old process of a binary upgrade
	// lets long-lived streams run (server-sent event streams over
	// HTTP/1.1, WebSockets) after drain_timeout has ended the other
	// requests: the new process serves meanwhile, so nothing waits on
	// them. A SIGTERM still ends them at drain_timeout. Default 10m.
	StreamDrainTimeout Duration `yaml:"stream_drain_timeout"`
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

// AccessLog writes exactly one structured line per request when its
// response completes (errors, timeouts and client aborts included), through
// a bounded asynchronous buffer so a slow disk never blocks a request.
type AccessLog struct {
	// Enabled turns the access log on. Default true.
	Enabled *bool `yaml:"enabled"`
	// Format is "json" (default) or "logfmt".
	Format string `yaml:"format"`
	// Output is "stdout" (default), "stderr" or a file path. A file is
	// reopened on SIGUSR1, for log rotation.
	Output string `yaml:"output"`
	// Buffer is how many lines may wait for the writer; when it is full new
	// lines are dropped and counted (penstock_access_log_lines_total
	// {result="dropped"}), never blocking the request. Default 8192.
	Buffer int `yaml:"buffer"`
	// Path is how the request path is logged: "full" (default), "no_query"
	// or "redacted" (the route pattern with parameter names, no values).
	Path string `yaml:"path"`
	// MaxLinesPerSecond caps the lines written per second; lines over the
	// cap are dropped and counted. Default 0 (no cap).
	MaxLinesPerSecond int `yaml:"max_lines_per_second"`
	// Sampling rules are evaluated in order; the first rule that matches a
	// request decides whether its line is kept. A request no rule matches is
	// kept. Default: none (every line kept).
	Sampling []SamplingRule `yaml:"sampling"`
}

// RouteAccessLog overrides the access log for one route.
type RouteAccessLog struct {
	// Sampling replaces the global rules for this route when set.
	Sampling []SamplingRule `yaml:"sampling"`
}

// SamplingRule is one access log sampling rule: a condition and an action.
// Exactly one action (Keep, Drop or KeepPercent) is set.
type SamplingRule struct {
	// Name labels the rule in penstock_access_log_sampled_total. Default:
	// "rule<index>".
	Name string `yaml:"name"`
	// Match is the rule's condition; empty matches every request.
	Match SamplingMatch `yaml:"match"`
	// Keep keeps the line when Match holds.
	Keep bool `yaml:"keep"`
	// Drop drops the line when Match holds.
	Drop bool `yaml:"drop"`
	// KeepPercent keeps this percentage (0–100) of matching lines, decided
	// by hashing KeepBy, so the same key is always kept or always dropped.
	KeepPercent *float64 `yaml:"keep_percent"`
	// KeepBy is what KeepPercent hashes: "trace_id" (default; agrees with
	// trace sampling, so a sampled trace has all its lines) or "param:NAME"
	// (a route parameter, e.g. "param:id" keeps the same 1% of ids).
	KeepBy string `yaml:"keep_by"`
}

// SamplingMatch is a sampling rule's condition; all given parts must hold.
type SamplingMatch struct {
	// PathPrefixes matches requests whose path starts with one of these.
	PathPrefixes []string `yaml:"path_prefixes"`
	// Methods matches these request methods.
	Methods []string `yaml:"methods"`
	// Extensions matches paths ending in one of these (".js", ".png").
	Extensions []string `yaml:"extensions"`
	// Status matches status codes or classes: "5xx", "4xx", "404".
	Status []string `yaml:"status"`
	// SlowerThan matches requests that took longer than this (duration).
	SlowerThan Duration `yaml:"slower_than"`
	// Routes matches these route names.
	Routes []string `yaml:"routes"`
}

// Metrics configures the Prometheus metrics served on the admin API's
// /metrics.
type Metrics struct {
	// DurationBuckets are the request duration histogram's upper bounds in
	// seconds. Default suits inference: 5ms to 60s
	// [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60].
	DurationBuckets []float64 `yaml:"duration_buckets"`
	// PerHost adds a "host" label (the route's configured host pattern, never
	// the raw Host header) to request metrics. Default false.
	PerHost bool `yaml:"per_host"`
}

// Tracing configures trace context and OpenTelemetry spans.
type Tracing struct {
	// Propagation lists the trace context formats read from requests, in
	// order: "w3c" (traceparent/tracestate) and "b3" (single and multi
	// header). The upstream request always carries W3C traceparent, plus B3
	// if the client sent B3. Default [w3c, b3].
	Propagation []string `yaml:"propagation"`
	// Exporter sends spans: "none" (default: trace context is still
	// propagated and logged), "otlp_http", "otlp_grpc" or "stdout".
	Exporter string `yaml:"exporter"`
	// Endpoint is the OTLP collector's host:port. Default 127.0.0.1:4318 for
	// otlp_http, 127.0.0.1:4317 for otlp_grpc.
	Endpoint string `yaml:"endpoint"`
	// SampleRatio is the fraction (0–1) of new traces sampled; a request that
	// carries a sampling decision in its trace context keeps it (parent
	// based). The decision hashes the trace id, the same way access log
	// KeepPercent does. Default 1.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is the service.name resource attribute. Default "penstock".
	ServiceName string `yaml:"service_name"`
}

// RouteTracing sets tracing options for one route.
type RouteTracing struct {
	// ParamAttributes records the route's path parameters as span
	// attributes ("url.path_param.model"). Default false: parameter values
	// may identify users.
	ParamAttributes bool `yaml:"param_attributes"`
}

// On reports whether the access log is on.
func (a AccessLog) On() bool { return a.Enabled == nil || *a.Enabled }
