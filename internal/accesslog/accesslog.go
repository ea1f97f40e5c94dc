// Package accesslog writes penstock's access log: exactly one structured
// line (JSON or logfmt) per request, filtered by ordered sampling rules,
// capped in lines per second, and handed to a writer goroutine through a
// bounded queue, so that a slow or stuck disk drops lines (and counts them)
// instead of slowing requests.
//
// The path of a request through [Logger.Log] is: sampling rules (the
// route's own, or the global ones) → the lines-per-second cap → encoding
// into a pooled buffer → a non-blocking send to the queue. None of it takes
// a lock or allocates once the buffer pool is warm.
//
// Metrics (registered when a Registerer is given):
//
//	penstock_access_log_lines_total{result}           written, dropped_buffer_full, dropped_rate_limit, sampled_out
//	penstock_access_log_sampled_total{rule,decision}  decisions made by a sampling rule: keep, drop
//	penstock_access_log_write_errors_total            lines lost because the output failed to take them
//
// A request no rule matches is kept and appears only as written (or as a
// drop by the cap or the queue).
package accesslog

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// Logger writes access log lines. Its methods are safe for concurrent use,
// and all of them accept a nil *Logger (what New returns when the access
// log is off), doing nothing.
type Logger struct {
	// s is what a reload may change; a reload makes a new Logger
	// (WithRules) rather than changing s, so a request reads the rules of
	// the configuration snapshot it runs on.
	s *settings
	*outlet
}

