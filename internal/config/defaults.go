package config

import (
	"strconv"
	"time"
)

// Protocol names, as written in Listener.Protocols and Upstream.Protocol.
const (
	// ProtocolH1 is HTTP/1.1 (and 1.0).
	ProtocolH1 = "h1"
	// ProtocolH2 is HTTP/2 over TLS, negotiated by ALPN.
	ProtocolH2 = "h2"
	// ProtocolH2C is HTTP/2 over cleartext TCP (RFC 9113, section 3.3: prior
	// knowledge; the HTTP/1.1 "Upgrade: h2c" dance, deprecated by RFC 9113,
	// is not offered).
	ProtocolH2C = "h2c"
	// ProtocolH3 is HTTP/3 over QUIC (RFC 9114), on UDP at the listener's
	// address; TLS listeners only.
	ProtocolH3 = "h3"
)

// Server engines, as written in Listener.Engine.
const (
	// EngineNative is penstock's own HTTP/1.1 engine (internal/engine/h1).
	EngineNative = "native"
	// EngineStdHTTP is Go's net/http server (internal/engine/stdhttp).
	EngineStdHTTP = "stdhttp"
)

// DefaultEngine is Listener.Engine's default.
const DefaultEngine = EngineNative

// Balancing policies, as written in Upstream.Balancing.
const (
	// BalancingRoundRobin takes endpoints in turn.
	BalancingRoundRobin = "round_robin"
	// BalancingWeightedRoundRobin takes endpoints in turn in proportion to
	// their weights, spreading each endpoint's turns evenly (smooth).
	BalancingWeightedRoundRobin = "weighted_round_robin"
	// BalancingLeastRequest picks the less busy of two random endpoints,
	// by requests in flight.
	BalancingLeastRequest = "least_request"
)

// TLS versions, as written in ListenerTLS.MinVersion.
const (
	// TLSVersion12 is TLS 1.2 (RFC 5246), the lowest version penstock offers.
	TLSVersion12 = "1.2"
	// TLSVersion13 is TLS 1.3 (RFC 8446).
	TLSVersion13 = "1.3"
)

// Client certificate modes, as written in ClientAuth.Mode.
const (
	// ClientAuthNone requests no client certificate.
	ClientAuthNone = "none"
	// ClientAuthVerifyIfGiven requests a client certificate and verifies it
	// if one is sent; clients without one are served.
	ClientAuthVerifyIfGiven = "verify_if_given"
	// ClientAuthRequire requires a client certificate that verifies.
	ClientAuthRequire = "require"
)

// Log levels, as written in Logging.Level, from most to least verbose.
const (
	// LogLevelDebug logs debug messages and everything above.
	LogLevelDebug = "debug"
	// LogLevelInfo logs informational messages, warnings and errors.
	LogLevelInfo = "info"
	// LogLevelWarn logs warnings and errors.
	LogLevelWarn = "warn"
	// LogLevelError logs errors only.
	LogLevelError = "error"
)

// Log formats, as written in Logging.Format.
const (
	// LogFormatJSON writes one JSON object per line.
	LogFormatJSON = "json"
	// LogFormatText writes key=value pairs, for reading in a terminal.
	LogFormatText = "text"
)

