package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/probe"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// AgentConfig are an agent's settings.
type AgentConfig struct {
	// Controller is the controller's address (host:port).
	Controller string
	// Token is the controller's secret, if it has one.
	Token string
	// Vantage names the agent's point of view; results carry it.
	Vantage string
	// Concurrency bounds the agent's probes in flight. Default 256.
	Concurrency int
	// MaxShards is how many shards the agent holds at once. Default 2.
	MaxShards int
	// Prober runs the probes; nil: a zero Prober.
	Prober *probe.Prober
	// Log receives the agent's events; nil: none.
	Log *slog.Logger
}

// Agent leases shards from a controller, probes them and streams the
// results back.
type Agent struct {
	cfg    AgentConfig
	log    *slog.Logger
	prober *probe.Prober
	rpc    client
	out    *outbox

	idMu    sync.Mutex
	agentID string
	timeout time.Duration
	mods    atomic.Pointer[probe.Modules]
	drain   atomic.Bool

	reconnects atomic.Int64
	probes     atomic.Int64
}

// NewAgent makes an agent; Run connects it.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.Controller == "" {
		return nil, errors.New("controller: required")
	}
	if cfg.Vantage == "" {
		return nil, errors.New("vantage: required")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 256
	}
	if cfg.MaxShards <= 0 {
		cfg.MaxShards = 2
	}
	a := &Agent{cfg: cfg, log: cfg.Log, prober: cfg.Prober, out: newOutbox()}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.prober == nil {
		a.prober = &probe.Prober{}
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if cfg.Token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(token(cfg.Token)))
	}
	cc, err := grpc.NewClient("passthrough:///"+cfg.Controller, opts...)
	if err != nil {
		return nil, err
	}
	a.rpc = client{cc}
	return a, nil
}

// token sends the controller's secret with each call. It does not require
// transport security: the control plane runs over plain HTTP/2 unless the
// controller is put behind TLS (docs/probe.md, Security).
type token string

func (t token) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(t)}, nil
}
func (token) RequireTransportSecurity() bool { return false }

func (a *Agent) id() string {
	a.idMu.Lock()
	defer a.idMu.Unlock()
	return a.agentID
}

func (a *Agent) setConfig(cfg Config) error {
	mods := probe.DefaultModules()
	if cfg.Modules != "" {
		m, err := probe.LoadModules([]byte(cfg.Modules), "controller modules")
		if err != nil {
			return err
		}
		mods = m
	}
	a.mods.Store(mods)
	return nil
}

// Run registers with the controller and works until ctx is done, or until
// the controller has told it to drain and its results are acknowledged.
// Stopping by ctx is abrupt, like a crash: what was not acknowledged is the
// controller's to probe again, once the leases time out.
func (a *Agent) Run(ctx context.Context) error {
	defer a.rpc.cc.Close()
	var reg RegisterReply
	for {
		err := a.rpc.call(ctx, "Register", &RegisterRequest{Vantage: a.cfg.Vantage}, &reg)
		if err == nil {
			break
		}
		a.log.Warn("register failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
	if err := a.setConfig(reg.Config); err != nil {
		return fmt.Errorf("modules from the controller: %w", err)
	}
	a.idMu.Lock()
	a.agentID, a.timeout = reg.AgentID, time.Duration(reg.LeaseTimeoutMS)*time.Millisecond
	a.idMu.Unlock()
	a.log.Info("registered", "agent", reg.AgentID, "vantage", a.cfg.Vantage)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); a.stream(ctx) }()
	go func() { defer wg.Done(); a.heartbeat(ctx) }()
	go func() { defer wg.Done(); a.watch(ctx) }()
	err := a.work(ctx)
	cancel()
	wg.Wait()
	return err
}

// heartbeat keeps the leases, four times per lease timeout.
func (a *Agent) heartbeat(ctx context.Context) {
	t := time.NewTicker(max(a.timeout/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var rep HeartbeatReply
		if err := a.rpc.call(ctx, "Heartbeat", &HeartbeatRequest{AgentID: a.id()}, &rep); err != nil {
			a.log.Warn("heartbeat failed", "error", err)
		} else if !rep.Known {
			a.log.Error("the controller does not know this agent (restarted?)")
		}
	}
}

// watch takes the controller's pushes: new modules, drain.
func (a *Agent) watch(ctx context.Context) {
	for ctx.Err() == nil {
		s, err := a.rpc.watch(ctx, &WatchRequest{AgentID: a.id()})
		for err == nil {
			var p Push
			if err = s.RecvMsg(&p); err != nil {
				break
			}
			if p.Config != nil {
				if cerr := a.setConfig(*p.Config); cerr != nil {
					a.log.Error("modules not applied", "error", cerr)
				}
			}
			if p.Drain {
				a.drain.Store(true)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// work leases shards and probes them until ctx is done or, after a drain,
// everything is acknowledged.
func (a *Agent) work(ctx context.Context) error {
	sem := make(chan struct{}, a.cfg.Concurrency)
	finished := make(chan struct{}, a.cfg.MaxShards)
	active := 0
	for {
		if a.drain.Load() && active == 0 {
			if a.out.empty() {
				return a.rpc.call(ctx, "Drain", &DrainRequest{AgentID: a.id()}, &DrainReply{})
			}
		} else if !a.drain.Load() && active < a.cfg.MaxShards {
			var rep LeaseReply
			if err := a.rpc.call(ctx, "Lease", &LeaseRequest{AgentID: a.id(), Max: a.cfg.MaxShards - active}, &rep); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				a.log.Warn("lease failed", "error", err)
				rep.RetryMS = 1000
			}
			if rep.Drain {
				a.drain.Store(true)
			}
			for _, l := range rep.Leases {
				active++
				go func() { a.probeLease(ctx, l, sem); finished <- struct{}{} }()
			}
			if len(rep.Leases) > 0 {
				continue
			}
			select {
			case <-ctx.Done():
				return nil
			case <-finished:
				active--
			case <-time.After(time.Duration(max(rep.RetryMS, 10)) * time.Millisecond):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-finished:
			active--
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// probeLease probes a lease's targets, Concurrency at a time over all
// leases, and queues their results.
func (a *Agent) probeLease(ctx context.Context, l Lease, sem chan struct{}) {
	var wg sync.WaitGroup
	mods := a.mods.Load()
	for _, it := range l.Items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		done := func(r *probe.Result) {
			if ctx.Err() == nil {
				a.out.add(Record{Cycle: l.Cycle, Index: it.Index, Result: r})
				a.probes.Add(1)
			}
			<-sem
			wg.Done()
		}
		m := mods.Modules[it.Module]
		if m == nil {
			// The controller checks the modules of its targets; a
			// module missing here means the two disagree for a moment
			// (a reload in flight).
			done(&probe.Result{Target: it.Target, Module: it.Module, Start: time.Now(), Reason: probe.ReasonOther,
				Error: fmt.Sprintf("unknown module %q", it.Module)})
			continue
		}
		a.prober.Start(ctx, it.Target, it.Module, m, done)
	}
	wg.Wait()
}

// Stats are an agent's counts.
type AgentStats struct {
	Probes, Reconnects int64
}

// Stats returns the agent's counts so far.
func (a *Agent) Stats() AgentStats {
	return AgentStats{Probes: a.probes.Load(), Reconnects: a.reconnects.Load()}
}
