package function

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// Instance states. stateBusy is a ready instance with invocations in
// flight; it exists for the metrics and the admin API only.
type state int

const (
	stateStarting state = iota
	stateReady
	stateBusy
	stateStopping
)

func (s state) String() string {
	switch s {
	case stateStarting:
		return "starting"
	case stateReady:
		return "idle"
	case stateBusy:
		return "busy"
	}
	return "stopping"
}

// stopGrace is how long a stopped instance has between SIGTERM and
// SIGKILL: Lambda gives extensions 500 ms after SIGTERM; a little more
// lets a runtime flush its logs.
const stopGrace = 2 * time.Second

// instance is one process of a function.
type instance struct {
	f       *Function
	id      int
	created time.Time

	// Guarded by f.mu.
	state    state
	inflight int
	lastUsed time.Time
	served   int64

	// Set once by start, before ready or dead.
	pid     int
	limits  string
	api     *runtimeAPI // lambda mode
	http    *http.Client
	address string // http mode: what PENSTOCK_LISTEN says
	dir     string // private directory (http mode's socket)

	initDuration atomic.Int64 // nanoseconds, once ready
	// fresh is true until the first invocation takes it: that invocation
	// is the cold one.
	fresh atomic.Bool
	// current is the request id of the invocation in flight, when there is
	// one (for the output's log lines).
	current atomic.Pointer[string]

	out *outputLog

	// dead is closed once the process has exited; reason says why.
	dead     chan struct{}
	reason   string
	killOnce sync.Once
	// killReason is why penstock killed the process, if it did.
	killReason atomic.Pointer[string]
	proc       *os.Process
	procReady  chan struct{} // closed once proc is set (or start failed)
}

func newInstance(f *Function, id int) *instance {
	in := &instance{f: f, id: id, created: time.Now(), state: stateStarting,
		dead: make(chan struct{}), procReady: make(chan struct{})}
	in.fresh.Store(true)
	return in
}

func (in *instance) gaugeState() state {
	if in.state == stateReady && in.inflight > 0 {
		return stateBusy
	}
	return in.state
}

// start launches the process and waits until it is ready, failed or
// timed out. It runs on its own goroutine.
func (in *instance) start() {
	f := in.f
	cfg := &f.cfg
	in.out = newOutputLog(f.log.With("instance", in.id), &in.current)
	env := baseEnv()
	var err error
	switch cfg.Mode {
	case config.FunctionModeHTTP:
		env, err = in.prepareHTTP(env)
	default:
		env, err = in.prepareLambda(env)
	}
	if err != nil {
		in.fail(fmt.Sprintf("prepare: %v", err))
		return
	}
	for k, v := range cfg.Env {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(f.command[0], f.command[1:]...)
	cmd.Env = env
	cmd.Dir = cfg.WorkingDir
	cmd.SysProcAttr = sysProcAttr()
	stdout, err := in.out.pipe("stdout")
	if err != nil {
		in.fail(fmt.Sprintf("stdout pipe: %v", err))
		return
	}
	stderr, err := in.out.pipe("stderr")
	if err != nil {
		stdout.Close()
		in.fail(fmt.Sprintf("stderr pipe: %v", err))
		return
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	place, err := f.limits.prepare(cmd, in.id)
	if err != nil {
		f.log.Warn("function limits not applied", "instance", in.id, "error", err)
	}
	start := time.Now()
	err = cmd.Start()
	// The child has its copies; closing ours lets the readers see EOF
	// when the process (and its children) exit.
	stdout.Close()
	stderr.Close()
	if err != nil {
		in.out.closeReaders()
		place.undo()
		in.fail(fmt.Sprintf("exec %s: %v", f.command[0], err))
		return
	}
	in.pid = cmd.Process.Pid
	in.proc = cmd.Process
	in.limits = place.apply(in.pid)
	close(in.procReady)
	f.m.coldStart()
	go in.wait(cmd, place)

	timer := time.NewTimer(cfg.InitTimeout.D())
	defer timer.Stop()
	var ready <-chan struct{}
	if in.api != nil {
		ready = in.api.ready
	} else {
		ready = in.healthCheck(timer.C)
	}
	select {
	case <-ready:
		d := time.Since(start)
		in.initDuration.Store(int64(d))
		f.m.initDone(d)
		f.log.Info("function instance started", "instance", in.id, "pid", in.pid,
			"init_ms", float64(d.Microseconds())/1000, "limits", in.limits)
		f.ready(in)
	case <-timer.C:
		in.kill(fmt.Sprintf("did not become ready within init_timeout (%s)", cfg.InitTimeout))
	case <-in.dead:
	}
}

// fail ends a start that never ran a process.
func (in *instance) fail(reason string) {
	in.f.log.Error("function instance failed to start", "instance", in.id, "reason", reason)
	in.reason = reason
	close(in.procReady)
	in.cleanup()
	in.f.exited(in, reason)
	close(in.dead)
}

// wait reaps the process, logs why it ended and tells the scheduler.
func (in *instance) wait(cmd *exec.Cmd, place placement) {
	err := cmd.Wait()
	// Children the function left behind in its process group go too.
	_ = syscall.Kill(-in.pid, syscall.SIGKILL)
	in.out.wait(time.Second)
	reason := exitReason(err)
	if k := in.killReason.Load(); k != nil {
		reason = *k + " (" + reason + ")"
	} else if r := in.api.initFailure(); r != "" {
		reason = "init error: " + r + " (" + reason + ")"
	}
	in.reason = reason
	place.undo()
	in.cleanup()
	attrs := []any{"instance", in.id, "pid", in.pid, "reason", reason}
	if in.killReason.Load() == nil || in.api.initFailure() != "" {
		attrs = append(attrs, "stderr", in.out.tail())
		in.f.log.Warn("function instance exited", attrs...)
	} else {
		in.f.log.Info("function instance stopped", attrs...)
	}
	// Out of the schedule before anyone waiting on dead sees it go.
	in.f.exited(in, reason)
	close(in.dead)
}

func exitReason(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
		return "exit status " + strconv.Itoa(ee.ExitCode())
	}
	if err != nil {
		return err.Error()
	}
	return "exit status 0"
}

func (in *instance) cleanup() {
	if in.api != nil {
		in.api.close()
	}
	if in.http != nil {
		in.http.CloseIdleConnections()
	}
	if in.dir != "" {
		os.RemoveAll(in.dir)
	}
}

// kill ends the process at once (SIGKILL to its process group), recording
// why for the log.
func (in *instance) kill(reason string) {
	in.killOnce.Do(func() {
		in.killReason.Store(&reason)
		<-in.procReady
		select {
		case <-in.dead:
			return // gone: its pid may belong to another process now
		default:
		}
		if in.proc != nil {
			_ = syscall.Kill(-in.pid, syscall.SIGKILL)
		}
	})
}

// stop ends the process gracefully: SIGTERM, then SIGKILL after
// stopGrace; it returns once the process is gone.
func (in *instance) stop(reason string) {
	<-in.procReady
	if in.proc == nil {
		<-in.dead
		return
	}
	select {
	case <-in.dead:
		return
	default:
	}
	in.killReason.CompareAndSwap(nil, &reason)
	_ = syscall.Kill(-in.pid, syscall.SIGTERM)
	select {
	case <-in.dead:
	case <-time.After(stopGrace):
		in.kill(reason + ", no exit after SIGTERM")
		<-in.dead
	}
}

// baseEnv is what an instance inherits from penstock.
func baseEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "LANG", "TZ"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}
