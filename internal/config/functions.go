package config

import (
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Function is one function of the top-level functions section: an
// executable (any language) that penstock starts on demand, keeps warm, and
// stops when idle. A route serves a function by naming it as its upstream
// with the "function:" prefix (upstream: function:resize).
type Function struct {
	// Name identifies the function in routes (function:<name>), metrics,
	// logs and the admin API. Required, unique; a token (letters, digits,
	// -_.).
	Name string `yaml:"name"`
	// Command is the executable and its arguments. Required. The
	// placeholder {penstock} in any element is replaced by the running
	// penstock executable, so a function can be one of penstock's own
	// subcommands (the demo's). A relative executable is looked up in
	// PATH, then relative to WorkingDir.
	Command []string `yaml:"command"`
	// Mode is how penstock talks to an instance: "lambda" (default), the
	// AWS Lambda Runtime API served to the instance over loopback, so a
	// function built with an official runtime client runs unchanged; or
	// "http", the instance is itself an HTTP server on the address penstock
	// gives it (of-watchdog style).
	Mode string `yaml:"mode"`
	// Env is added to the instance's environment. The instance inherits
	// only PATH, HOME, LANG and TZ from penstock, plus the variables of its
	// mode (AWS_LAMBDA_RUNTIME_API, PENSTOCK_LISTEN, ...). Default none.
	Env map[string]string `yaml:"env"`
	// WorkingDir is the instance's working directory. Default: penstock's.
	WorkingDir string `yaml:"working_dir"`
	// Timeout bounds one invocation, request in to response complete
	// (duration). The instance is told (Lambda-Runtime-Deadline-Ms,
	// X-Penstock-Deadline-Ms); past it the client gets 504 and the instance
	// is killed and replaced. Default 30s.
	Timeout Duration `yaml:"timeout"`
	// InitTimeout bounds an instance's start, until it asks for its first
	// invocation (lambda) or answers its health check (http). Default 10s.
	InitTimeout Duration `yaml:"init_timeout"`
	// MinInstances are kept running even when idle (0 scales to zero).
	// Default 0.
	MinInstances int `yaml:"min_instances"`
	// MaxInstances bounds the instances running at once. Default 4.
	MaxInstances int `yaml:"max_instances"`
	// MaxConcurrency is how many invocations one instance serves at once.
	// In lambda mode, more than 1 needs a runtime client that polls
	// concurrently (aws-lambda-go reads AWS_LAMBDA_MAX_CONCURRENCY, which
	// penstock sets). Default 1.
	MaxConcurrency int `yaml:"max_concurrency"`
	// IdleTimeout stops an instance that served nothing for this long,
	// down to MinInstances (duration). Default 5m.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxQueue bounds the requests waiting for an instance when all are
	// busy; a request beyond it gets 429 with Retry-After. Default 100.
	MaxQueue int `yaml:"max_queue"`
	// QueueTimeout bounds a request's wait in the queue; past it the
	// request gets 503 with Retry-After (duration). Default 10s.
	QueueTimeout Duration `yaml:"queue_timeout"`
	// Memory caps an instance's memory (bytes, e.g. 256MiB): memory.max of
	// its own cgroup v2 when penstock may create one, else RLIMIT_DATA. The
	// admin API and the log say which applied. Default 0 (no cap).
	Memory ByteSize `yaml:"memory"`
	// CPU caps an instance's CPU time in cores (0.5 is half a core):
	// cpu.max of its cgroup v2. Without a writable cgroup v2 it is not
	// applied (no rlimit caps a rate), and the log says so. Default 0 (no
	// cap).
	CPU float64 `yaml:"cpu"`
	// MaxEventBytes bounds a request body (lambda mode: the event holds
	// it; a larger body gets 413) and a buffered lambda response (a larger
	// one gets 502; streamed responses are not bounded). Default 6MiB, as
	// Lambda's.
	MaxEventBytes ByteSize `yaml:"max_event_bytes"`
	// MaxOutputBytes bounds what an instance may write to stdout and
	// stderr during one invocation: the invocation is answered, then the
	// instance is recycled (stopped, the next request gets a fresh one).
	// Output is always drained and its log lines rate-limited; this bounds
	// how long a runaway instance keeps serving. Default 1MiB.
	MaxOutputBytes ByteSize `yaml:"max_output_bytes"`
	// HTTP configures http mode.
	HTTP FunctionHTTP `yaml:"http"`
}

// FunctionHTTP configures a function in http mode. The instance reads the
// address to listen on from PENSTOCK_LISTEN ("unix:/path" or
// "127.0.0.1:port"); for tcp, PORT holds the port too.
type FunctionHTTP struct {
	// Listen is "unix" (default: a socket in a directory only penstock's
	// user can enter) or "tcp" (a free loopback port).
	Listen string `yaml:"listen"`
	// HealthPath is requested (GET) until it answers below 500, before the
	// instance gets traffic. Default "/".
	HealthPath string `yaml:"health_path"`
}

// Function modes and http listen kinds.
const (
	FunctionModeLambda = "lambda"
	FunctionModeHTTP   = "http"

	FunctionListenUnix = "unix"
	FunctionListenTCP  = "tcp"

	// FunctionUpstreamPrefix starts a route's upstream that names a
	// function: "function:<name>".
	FunctionUpstreamPrefix = "function:"
)

// Function defaults and bounds.
const (
	DefaultFunctionTimeout        = Duration(30 * time.Second)
	DefaultFunctionInitTimeout    = Duration(10 * time.Second)
	DefaultFunctionMaxInstances   = 4
	DefaultFunctionMaxConcurrency = 1
	DefaultFunctionIdleTimeout    = Duration(5 * time.Minute)
	DefaultFunctionMaxQueue       = 100
	DefaultFunctionQueueTimeout   = Duration(10 * time.Second)
	DefaultFunctionMaxEventBytes  = ByteSize(6 << 20)
	DefaultFunctionMaxOutputBytes = ByteSize(1 << 20)
	// MaxFunctionInstances bounds MaxInstances.
	MaxFunctionInstances = 1024
	// MaxFunctionConcurrency bounds MaxConcurrency.
	MaxFunctionConcurrency = 1024
)

// FunctionNamed returns the function called name, or nil.
func (c *Config) FunctionNamed(name string) *Function {
	for i := range c.Functions {
		if c.Functions[i].Name == name {
			return &c.Functions[i]
		}
	}
	return nil
}

// FunctionOf returns the function a route's upstream names
// ("function:<name>"), and whether it names one at all.
func FunctionOf(upstream string) (string, bool) {
	return strings.CutPrefix(upstream, FunctionUpstreamPrefix)
}

func (c *Config) setFunctionDefaults() {
	for i := range c.Functions {
		f := &c.Functions[i]
		setDefault(&f.Mode, FunctionModeLambda)
		setDefault(&f.Timeout, DefaultFunctionTimeout)
		setDefault(&f.InitTimeout, DefaultFunctionInitTimeout)
		setDefault(&f.MaxInstances, DefaultFunctionMaxInstances)
		setDefault(&f.MaxConcurrency, DefaultFunctionMaxConcurrency)
		setDefault(&f.IdleTimeout, DefaultFunctionIdleTimeout)
		setDefault(&f.MaxQueue, DefaultFunctionMaxQueue)
		setDefault(&f.QueueTimeout, DefaultFunctionQueueTimeout)
		setDefault(&f.MaxEventBytes, DefaultFunctionMaxEventBytes)
		setDefault(&f.MaxOutputBytes, DefaultFunctionMaxOutputBytes)
		if f.Mode == FunctionModeHTTP {
			setDefault(&f.HTTP.Listen, FunctionListenUnix)
			setDefault(&f.HTTP.HealthPath, "/")
		}
	}
}

// validateFunctions checks the functions section and adds each function to
// upstreams as "function:<name>", so routes may name it. A function cannot
// be a split arm or a mirror: those forward to pools.
func (c *Config) validateFunctions(col *Collector, upstreams map[string]string) {
	names := map[string]string{}
	for i, f := range c.Functions {
		p := indexPath("functions", i)
		checkName(col, p, "function", f.Name, names)
		if f.Name != "" && !isToken(f.Name) {
			col.Addf(p+".name", "function name %q must be a token (letters, digits, -_.)", f.Name)
		} else if f.Name != "" {
			upstreams[FunctionUpstreamPrefix+f.Name] = p
		}
		switch {
		case len(f.Command) == 0 || f.Command[0] == "":
			col.Addf(p+".command", "is required: the executable and its arguments")
		case slices.ContainsFunc(f.Command, func(s string) bool { return strings.IndexByte(s, 0) >= 0 }):
			col.Addf(p+".command", "must not contain NUL bytes")
		}
		modes := []string{FunctionModeLambda, FunctionModeHTTP}
		if !slices.Contains(modes, f.Mode) {
			col.Addf(p+".mode", "unknown mode %q; want lambda or http%s", f.Mode, didYouMean(f.Mode, modes))
		}
		for _, k := range slices.Sorted(maps.Keys(f.Env)) {
			if k == "" || strings.ContainsAny(k, "=\x00") {
				col.Addf(keyPath(p+".env", k), "invalid environment variable name %q", k)
			} else if strings.IndexByte(f.Env[k], 0) >= 0 {
				col.Addf(keyPath(p+".env", k), "must not contain NUL bytes")
			}
		}
		positive := func(field string, d Duration) {
			if d <= 0 {
				col.Addf(p+"."+field, "must be positive, got %s", d)
			}
		}
		positive("timeout", f.Timeout)
		positive("init_timeout", f.InitTimeout)
		positive("idle_timeout", f.IdleTimeout)
		positive("queue_timeout", f.QueueTimeout)
		switch {
		case f.MaxInstances < 1 || f.MaxInstances > MaxFunctionInstances:
			col.Addf(p+".max_instances", "must be between 1 and %d, got %d", MaxFunctionInstances, f.MaxInstances)
		case f.MinInstances < 0 || f.MinInstances > f.MaxInstances:
			col.Addf(p+".min_instances", "must be between 0 and max_instances (%d), got %d", f.MaxInstances, f.MinInstances)
		}
		if f.MaxConcurrency < 1 || f.MaxConcurrency > MaxFunctionConcurrency {
			col.Addf(p+".max_concurrency", "must be between 1 and %d, got %d", MaxFunctionConcurrency, f.MaxConcurrency)
		}
		if f.MaxQueue < 0 {
			col.Addf(p+".max_queue", "must not be negative, got %d", f.MaxQueue)
		}
		checkSize(col, p+".memory", f.Memory)
		if f.Memory > 0 && f.Memory < 1<<20 {
			col.Addf(p+".memory", "must be at least 1MiB, got %d bytes", f.Memory)
		}
		if math.IsNaN(f.CPU) || f.CPU < 0 || f.CPU > 1024 {
			col.Addf(p+".cpu", "must be between 0 and 1024 cores, got %v", f.CPU)
		} else if f.CPU > 0 && f.CPU < 0.01 {
			col.Addf(p+".cpu", "must be at least 0.01 cores, got %v", f.CPU)
		}
		if f.MaxEventBytes <= 0 {
			col.Addf(p+".max_event_bytes", "must be positive, got %d", f.MaxEventBytes)
		}
		if f.Mode == FunctionModeHTTP {
			listens := []string{FunctionListenUnix, FunctionListenTCP}
			if !slices.Contains(listens, f.HTTP.Listen) {
				col.Addf(p+".http.listen", "unknown listen kind %q; want unix or tcp%s", f.HTTP.Listen, didYouMean(f.HTTP.Listen, listens))
			}
			if !strings.HasPrefix(f.HTTP.HealthPath, "/") {
				col.Addf(p+".http.health_path", "must start with \"/\", got %q", f.HTTP.HealthPath)
			}
		} else if f.HTTP != (FunctionHTTP{}) {
			col.Addf(p+".http", "is only used with mode: http")
		}
	}
	for i, r := range c.Routes {
		if r.Split == nil {
			continue
		}
		p := indexPath("routes", i)
		if _, ok := FunctionOf(r.Upstream); ok {
			col.Addf(p+".split", "a route to a function cannot be split (a split forwards to upstream pools)")
			continue
		}
		for j, a := range r.Split.Arms {
			if _, ok := FunctionOf(a.Upstream); ok {
				col.Addf(indexPath(p+".split.arms", j)+".upstream", "a split arm forwards to an upstream pool, not a function")
			}
		}
		if m := r.Split.Mirror; m != nil {
			if _, ok := FunctionOf(m.Upstream); ok {
				col.Addf(p+".split.mirror.upstream", "a mirror copies to an upstream pool, not a function")
			}
		}
	}
}
