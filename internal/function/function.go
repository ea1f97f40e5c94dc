// Package function runs functions behind the gateway: executables (any
// language) that penstock starts on demand, keeps warm, scales by
// concurrency between min and max instances, stops when idle, and replaces
// when they crash or overrun their deadline.
//
// An instance speaks one of two protocols. In lambda mode penstock serves
// the AWS Lambda Runtime API to it over loopback (runtimeapi.go), so a
// function built with an official runtime client (aws-lambda-go, Node.js's
// aws-lambda-ric) runs unchanged; requests become API Gateway v2 / function
// URL events and results become HTTP responses (event.go), streamed
// responses included. In http mode the instance is an HTTP server on a unix
// socket or loopback port that penstock health-checks and proxies to
// (httpmode.go).
//
// A Function is a route's terminal handler (an exchange.Handler). Requests
// that find every instance busy wait in a bounded FIFO queue; the
// scheduler (this file) hands a freed or newly started instance to the
// oldest waiter.
package function

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/tracing"
)

// Options are what a Function needs besides its configuration.
type Options struct {
	// Logger receives lifecycle lines and the instances' output. Nil
	// means slog.Default().
	Logger *slog.Logger
	// Metrics records invocations and instances. Nil records nothing.
	Metrics *Metrics
	// Self replaces {penstock} in the command. Empty means the running
	// executable (os.Executable).
	Self string
}

// Function is one configured function: its instances, its queue and its
// handler. Create it with New, start it with Start, and stop it with
// Close.
type Function struct {
	cfg     config.Function
	name    string
	command []string
	log     *slog.Logger
	m       *fnMetrics
	limits  limiter
	// tracer records a span per invocation; the serving snapshot's, set
	// by SetTracer (a function outlives snapshots).
	tracer atomic.Pointer[tracing.Tracer]

	mu        sync.Mutex
	instances []*instance
	waiters   []*waiter
	nextID    int
	closed    bool
	// initFailures counts starts that failed in a row; while it is not
	// zero, instances kept for min_instances start no earlier than
	// minStartAt (exponential backoff), so a function that cannot start
	// is not restarted in a tight loop.
	initFailures int
	minStartAt   time.Time
	started      bool
	// idle is signalled when the last in-flight invocation of a closed
	// function ends.
	idle chan struct{}

	stopReaper chan struct{}
	reaperDone chan struct{}
}

// New prepares function cfg (defaults applied, validated). No instance
// starts before Start.
func New(cfg config.Function, opt Options) (*Function, error) {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	self := opt.Self
	if self == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("function %q: %w", cfg.Name, err)
		}
		self = exe
	}
	cmd := make([]string, len(cfg.Command))
	for i, a := range cfg.Command {
		cmd[i] = strings.ReplaceAll(a, "{penstock}", self)
	}
	f := &Function{
		cfg:        cfg,
		name:       cfg.Name,
		command:    cmd,
		log:        log.With("function", cfg.Name),
		m:          opt.Metrics.forFunction(cfg.Name),
		stopReaper: make(chan struct{}),
		reaperDone: make(chan struct{}),
	}
	f.limits = newLimiter(cfg)
	return f, nil
}

// SetTracer makes t record the function's invocations from now on.
func (f *Function) SetTracer(t *tracing.Tracer) { f.tracer.Store(t) }

// Name returns the function's name.
func (f *Function) Name() string { return f.name }

// Same reports whether f runs cfg as it is, so a reload can keep f (and its
// warm instances).
func (f *Function) Same(cfg *config.Function) bool { return reflect.DeepEqual(&f.cfg, cfg) }

// Start starts the min_instances and the idle reaper.
func (f *Function) Start() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.started || f.closed {
		return
	}
	f.started = true
	f.limits.report(f.log)
	f.scaleLocked()
	go f.reap()
}

