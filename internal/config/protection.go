package config

import (
	"regexp"
	"time"
)

// HealthCheck probes every endpoint of a pool out of band, HAProxy-style:
// an endpoint whose last Fall checks failed leaves rotation until its last
// Rise checks pass. It works beside passive health (either one can take an
// endpoint out). Endpoints start in rotation and are checked at once.
type HealthCheck struct {
	// Type is "http" (default: a GET answered with one of ExpectedStatuses,
	// and a body matching BodyRegex if set, over the pool's own protocol and
	// TLS) or "tcp" (a connection is accepted).
	Type string `yaml:"type"`
	// Path is the http check's request target. Default "/".
	Path string `yaml:"path"`
	// Host is the http check's Host header. Default: the endpoint address.
	Host string `yaml:"host"`
	// ExpectedStatuses are the statuses that pass an http check. Default:
	// any 2xx or 3xx.
	ExpectedStatuses []int `yaml:"expected_statuses"`
	// BodyRegex, when set, must match the first 64 KiB of the http check's
	// response body (Go RE2 syntax).
	BodyRegex string `yaml:"body_regex"`
	// Interval is the time between two checks of one endpoint. Default 5s.
	Interval Duration `yaml:"interval"`
	// Jitter adds a random delay of up to this much to each interval, so
	// the checks of many gateways do not arrive together. Default 0.
	Jitter Duration `yaml:"jitter"`
	// Timeout bounds one check; a check that takes longer fails. Default 2s,
	// or Interval if shorter. One endpoint's checks never overlap: the next
	// starts an interval after the last ended.
	Timeout Duration `yaml:"timeout"`
	// Rise is the number of consecutive passed checks that put an endpoint
	// back. Default 2.
	Rise int `yaml:"rise"`
	// Fall is the number of consecutive failed checks that take an endpoint
	// out. Default 3.
	Fall int `yaml:"fall"`
	// SlowStart ramps the traffic of an endpoint that comes back (its checks
	// rise again, or its outlier ejection ends) linearly from 10 % to its
	// full share over this long. Default 0 (full share at once).
	SlowStart Duration `yaml:"slow_start"`
	// Warmup gates an endpoint that comes back (its checks rise again after
	// they took it out, as after a restart): before it gets live traffic,
	// penstock sends it warm-up requests until enough in a row are answered
	// fast enough. Absent: no gating.
	Warmup *Warmup `yaml:"warmup"`
}

// Warmup is an endpoint's warm-up before it rejoins rotation: Requests
// consecutive warm-up requests, each answered with an expected status
// (the check's expected_statuses) and, when MaxLatency is set, within it.
// A slow or failed answer starts the count again. Model servers are the
// reason: the first requests after a start load weights, compile kernels
// and fill caches, and should not be a client's.
type Warmup struct {
	// Method of the warm-up requests. Default GET, or POST with a Body.
	Method string `yaml:"method"`
	// Path is the warm-up request target. Default: the check's path.
	Path string `yaml:"path"`
	// Headers are sent with each warm-up request (e.g. Content-Type).
	Headers map[string]string `yaml:"headers"`
	// Body is each warm-up request's content.
	Body string `yaml:"body"`
	// Requests is how many consecutive good answers pass the warm-up.
	// Default 10.
	Requests int `yaml:"requests"`
	// MaxLatency, when set, is the latency a good answer must stay
	// within. Default 0 (any answer counts).
	MaxLatency Duration `yaml:"max_latency"`
	// RequestTimeout bounds one warm-up request. Default 10s.
	RequestTimeout Duration `yaml:"request_timeout"`
	// Timeout bounds the whole warm-up; an endpoint that is not warm by
	// then stays out, and its checks must rise again before the next try.
	// Default 2m.
	Timeout Duration `yaml:"timeout"`
}