// outlet is the part of a Logger fixed at New and shared by the Loggers
// WithRules makes from it: the output, the queue and the writer goroutine.
type outlet struct {
	format format
	queue  chan *[]byte
	out    *output

	now  func() time.Time
	rate window
	pool sync.Pool // of *[]byte
	m    *metrics

	ctl       chan control  // to the writer goroutine
	stopped   chan struct{} // closed when the writer goroutine has exited
	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// settings are the reloadable part of the configuration, compiled.
type settings struct {
	on        bool
	path      pathMode
	maxPerSec int               // 0: no cap
	global    []rule            // access_log.sampling
	perRoute  map[string][]rule // route name → routes[].access_log.sampling, when set
}

// New opens cfg.AccessLog's output and compiles its sampling rules, global
// and per route. It returns nil (a valid Logger that logs nothing) when the
// access log is disabled. The counters are registered on reg unless it is
// nil.
//
// Format, output and buffer size are fixed here for the Logger's life; a
// reload makes a Logger with the rest changed (WithRules).
func New(cfg *config.Config, reg prometheus.Registerer) (*Logger, error) {
	if cfg == nil || !cfg.AccessLog.On() {
		return nil, nil
	}
	return newLogger(cfg, nil, time.Now, reg)
}

func newLogger(cfg *config.Config, out *output, now func() time.Time, reg prometheus.Registerer) (*Logger, error) {
	al := &cfg.AccessLog
	var f format
	switch al.Format {
	case "", "json":
		f = formatJSON
	case "logfmt":
		f = formatLogfmt
	default:
		return nil, fmt.Errorf("access_log.format: must be json or logfmt, got %q", al.Format)
	}
	size := al.Buffer
	if size <= 0 {
		size = config.DefaultAccessLogBuffer
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("access_log: metrics: %w", err)
	}
	l := &Logger{outlet: &outlet{
		format:  f,
		queue:   make(chan *[]byte, size),
		now:     now,
		m:       m,
		ctl:     make(chan control),
		stopped: make(chan struct{}),
	}}
	l.pool.New = func() any {
		b := make([]byte, 0, 1024)
		return &b
	}
	s, err := l.compile(cfg)
	if err != nil {
		return nil, err
	}
	l.s = s
	// Opened last, so that a configuration error leaves no file behind.
	if out == nil {
		if out, err = openOutput(al.Output); err != nil {
			return nil, err
		}
	}
	l.out = out
	go l.run()
	return l, nil
}

// compile builds the reloadable settings of cfg.
func (l *outlet) compile(cfg *config.Config) (*settings, error) {
	al := &cfg.AccessLog
	s := &settings{on: al.On(), maxPerSec: al.MaxLinesPerSecond}
	switch al.Path {
	case "", "full":
		s.path = pathFull
	case "no_query":
		s.path = pathNoQuery
	case "redacted":
		s.path = pathRedacted
	default:
		return nil, fmt.Errorf("access_log.path: must be full, no_query or redacted, got %q", al.Path)
	}
	if s.maxPerSec < 0 {
		return nil, fmt.Errorf("access_log.max_lines_per_second: must not be negative, got %d", s.maxPerSec)
	}
	// The window counts in 32 bits; a cap beyond that is no cap in practice.
	s.maxPerSec = min(s.maxPerSec, 1<<32-1)
	var err error
	if s.global, err = compileRules("access_log.sampling", al.Sampling, l.m); err != nil {
		return nil, err
	}
	for i, rt := range cfg.Routes {
		// A route's rules replace the global ones when it has any. An
		// empty list cannot be told from an absent one once decoded, so it
		// means the global rules; "[{keep: true}]" keeps every line.
		if rt.AccessLog == nil || len(rt.AccessLog.Sampling) == 0 {
			continue
		}
		rules, err := compileRules("routes["+strconv.Itoa(i)+"].access_log.sampling", rt.AccessLog.Sampling, l.m)
		if err != nil {
			return nil, err
		}
		if s.perRoute == nil {
			s.perRoute = make(map[string][]rule)
		}
		s.perRoute[rt.Name] = rules
	}
	return s, nil
}

// WithRules returns a Logger with the sampling rules (global and per
// route), path mode, max_lines_per_second and enabled switch of cfg, writing
// to l's output: what a reload compiles into its configuration snapshot.
// l is unchanged, so requests still running on the previous snapshot log
// with the previous rules. Format, output and buffer are l's: a change to
// them needs a new Logger (New). Closing either Logger closes the output
// of both. On a nil Logger (access log off) it returns nil.
func (l *Logger) WithRules(cfg *config.Config) (*Logger, error) {
	if l == nil {
		return nil, nil
	}
	s, err := l.compile(cfg)
	if err != nil {
		return nil, err
	}
	return &Logger{s: s, outlet: l.outlet}, nil
}

// SameOutput reports whether l and o write to the same output: one was
// made from the other by WithRules, or both are nil.
func (l *Logger) SameOutput(o *Logger) bool {
	if l == nil || o == nil {
		return l == o
	}
	return l.outlet == o.outlet
}

// Log writes r's line, unless a sampling rule drops it, the lines-per-second
// cap is reached or the queue is full; each of these outcomes is counted.
// It never blocks and, once warm, does not allocate. r is not retained. A
// Log racing with or after Close may be lost.
func (l *Logger) Log(r *Record) {
	if l == nil || r == nil {
		return
	}
	s := l.s
	if !s.on || l.closed.Load() {
		return
	}
	rules := s.global
	if len(s.perRoute) > 0 && r.Route != "" {
		if rr, ok := s.perRoute[r.Route]; ok {
			rules = rr
		}
	}
	if !decide(rules, r) {
		l.m.sampledOut.Inc()
		return
	}
	if s.maxPerSec > 0 && !l.rate.allow(l.now().Unix(), s.maxPerSec) {
		l.m.rateLimited.Inc()
		return
	}
	// A full queue is checked before encoding too: when the writer is
	// stuck, dropping costs no encoding.
	if len(l.queue) == cap(l.queue) {
		l.m.bufferFull.Inc()
		return
	}
	buf := l.pool.Get().(*[]byte)
	*buf = appendRecord((*buf)[:0], l.format, s.path, r)
	select {
	case l.queue <- buf:
	default:
		l.putBuf(buf)
		l.m.bufferFull.Inc()
	}
}

func (l *outlet) putBuf(b *[]byte) {
	if cap(*b) <= maxPooledLine {
		l.pool.Put(b)
	}
}

// Reopen closes and reopens a file output, for log rotation (the gateway
// calls it on SIGUSR1): lines logged before the call are written to the old
// file, later ones to a file created at the configured path. It does
// nothing for stdout, stderr or a writer given by a test. It is safe
// to call concurrently with Log. If the file cannot be opened, the old one
// stays in use and the error is returned.
func (l *Logger) Reopen() error {
	if l == nil {
		return nil
	}
	c := control{done: make(chan error, 1)}
	select {
	case l.ctl <- c:
	case <-l.stopped:
		return errClosed
	}
	return <-c.done
}

// Close writes every queued line, stops the writer goroutine and closes a
// file output (never stdout or stderr). Later Log calls do nothing. It
// waits for the output: if the output is stuck, so is Close.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		l.closed.Store(true)
		c := control{close: true, done: make(chan error, 1)}
		l.ctl <- c
		l.closeErr = <-c.done
	})
	return l.closeErr
}