// Close stops taking requests, lets the invocations in flight finish
// until ctx is done, then stops every instance (SIGTERM, then SIGKILL
// after a grace). Requests still queued get 503.
func (f *Function) Close(ctx context.Context) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	for _, w := range f.waiters {
		w.ch <- grant{err: errShuttingDown}
	}
	f.waiters = nil
	busy := 0
	for _, in := range f.instances {
		busy += in.inflight
	}
	if busy > 0 {
		f.idle = make(chan struct{})
	}
	idle := f.idle
	started := f.started
	f.mu.Unlock()
	close(f.stopReaper)
	if started {
		<-f.reaperDone
	}
	if idle != nil {
		select {
		case <-idle:
		case <-ctx.Done():
		}
	}
	f.mu.Lock()
	instances := append([]*instance(nil), f.instances...)
	f.mu.Unlock()
	var wg sync.WaitGroup
	for _, in := range instances {
		wg.Go(func() { in.stop("shutdown") })
	}
	wg.Wait()
	f.limits.close()
}

// The backoff of min_instances after failed starts: doubling from
// initBackoff, at most maxInitBackoff.
const (
	initBackoff    = 100 * time.Millisecond
	maxInitBackoff = 30 * time.Second
)

// errors a request can get before it reaches an instance.
var (
	errQueueFull    = errors.New("queue full")
	errQueueTimeout = errors.New("timed out in the queue")
	errShuttingDown = errors.New("function shutting down")
)

// initError is a failed cold start, handed to the requests waiting for it.
type initError struct{ reason string }

func (e *initError) Error() string { return "instance failed to start: " + e.reason }

// grant is what a waiter receives: an instance with a slot taken for it,
// or why there is none.
type grant struct {
	in  *instance
	err error
}

type waiter struct {
	ch chan grant // buffered 1: the scheduler never blocks on it
}

// acquire takes a slot on an instance for one invocation, waiting in the
// queue (at most queue_timeout, and only while ctx lasts) when every
// instance is busy. queued reports whether the request waited.
func (f *Function) acquire(ctx context.Context) (in *instance, queued bool, err error) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil, false, errShuttingDown
	}
	if len(f.waiters) == 0 {
		if in := f.freeLocked(); in != nil {
			f.takeLocked(in)
			f.mu.Unlock()
			return in, false, nil
		}
	}
	if len(f.waiters) >= f.cfg.MaxQueue {
		f.mu.Unlock()
		return nil, false, errQueueFull
	}
	w := &waiter{ch: make(chan grant, 1)}
	f.waiters = append(f.waiters, w)
	f.m.queued(len(f.waiters))
	f.scaleLocked()
	f.mu.Unlock()

	timer := time.NewTimer(f.cfg.QueueTimeout.D())
	defer timer.Stop()
	select {
	case g := <-w.ch:
		return g.in, true, g.err
	case <-timer.C:
		err = errQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	f.mu.Lock()
	removed := f.dropWaiterLocked(w)
	f.mu.Unlock()
	if !removed {
		// Granted meanwhile: give the slot back.
		if g := <-w.ch; g.in != nil {
			f.release(g.in, true)
		}
	}
	return nil, true, err
}

func (f *Function) dropWaiterLocked(w *waiter) bool {
	for i, x := range f.waiters {
		if x == w {
			f.waiters = append(f.waiters[:i], f.waiters[i+1:]...)
			f.m.queued(len(f.waiters))
			return true
		}
	}
	return false
}

// freeLocked returns a ready instance with a free slot: the first in
// start order, so load packs onto the oldest instances and the youngest
// go idle and stop.
func (f *Function) freeLocked() *instance {
	for _, in := range f.instances {
		if in.state == stateReady && in.inflight < f.cfg.MaxConcurrency {
			return in
		}
	}
	return nil
}

func (f *Function) takeLocked(in *instance) {
	if in.inflight == 0 {
		f.m.instanceState(stateReady, stateBusy)
	}
	in.inflight++
	in.lastUsed = time.Now()
}

// release gives back the slot of one invocation on in; healthy false
// retires the instance (after a crash, a timeout or a bad response).
func (f *Function) release(in *instance, healthy bool) {
	f.mu.Lock()
	in.inflight--
	in.lastUsed = time.Now()
	if in.inflight == 0 && in.state == stateReady {
		f.m.instanceState(stateBusy, stateReady)
	}
	if !healthy {
		f.retireLocked(in)
	}
	f.dispatchLocked()
	f.scaleLocked()
	f.checkIdleLocked()
	f.mu.Unlock()
	if !healthy {
		go in.stop("recycled")
	}
}