// OutlierDetection ejects endpoints that answer worse than their peers,
// Envoy-style. Ejection is for BaseEjectionTime × the times the endpoint was
// ejected (capped by MaxEjectionTime); each Interval an endpoint spends in
// rotation takes one off that count.
type OutlierDetection struct {
	// Interval is how often the success rate and latency statistics are
	// computed. Default 10s.
	Interval Duration `yaml:"interval"`
	// Consecutive5xx ejects an endpoint after this many 5xx responses in a
	// row. Default 5; -1 turns it off.
	Consecutive5xx int `yaml:"consecutive_5xx"`
	// ConsecutiveGatewayFailure ejects an endpoint after this many gateway
	// failures in a row (connect error, timeout, reset, malformed or
	// truncated response). Default 5; -1 turns it off.
	ConsecutiveGatewayFailure int `yaml:"consecutive_gateway_failure"`
	// SuccessRateStdevFactor ejects, each interval, the endpoints whose
	// success rate is below mean − stdev × factor of the pool's. Default 1.9;
	// -1 turns it off.
	SuccessRateStdevFactor float64 `yaml:"success_rate_stdev_factor"`
	// LatencyStdevFactor ejects, each interval, the endpoints whose mean
	// latency is above mean + stdev × factor of the pool's. Default 0 (off;
	// -1 too).
	LatencyStdevFactor float64 `yaml:"latency_stdev_factor"`
	// MinimumHosts is the number of endpoints that must each have served
	// RequestVolume requests in the interval for the statistics to run.
	// Default 3.
	MinimumHosts int `yaml:"minimum_hosts"`
	// RequestVolume is the requests an endpoint must have served in the
	// interval to count in the statistics. Default 50.
	RequestVolume int `yaml:"request_volume"`
	// BaseEjectionTime is the first ejection's length. Default 30s.
	BaseEjectionTime Duration `yaml:"base_ejection_time"`
	// MaxEjectionTime caps an ejection's length. Default 300s.
	MaxEjectionTime Duration `yaml:"max_ejection_time"`
	// MaxEjectionPercent caps the share of the pool's endpoints ejected at
	// once. Default 10. A pool of two or more may always eject one endpoint,
	// and never its last one.
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
}

// CircuitBreaker stops sending to a pool, and to each of its endpoints,
// whose recent requests mostly fail or are slow: closed (normal) → open
// (refuse at once: the pool answers 503 circuit_open, an endpoint leaves
// rotation) → after OpenDuration half-open (MaxTrialRequests requests go
// through; all passing closes it, one failing opens it again).
type CircuitBreaker struct {
	// Window is the sliding window, in whole seconds, the ratios are taken
	// over. Default 10s; 1s to 120s.
	Window Duration `yaml:"window"`
	// MinRequests is the requests the window must hold before the breaker
	// may trip. Default 20.
	MinRequests int `yaml:"min_requests"`
	// ErrorRatio trips the breaker when this share of the window's requests
	// failed (5xx responses and gateway failures). Default 0.5; 0 < r ≤ 1.
	ErrorRatio float64 `yaml:"error_ratio"`
	// SlowThreshold marks a request slow when its response head took longer.
	// Default 0 (latency does not trip the breaker).
	SlowThreshold Duration `yaml:"slow_threshold"`
	// SlowRatio trips the breaker when this share of the window's requests
	// was slow. Default 0.5; 0 < r ≤ 1.
	SlowRatio float64 `yaml:"slow_ratio"`
	// OpenDuration is how long an open breaker refuses before it lets trial
	// requests through. Default 10s.
	OpenDuration Duration `yaml:"open_duration"`
	// MaxTrialRequests is the requests a half-open breaker lets through;
	// when they all pass it closes. Default 3.
	MaxTrialRequests int `yaml:"max_trial_requests"`
}

// Defaults of the upstream protection settings.
const (
	HealthCheckHTTP = "http"
	HealthCheckTCP  = "tcp"

	DefaultHealthCheckInterval = Duration(5 * time.Second)
	DefaultHealthCheckTimeout  = Duration(2 * time.Second)
	DefaultHealthCheckRise     = 2
	DefaultHealthCheckFall     = 3

	DefaultWarmupRequests       = 10
	DefaultWarmupRequestTimeout = Duration(10 * time.Second)
	DefaultWarmupTimeout        = Duration(2 * time.Minute)

	DefaultOutlierInterval           = Duration(10 * time.Second)
	DefaultConsecutive5xx            = 5
	DefaultConsecutiveGatewayFailure = 5
	DefaultSuccessRateStdevFactor    = 1.9
	DefaultOutlierMinimumHosts       = 3
	DefaultOutlierRequestVolume      = 50
	DefaultBaseEjectionTime          = Duration(30 * time.Second)
	DefaultMaxEjectionTime           = Duration(300 * time.Second)
	DefaultMaxEjectionPercent        = 10

	DefaultBreakerWindow           = Duration(10 * time.Second)
	MaxBreakerWindow               = Duration(120 * time.Second)
	DefaultBreakerMinRequests      = 20
	DefaultBreakerErrorRatio       = 0.5
	DefaultBreakerSlowRatio        = 0.5
	DefaultBreakerOpenDuration     = Duration(10 * time.Second)
	DefaultBreakerMaxTrialRequests = 3
)