// Defaults filled in by SetDefaults for fields left empty or zero. The
// gateway uses the same values for anything it builds without a file.
const (
	// DefaultReadHeaderTimeout is ListenerLimits.ReadHeaderTimeout's default.
	DefaultReadHeaderTimeout = Duration(10 * time.Second)
	// DefaultSendTimeout is ListenerLimits.SendTimeout's default, NGINX's
	// send_timeout.
	DefaultSendTimeout = Duration(60 * time.Second)
	// DefaultListenerIdleTimeout is ListenerLimits.IdleTimeout's default.
	DefaultListenerIdleTimeout = Duration(60 * time.Second)
	// DefaultMaxHeaderBytes is ListenerLimits.MaxHeaderBytes's default.
	DefaultMaxHeaderBytes = ByteSize(64 << 10)
	// DefaultMaxConcurrentStreams is ListenerLimits.MaxConcurrentStreams's
	// default.
	DefaultMaxConcurrentStreams uint32 = 250
	// DefaultHTTP2MaxReceiveWindow is
	// ListenerLimits.HTTP2MaxReceiveWindow's default.
	DefaultHTTP2MaxReceiveWindow = ByteSize(16 << 20)

	// DefaultAltSvcMaxAge is ListenerHTTP3.AltSvcMaxAge's default.
	DefaultAltSvcMaxAge = Duration(24 * time.Hour)
	// DefaultQUICMaxIdleTimeout is ListenerHTTP3.MaxIdleTimeout's default.
	DefaultQUICMaxIdleTimeout = Duration(30 * time.Second)
	// DefaultQUICMaxIncomingStreams is ListenerHTTP3.MaxIncomingStreams's
	// default.
	DefaultQUICMaxIncomingStreams int64 = 100
	// DefaultHandshakeRateLimit is ListenerHTTP3.HandshakeRateLimit's
	// default, in new handshakes per second.
	DefaultHandshakeRateLimit = 1000

	// DefaultTLSMinVersion is ListenerTLS.MinVersion's default.
	DefaultTLSMinVersion = TLSVersion12
	// DefaultClientAuthMode is ClientAuth.Mode's default.
	DefaultClientAuthMode = ClientAuthNone

	// DefaultBalancing is Upstream.Balancing's default.
	DefaultBalancing = BalancingRoundRobin
	// ClientNative and ClientStdHTTP are the values of Upstream.Client.
	ClientNative  = "native"
	ClientStdHTTP = "stdhttp"
	// DefaultUpstreamClient is Upstream.Client's default.
	DefaultUpstreamClient = ClientNative
	// DefaultUpstreamProtocol is Upstream.Protocol's default.
	DefaultUpstreamProtocol = ProtocolH1
	// DefaultWeight is Endpoint.Weight's default.
	DefaultWeight = 1
	// MaxWeight is the largest Endpoint.Weight accepted.
	MaxWeight = 1000
	// DefaultMaxFails is PassiveHealth.MaxFails's default.
	DefaultMaxFails = 1
	// DefaultFailTimeout is PassiveHealth.FailTimeout's default.
	DefaultFailTimeout = Duration(10 * time.Second)
	// DefaultTrialInterval is PassiveHealth.TrialInterval's default.
	DefaultTrialInterval = Duration(time.Second)
	// DefaultMaxIdlePerEndpoint is Pool.MaxIdlePerEndpoint's default.
	DefaultMaxIdlePerEndpoint = 64
	// DefaultPoolIdleTimeout is Pool.IdleTimeout's default.
	DefaultPoolIdleTimeout = Duration(90 * time.Second)

	// DefaultConnectTimeout is RouteTimeouts.Connect's default.
	DefaultConnectTimeout = Duration(5 * time.Second)
	// DefaultResponseHeaderTimeout is RouteTimeouts.ResponseHeader's default.
	DefaultResponseHeaderTimeout = Duration(60 * time.Second)
	// DefaultRequestTimeout is RouteTimeouts.Request's default: none.
	DefaultRequestTimeout = Duration(0)

	// DefaultReloadDebounce is Reload.Debounce's default.
	DefaultReloadDebounce = Duration(250 * time.Millisecond)
	// DefaultStreamGrace is Reload.StreamGrace's default.
	DefaultStreamGrace = Duration(60 * time.Second)
	// DefaultAdminAddress is Admin.Address's default.
	DefaultAdminAddress = "127.0.0.1:9901"

	// DefaultLogLevel is Logging.Level's default.
	DefaultLogLevel = LogLevelInfo
	// DefaultLogFormat is Logging.Format's default.
	DefaultLogFormat = LogFormatJSON

	// DefaultDrainTimeout is Shutdown.DrainTimeout's default.
	DefaultDrainTimeout = Duration(30 * time.Second)
	// DefaultIdleGrace is Shutdown.IdleGrace's default.
	DefaultIdleGrace = Duration(5 * time.Second)
	// DefaultStreamDrainTimeout is Shutdown.StreamDrainTimeout's default.
	DefaultStreamDrainTimeout = Duration(10 * time.Minute)
)