func (f *Function) checkIdleLocked() {
	if f.idle == nil {
		return
	}
	for _, in := range f.instances {
		if in.inflight > 0 {
			return
		}
	}
	close(f.idle)
	f.idle = nil
}

// retireLocked takes in out of the schedule; its process is stopped by the
// caller, outside the lock.
func (f *Function) retireLocked(in *instance) {
	for i, x := range f.instances {
		if x == in {
			f.instances = append(f.instances[:i], f.instances[i+1:]...)
			f.m.instanceState(in.gaugeState(), -1)
			in.state = stateStopping
			return
		}
	}
}

// dispatchLocked hands free slots to the waiters, oldest first.
func (f *Function) dispatchLocked() {
	for len(f.waiters) > 0 {
		in := f.freeLocked()
		if in == nil {
			return
		}
		w := f.waiters[0]
		f.waiters = f.waiters[1:]
		f.m.queued(len(f.waiters))
		f.takeLocked(in)
		w.ch <- grant{in: in}
	}
}

// scaleLocked starts instances: up to min_instances always, and more while
// the waiters outnumber the slots of the instances already starting, up to
// max_instances (scaling by concurrency, as Knative does).
func (f *Function) scaleLocked() {
	if f.closed {
		return
	}
	for {
		starting := 0
		for _, in := range f.instances {
			if in.state == stateStarting {
				starting++
			}
		}
		n := len(f.instances)
		forMin := n < f.cfg.MinInstances && !time.Now().Before(f.minStartAt)
		need := forMin || len(f.waiters) > starting*f.cfg.MaxConcurrency
		if !need || n >= f.cfg.MaxInstances {
			return
		}
		f.nextID++
		in := newInstance(f, f.nextID)
		f.instances = append(f.instances, in)
		f.m.instanceState(-1, stateStarting)
		go in.start()
	}
}

// ready is called by an instance that finished its start.
func (f *Function) ready(in *instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if in.state != stateStarting {
		return
	}
	in.state = stateReady
	in.lastUsed = time.Now()
	f.initFailures, f.minStartAt = 0, time.Time{}
	f.m.instanceState(stateStarting, stateReady)
	f.dispatchLocked()
}

// exited is called when an instance's process is gone, whatever the
// reason. A start that failed fails the requests waiting for it (as many as
// the instance would have served), so a function that cannot start answers
// 502 at once instead of at the queue timeout.
func (f *Function) exited(in *instance, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	wasStarting := in.state == stateStarting
	f.retireLocked(in)
	if wasStarting {
		f.initFailures++
		backoff := min(initBackoff<<min(f.initFailures-1, 16), maxInitBackoff)
		f.minStartAt = time.Now().Add(backoff)
		if len(f.instances) < f.cfg.MinInstances {
			time.AfterFunc(backoff, func() {
				f.mu.Lock()
				defer f.mu.Unlock()
				f.scaleLocked()
			})
		}
		err := &initError{reason: reason}
		for i := 0; i < f.cfg.MaxConcurrency && len(f.waiters) > 0; i++ {
			w := f.waiters[0]
			f.waiters = f.waiters[1:]
			w.ch <- grant{err: err}
		}
		f.m.queued(len(f.waiters))
	}
	f.dispatchLocked()
	f.scaleLocked()
}

// reap stops instances idle for idle_timeout, down to min_instances.
func (f *Function) reap() {
	defer close(f.reaperDone)
	every := min(max(f.cfg.IdleTimeout.D()/4, 10*time.Millisecond), time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-f.stopReaper:
			return
		case now := <-t.C:
			var idle []*instance
			f.mu.Lock()
			for i := len(f.instances) - 1; i >= 0 && len(f.instances) > f.cfg.MinInstances; i-- {
				in := f.instances[i]
				if in.state == stateReady && in.inflight == 0 && now.Sub(in.lastUsed) >= f.cfg.IdleTimeout.D() {
					f.retireLocked(in)
					idle = append(idle, in)
				}
			}
			f.mu.Unlock()
			for _, in := range idle {
				go in.stop("idle")
			}
		}
	}
}

// newRequestID returns a random id in UUID form, as Lambda's request ids.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