// setProtectionDefaults fills the unset fields of u's health_check,
// outlier_detection and circuit_breaker blocks, where present. An unset
// number cannot be told from an explicit 0, so the outlier thresholds are
// turned off with -1.
func (u *Upstream) setProtectionDefaults() {
	if h := u.HealthCheck; h != nil {
		setDefault(&h.Type, HealthCheckHTTP)
		if h.Type == HealthCheckHTTP {
			setDefault(&h.Path, "/")
		}
		setDefault(&h.Interval, DefaultHealthCheckInterval)
		setDefault(&h.Timeout, min(DefaultHealthCheckTimeout, h.Interval))
		setDefault(&h.Rise, DefaultHealthCheckRise)
		setDefault(&h.Fall, DefaultHealthCheckFall)
		if w := h.Warmup; w != nil {
			if w.Method == "" && w.Body != "" {
				w.Method = "POST"
			}
			setDefault(&w.Method, "GET")
			setDefault(&w.Path, h.Path)
			setDefault(&w.Path, "/")
			setDefault(&w.Requests, DefaultWarmupRequests)
			setDefault(&w.RequestTimeout, DefaultWarmupRequestTimeout)
			setDefault(&w.Timeout, DefaultWarmupTimeout)
		}
	}
	if o := u.OutlierDetection; o != nil {
		setDefault(&o.Interval, DefaultOutlierInterval)
		setDefault(&o.Consecutive5xx, DefaultConsecutive5xx)
		setDefault(&o.ConsecutiveGatewayFailure, DefaultConsecutiveGatewayFailure)
		setDefault(&o.SuccessRateStdevFactor, DefaultSuccessRateStdevFactor)
		setDefault(&o.MinimumHosts, DefaultOutlierMinimumHosts)
		setDefault(&o.RequestVolume, DefaultOutlierRequestVolume)
		setDefault(&o.BaseEjectionTime, DefaultBaseEjectionTime)
		setDefault(&o.MaxEjectionTime, max(DefaultMaxEjectionTime, o.BaseEjectionTime))
		setDefault(&o.MaxEjectionPercent, DefaultMaxEjectionPercent)
	}
	if b := u.CircuitBreaker; b != nil {
		setDefault(&b.Window, DefaultBreakerWindow)
		setDefault(&b.MinRequests, DefaultBreakerMinRequests)
		setDefault(&b.ErrorRatio, DefaultBreakerErrorRatio)
		setDefault(&b.SlowRatio, DefaultBreakerSlowRatio)
		setDefault(&b.OpenDuration, DefaultBreakerOpenDuration)
		setDefault(&b.MaxTrialRequests, DefaultBreakerMaxTrialRequests)
	}
}