// DefaultPlainProtocols returns Listener.Protocols' default for a listener
// without TLS: [h1].
func DefaultPlainProtocols() []string { return []string{ProtocolH1} }

// DefaultTLSProtocols returns Listener.Protocols' default for a TLS listener:
// [h1, h2].
func DefaultTLSProtocols() []string { return []string{ProtocolH1, ProtocolH2} }

// SetDefaults fills every empty or zero field that has a default with it (the
// Default* constants); a route's stage fields get theirs from their stage
// (internal/pipeline). Parse and Load call it; call it yourself on a Config
// built in Go. Values already set, including invalid ones, are left for
// Validate to judge. Calling it again changes nothing.
//
// The admin listener is not enabled by defaults: Admin.Address is filled only
// when an admin block is present (write "admin: {}" for all defaults).
func (c *Config) SetDefaults() {
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if len(l.Protocols) == 0 {
			if l.TLS != nil {
				l.Protocols = DefaultTLSProtocols()
			} else {
				l.Protocols = DefaultPlainProtocols()
			}
		}
		setDefault(&l.Engine, DefaultEngine)
		if l.TLS != nil && l.TLS.MinVersion == "" {
			l.TLS.MinVersion = DefaultTLSMinVersion
		}
		if l.TLS != nil && l.TLS.ClientAuth != nil && l.TLS.ClientAuth.Mode == "" {
			l.TLS.ClientAuth.Mode = DefaultClientAuthMode
		}
		setDefault(&l.Limits.ReadHeaderTimeout, DefaultReadHeaderTimeout)
		setDefault(&l.Limits.IdleTimeout, DefaultListenerIdleTimeout)
		setDefault(&l.Limits.SendTimeout, DefaultSendTimeout)
		setDefault(&l.Limits.MaxHeaderBytes, DefaultMaxHeaderBytes)
		setDefault(&l.Limits.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
		setDefault(&l.Limits.HTTP2MaxReceiveWindow, DefaultHTTP2MaxReceiveWindow)
		if l.HTTP3.AltSvc == nil {
			on := true
			l.HTTP3.AltSvc = &on
		}
		setDefault(&l.HTTP3.AltSvcMaxAge, DefaultAltSvcMaxAge)
		setDefault(&l.HTTP3.MaxIdleTimeout, DefaultQUICMaxIdleTimeout)
		setDefault(&l.HTTP3.MaxIncomingStreams, DefaultQUICMaxIncomingStreams)
		setDefault(&l.HTTP3.HandshakeRateLimit, DefaultHandshakeRateLimit)
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		setDefault(&u.Balancing, DefaultBalancing)
		setDefault(&u.Protocol, DefaultUpstreamProtocol)
		setDefault(&u.Client, DefaultUpstreamClient)
		for j := range u.Endpoints {
			setDefault(&u.Endpoints[j].Weight, DefaultWeight)
		}
		setDefault(&u.Pool.MaxIdlePerEndpoint, DefaultMaxIdlePerEndpoint)
		setDefault(&u.Pool.IdleTimeout, DefaultPoolIdleTimeout)
		setDefault(&u.PassiveHealth.MaxFails, DefaultMaxFails)
		setDefault(&u.PassiveHealth.FailTimeout, DefaultFailTimeout)
		setDefault(&u.PassiveHealth.TrialInterval, DefaultTrialInterval)
		u.setProtectionDefaults()
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		setDefault(&r.Timeouts.Connect, DefaultConnectTimeout)
		setDefault(&r.Timeouts.ResponseHeader, DefaultResponseHeaderTimeout)
		setDefault(&r.Timeouts.Request, DefaultRequestTimeout)
		r.Retry.setDefaults()
		r.Match.setGRPCDefaults()
		if r.Upgrades == nil {
			r.Upgrades = &[]string{UpgradeWebSocket}
		}
		if r.Split != nil {
			r.Split.setDefaults(r.Upstream)
		}
		if r.Batch != nil {
			r.Batch.SetDefaults()
		}
	}
	if c.Admin != nil {
		setDefault(&c.Admin.Address, DefaultAdminAddress)
	}
	setDefault(&c.Logging.Level, DefaultLogLevel)
	setDefault(&c.Logging.Format, DefaultLogFormat)
	setDefault(&c.Shutdown.DrainTimeout, DefaultDrainTimeout)
	setDefault(&c.Shutdown.IdleGrace, DefaultIdleGrace)
	setDefault(&c.Shutdown.StreamDrainTimeout, DefaultStreamDrainTimeout)
	setDefault(&c.AccessLog.Format, "json")
	setDefault(&c.AccessLog.Output, "stdout")
	setDefault(&c.AccessLog.Buffer, DefaultAccessLogBuffer)
	setDefault(&c.AccessLog.Path, "full")
	if c.AccessLog.Sampling == nil {
		c.AccessLog.Sampling = DefaultSamplingRules()
	}
	for i := range c.AccessLog.Sampling {
		setSamplingDefaults(&c.AccessLog.Sampling[i], i)
	}
	for i := range c.Routes {
		if al := c.Routes[i].AccessLog; al != nil {
			for j := range al.Sampling {
				setSamplingDefaults(&al.Sampling[j], j)
			}
		}
	}
	if len(c.Metrics.DurationBuckets) == 0 {
		c.Metrics.DurationBuckets = DefaultDurationBuckets()
	}
	if len(c.Tracing.Propagation) == 0 {
		c.Tracing.Propagation = []string{"w3c", "b3"}
	}
	setDefault(&c.Tracing.Exporter, "none")
	switch c.Tracing.Exporter {
	case "otlp_http":
		setDefault(&c.Tracing.Endpoint, "127.0.0.1:4318")
	case "otlp_grpc":
		setDefault(&c.Tracing.Endpoint, "127.0.0.1:4317")
	}
	if c.Tracing.SampleRatio == nil {
		one := 1.0
		c.Tracing.SampleRatio = &one
	}
	setDefault(&c.Tracing.ServiceName, "penstock")
	setDefault(&c.Reload.Debounce, DefaultReloadDebounce)
	setDefault(&c.Reload.StreamGrace, DefaultStreamGrace)
	c.setLimitDefaults()
	c.setFunctionDefaults()
	if c.Postgres != nil {
		c.Postgres.setDefaults()
	}
}

// setDefault stores def in *p if *p is the zero value.
func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// DefaultAccessLogBuffer is AccessLog.Buffer's default.
const DefaultAccessLogBuffer = 8192

// DefaultDurationBuckets returns Metrics.DurationBuckets' default: 5ms to
// 60s, suited to inference latencies.
func DefaultDurationBuckets() []float64 {
	return []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
}

func setSamplingDefaults(r *SamplingRule, i int) {
	setDefault(&r.Name, "rule"+strconv.Itoa(i))
	if r.KeepPercent != nil {
		setDefault(&r.KeepBy, "trace_id")
	}
}

// DefaultSamplingRules are the access log rules used when the config sets
// none: drop health checks and metrics scrapes, keep every error and every
// slow request, drop successful static asset fetches, keep the rest. Write
// `sampling: [{keep: true}]` to log every request.
func DefaultSamplingRules() []SamplingRule {
	return []SamplingRule{
		{Name: "health", Match: SamplingMatch{PathPrefixes: []string{"/healthz", "/readyz", "/livez", "/health", "/metrics"}, Status: []string{"2xx", "3xx"}}, Drop: true},
		{Name: "errors", Match: SamplingMatch{Status: []string{"5xx", "4xx"}}, Keep: true},
		{Name: "slow", Match: SamplingMatch{SlowerThan: Duration(time.Second)}, Keep: true},
		{Name: "static", Match: SamplingMatch{Methods: []string{"GET", "HEAD"}, Extensions: []string{".js", ".css", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico", ".woff", ".woff2", ".map"}}, Drop: true},
	}
}