// validateProtection checks u's health_check, outlier_detection and
// circuit_breaker blocks; p is u's field path.
func (u *Upstream) validateProtection(col *Collector, p string) {
	if h := u.HealthCheck; h != nil {
		hp := p + ".health_check"
		switch h.Type {
		case HealthCheckHTTP:
			if h.Path == "" || h.Path[0] != '/' {
				col.Addf(hp+".path", "must start with '/', got %q", h.Path)
			}
		case HealthCheckTCP:
			if u.Protocol == ProtocolH3 {
				col.Addf(hp+".type", "a tcp check cannot reach an h3 (UDP) endpoint; use http")
			}
			if h.Path != "" || h.Host != "" || len(h.ExpectedStatuses) > 0 || h.BodyRegex != "" {
				col.Addf(hp+".type", "path, host, expected_statuses and body_regex apply to http checks only")
			}
		default:
			col.Addf(hp+".type", "unknown health check type %q; want http or tcp", h.Type)
		}
		for i, s := range h.ExpectedStatuses {
			if s < 100 || s > 599 {
				col.Addf(indexPath(hp+".expected_statuses", i), "status %d is out of range: want 100 to 599", s)
			}
		}
		if h.BodyRegex != "" {
			if _, err := regexp.Compile(h.BodyRegex); err != nil {
				col.Addf(hp+".body_regex", "%v", err)
			}
		}
		if h.Interval <= 0 {
			col.Addf(hp+".interval", "must be positive, got %s", h.Interval)
		}
		checkDuration(col, hp+".jitter", h.Jitter)
		checkDuration(col, hp+".slow_start", h.SlowStart)
		if h.Timeout <= 0 {
			col.Addf(hp+".timeout", "must be positive, got %s", h.Timeout)
		}
		if h.Rise < 1 {
			col.Addf(hp+".rise", "must be at least 1, got %d", h.Rise)
		}
		if h.Fall < 1 {
			col.Addf(hp+".fall", "must be at least 1, got %d", h.Fall)
		}
		if h.Warmup != nil {
			h.validateWarmup(col, hp+".warmup")
		}
	}
	if o := u.OutlierDetection; o != nil {
		op := p + ".outlier_detection"
		if o.Interval <= 0 {
			col.Addf(op+".interval", "must be positive, got %s", o.Interval)
		}
		for _, f := range []struct {
			name string
			v    int
		}{{"consecutive_5xx", o.Consecutive5xx}, {"consecutive_gateway_failure", o.ConsecutiveGatewayFailure}} {
			if f.v < -1 {
				col.Addf(op+"."+f.name, "must be positive, or -1 for off; got %d", f.v)
			}
		}
		for _, f := range []struct {
			name string
			v    float64
		}{{"success_rate_stdev_factor", o.SuccessRateStdevFactor}, {"latency_stdev_factor", o.LatencyStdevFactor}} {
			if f.v < 0 && f.v != -1 || f.v > 100 {
				col.Addf(op+"."+f.name, "must be between 0 and 100, or -1 for off; got %g", f.v)
			}
		}
		if o.MinimumHosts < 1 {
			col.Addf(op+".minimum_hosts", "must be at least 1, got %d", o.MinimumHosts)
		}
		if o.RequestVolume < 1 {
			col.Addf(op+".request_volume", "must be at least 1, got %d", o.RequestVolume)
		}
		if o.BaseEjectionTime <= 0 {
			col.Addf(op+".base_ejection_time", "must be positive, got %s", o.BaseEjectionTime)
		}
		if o.MaxEjectionTime < o.BaseEjectionTime {
			col.Addf(op+".max_ejection_time", "must be at least base_ejection_time (%s), got %s", o.BaseEjectionTime, o.MaxEjectionTime)
		}
		if o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
			col.Addf(op+".max_ejection_percent", "must be between 0 and 100, got %d", o.MaxEjectionPercent)
		}
	}
	if b := u.CircuitBreaker; b != nil {
		bp := p + ".circuit_breaker"
		if b.Window < Duration(time.Second) || b.Window > MaxBreakerWindow || b.Window%Duration(time.Second) != 0 {
			col.Addf(bp+".window", "must be whole seconds from 1s to %s, got %s", MaxBreakerWindow, b.Window)
		}
		if b.MinRequests < 1 {
			col.Addf(bp+".min_requests", "must be at least 1, got %d", b.MinRequests)
		}
		if b.ErrorRatio <= 0 || b.ErrorRatio > 1 {
			col.Addf(bp+".error_ratio", "must be above 0 and at most 1, got %g", b.ErrorRatio)
		}
		if b.SlowRatio <= 0 || b.SlowRatio > 1 {
			col.Addf(bp+".slow_ratio", "must be above 0 and at most 1, got %g", b.SlowRatio)
		}
		checkDuration(col, bp+".slow_threshold", b.SlowThreshold)
		if b.OpenDuration <= 0 {
			col.Addf(bp+".open_duration", "must be positive, got %s", b.OpenDuration)
		}
		if b.MaxTrialRequests < 1 {
			col.Addf(bp+".max_trial_requests", "must be at least 1, got %d", b.MaxTrialRequests)
		}
	}
}

func (h *HealthCheck) validateWarmup(col *Collector, wp string) {
	w := h.Warmup
	if !isToken(w.Method) {
		col.Addf(wp+".method", "%q is not an HTTP method token", w.Method)
	}
	if w.Path == "" || w.Path[0] != '/' {
		col.Addf(wp+".path", "must start with '/', got %q", w.Path)
	}
	for k := range w.Headers {
		if !isToken(k) {
			col.Addf(wp+".headers", "%q is not a header field name", k)
		}
	}
	if w.Requests < 1 || w.Requests > 10000 {
		col.Addf(wp+".requests", "must be between 1 and 10000, got %d", w.Requests)
	}
	checkDuration(col, wp+".max_latency", w.MaxLatency)
	if w.RequestTimeout <= 0 {
		col.Addf(wp+".request_timeout", "must be positive, got %s", w.RequestTimeout)
	}
	if w.Timeout <= 0 {
		col.Addf(wp+".timeout", "must be positive, got %s", w.Timeout)
	}
}
