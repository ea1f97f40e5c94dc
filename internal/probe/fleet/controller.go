package fleet

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/probe"
	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// ControllerConfig are a controller's settings.
type ControllerConfig struct {
	// TargetsFile is the target list, in probe run's format; watched.
	TargetsFile string
	// ModulesFile is the modules file (blackbox.yml); watched. Empty:
	// the built-in modules.
	ModulesFile string
	// DefaultModule is the module of a target line without one. Default
	// tcp_connect.
	DefaultModule string
	// Token, when not empty, is the secret every agent must present
	// (Authorization: Bearer TOKEN, on gRPC calls and on the stream).
	Token string
	// Shards is how many shards a cycle's targets are cut into. Default
	// 64.
	Shards int
	// LeaseTimeout is how long a lease lasts without a heartbeat from its
	// agent: a shard of an agent that disappeared moves to another
	// within it. Default 10s.
	LeaseTimeout time.Duration
	// Interval is how often a cycle over the targets starts; a cycle
	// that takes longer is followed at once. Default 1m.
	Interval time.Duration
	// Cycles, when positive, stops after that many cycles.
	Cycles int
	// EveryVantage probes every target from every vantage point in each
	// cycle: each vantage gets its own pass over the targets, shared by
	// its agents. Default false: each target is probed once per cycle,
	// by whichever agent leased it.
	EveryVantage bool
	// Out receives one JSON line (a Record) per result; nil: none.
	Out io.Writer
	// Log receives the controller's events; nil: none.
	Log *slog.Logger
}

// Controller holds the targets and modules, cuts each cycle into shards,
// leases them to agents, and gathers the results: once per target per
// cycle, whichever agent probed it, or once per target per vantage point
// with EveryVantage.
type Controller struct {
	cfg ControllerConfig
	log *slog.Logger

	mu     sync.Mutex
	set    *targetSet
	agents map[string]*agent
	cycle  *cycle
	done   []CycleSummary
	// cycleDone is closed and replaced when a cycle completes.
	cycleDone chan struct{}
	finished  bool

	outMu sync.Mutex
	// writing counts the batches whose kept records are being written
	// out (apply, after it let mu go): Run waits for them once the last
	// cycle is done, so that its output is whole when it returns.
	writing sync.WaitGroup
	out     *bufio.Writer

	grpc *grpc.Server
	reg  *prometheus.Registry
	m    *metrics
}

// targetSet is an immutable target list with its modules.
type targetSet struct {
	targets *probe.Targets
	config  Config
}

// agent is the controller's view of one agent.
type agent struct {
	id, vantage string
	registered  time.Time
	lastSeen    time.Time
	lastAck     uint64 // the last batch applied
	results     uint64
	drain       bool
	gone        bool
	// stream is the open WebSocket, if any; streamGen tells a newer one.
	stream    io.Closer
	streamGen uint64
	// pushes wakes the agent's Watch stream.
	pushes chan struct{}
}

// cycle is one round over the targets: one pass, or one per vantage point
// with EveryVantage.
type cycle struct {
	n     uint64
	set   *targetSet
	size  uint64 // targets per shard
	start time.Time
	// passes by vantage point; the one pass is under "" without
	// EveryVantage.
	passes map[string]*pass
}

// pass is one probe of every target, shared by the agents of one vantage
// point (or by all agents).
type pass struct {
	vantage  string
	shards   []shard
	queue    []int // pending shards, in order
	received []uint64
	got      uint64
	// abandoned: every agent of the vantage point left before the pass
	// was done; the cycle ends without the rest of it.
	abandoned         bool
	duplicates, moved uint64
}

type shard struct {
	lo, hi  uint64
	got     uint64
	agent   string // leased to, "" when pending or done
	expires time.Time
	done    bool
}

// CycleSummary describes a finished cycle.
type CycleSummary struct {
	Cycle   uint64 `json:"cycle"`
	Targets uint64 `json:"targets"`
	// Results counts the results kept: one per target.
	Results uint64 `json:"results"`
	// Duplicates counts results that came for a target already
	// answered (a shard moved from a slow agent), and were dropped.
	Duplicates uint64 `json:"duplicates"`
	// Moved counts leases that timed out or were given back, and went
	// to another agent.
	Moved    uint64  `json:"moved"`
	Duration float64 `json:"duration_seconds"`
	// Vantages are the vantage points that probed every target in the
	// cycle, with EveryVantage; Abandoned, those whose agents all left
	// before their pass was done.
	Vantages  []string `json:"vantages,omitempty"`
	Abandoned []string `json:"abandoned,omitempty"`
}

// NewController loads the targets and modules; a bad line is an error
// naming the file and the line.
func NewController(cfg ControllerConfig) (*Controller, error) {
	if cfg.DefaultModule == "" {
		cfg.DefaultModule = "tcp_connect"
	}
	if cfg.Shards <= 0 {
		cfg.Shards = 64
	}
	if cfg.LeaseTimeout <= 0 {
		cfg.LeaseTimeout = 10 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	c := &Controller{cfg: cfg, log: cfg.Log, agents: map[string]*agent{}, cycleDone: make(chan struct{})}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	set, err := c.load(0)
	if err != nil {
		return nil, err
	}
	c.set = set
	if cfg.Out != nil {
		c.out = bufio.NewWriterSize(cfg.Out, 64<<10)
	}
	c.reg = prometheus.NewRegistry()
	c.m = newMetrics(c, c.reg)
	c.grpc = grpc.NewServer(grpc.UnaryInterceptor(c.authUnary), grpc.StreamInterceptor(c.authStream))
	c.grpc.RegisterService(&serviceDesc, c)
	return c, nil
}

// load reads the targets and modules files into a set of the given
// config version.
func (c *Controller) load(version uint64) (*targetSet, error) {
	mods, text := probe.DefaultModules(), ""
	if c.cfg.ModulesFile != "" {
		b, err := os.ReadFile(c.cfg.ModulesFile)
		if err != nil {
			return nil, err
		}
		if mods, err = probe.LoadModules(b, c.cfg.ModulesFile); err != nil {
			return nil, err
		}
		text = string(b)
	}
	t, err := probe.LoadTargetsFile(c.cfg.TargetsFile, c.cfg.DefaultModule, mods)
	if err != nil {
		return nil, err
	}
	if t.Len() == 0 {
		return nil, fmt.Errorf("%s: no targets", c.cfg.TargetsFile)
	}
	return &targetSet{targets: t, config: Config{Version: version + 1, Modules: text}}, nil
}

// WatchFiles reloads the targets and modules files when they change, until
// the returned stop is called: the next cycle takes the new targets, and the
// agents are pushed the new modules. A file that fails to load is logged,
// and the set in use stays.
func (c *Controller) WatchFiles() (stop func(), err error) {
	paths := []string{c.cfg.TargetsFile}
	if c.cfg.ModulesFile != "" {
		paths = append(paths, c.cfg.ModulesFile)
	}
	w, err := reload.WatchFiles(paths, 100*time.Millisecond, 0, c.log, func() {
		c.mu.Lock()
		version := c.set.config.Version
		c.mu.Unlock()
		set, err := c.load(version)
		if err != nil {
			c.log.Error("targets not reloaded", "error", err)
			return
		}
		c.mu.Lock()
		c.set = set
		for _, a := range c.agents {
			a.push()
		}
		c.mu.Unlock()
		c.log.Info("targets reloaded", "targets", set.targets.Len(), "config_version", set.config.Version)
	})
	if err != nil {
		return nil, err
	}
	return w.Close, nil
}

// Handler serves the controller's HTTP side: the agents' gRPC calls (over
// HTTP/2 without TLS, or over TLS when the server has it), their result
// streams (/stream), and the API (/agents, /results, /metrics).
func (c *Controller) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stream", c.serveStream)
	mux.HandleFunc("GET /agents", c.serveAgents)
	mux.HandleFunc("GET /results", c.serveResults)
	mux.Handle("GET /metrics", c.metricsHandler())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			c.grpc.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// Server returns an http.Server for Handler that also speaks HTTP/2
// without TLS, as the agents' gRPC clients do.
func (c *Controller) Server() *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: c.Handler(), Protocols: &p, ReadHeaderTimeout: 10 * time.Second}
}

// Run runs cycles until ctx is done or Cycles have completed, and expires
// leases meanwhile.
func (c *Controller) Run(ctx context.Context) error {
	tick := time.NewTicker(max(c.cfg.LeaseTimeout/10, 10*time.Millisecond))
	defer tick.Stop()
	flush := time.NewTicker(500 * time.Millisecond)
	defer flush.Stop()
	defer c.flush()
	var next time.Time
	for n := uint64(1); ; {
		c.mu.Lock()
		if c.cycle == nil && !c.finished && !time.Now().Before(next) {
			c.startCycle(n)
			next = time.Now().Add(c.cfg.Interval)
			n++
		}
		c.expire(time.Now())
		finished := c.finished
		c.mu.Unlock()
		if finished {
			c.writing.Wait()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-flush.C:
			c.flush()
		}
	}
}

// startCycle cuts the current set into shards: one pass, or one for each
// vantage point with a live agent. Called locked.
func (c *Controller) startCycle(n uint64) {
	set := c.set
	total := set.targets.Len()
	shards := uint64(c.cfg.Shards)
	size := max((total+shards-1)/shards, 1)
	cy := &cycle{n: n, set: set, size: size, start: time.Now(), passes: map[string]*pass{}}
	c.cycle = cy
	if !c.cfg.EveryVantage {
		cy.pass("")
	} else {
		for _, a := range c.agents {
			if a.live() {
				cy.pass(a.vantage)
			}
		}
	}
	c.m.cycle.Set(float64(n))
	c.log.Info("cycle started", "cycle", n, "targets", total, "passes", len(cy.passes))
}

// pass returns the cycle's pass for a vantage point, cutting a new one
// when the vantage point has none yet (its first agent arrived during the
// cycle). Called locked.
func (cy *cycle) pass(vantage string) *pass {
	if p := cy.passes[vantage]; p != nil {
		return p
	}
	total := cy.set.targets.Len()
	p := &pass{vantage: vantage, received: make([]uint64, (total+63)/64)}
	for lo := uint64(0); lo < total; lo += cy.size {
		p.queue = append(p.queue, len(p.shards))
		p.shards = append(p.shards, shard{lo: lo, hi: min(lo+cy.size, total)})
	}
	cy.passes[vantage] = p
	return p
}

// passKey is the vantage point whose pass an agent works on.
func (c *Controller) passKey(a *agent) string {
	if c.cfg.EveryVantage {
		return a.vantage
	}
	return ""
}

// live reports whether an agent may still take and finish leases.
func (a *agent) live() bool { return !a.gone && !a.drain }

// got counts the results kept in the cycle, over its passes.
func (cy *cycle) got() (got, duplicates, moved uint64) {
	for _, p := range cy.passes {
		got, duplicates, moved = got+p.got, duplicates+p.duplicates, moved+p.moved
	}
	return got, duplicates, moved
}

// finishIfDone ends the cycle when each of its passes is done or
// abandoned. Called locked.
func (c *Controller) finishIfDone() {
	cy := c.cycle
	if cy == nil || len(cy.passes) == 0 {
		return
	}
	total := cy.set.targets.Len()
	var vantages, abandoned []string
	for v, p := range cy.passes {
		switch {
		case p.abandoned:
			abandoned = append(abandoned, v)
		case p.got == total:
			vantages = append(vantages, v)
		default:
			return
		}
	}
	got, dups, moved := cy.got()
	sum := CycleSummary{Cycle: cy.n, Targets: total, Results: got, Duplicates: dups, Moved: moved, Duration: time.Since(cy.start).Seconds()}
	if c.cfg.EveryVantage {
		sort.Strings(vantages)
		sort.Strings(abandoned)
		sum.Vantages, sum.Abandoned = vantages, abandoned
	}
	c.done = append(c.done, sum)
	c.cycle = nil
	close(c.cycleDone)
	c.cycleDone = make(chan struct{})
	c.m.cycles.Inc()
	if c.cfg.Cycles > 0 && len(c.done) >= c.cfg.Cycles {
		c.finished = true
	}
	c.log.Info("cycle done", "cycle", sum.Cycle, "targets", sum.Targets, "results", sum.Results, "duplicates", sum.Duplicates, "moved", sum.Moved, "abandoned", len(abandoned), "seconds", sum.Duration)
}

// expire gives back the shards whose lease timed out, and marks agents
// unheard of for a lease timeout gone. Called locked.
func (c *Controller) expire(now time.Time) {
	for _, a := range c.agents {
		if !a.gone && now.Sub(a.lastSeen) > c.cfg.LeaseTimeout {
			a.gone = true
			c.log.Warn("agent gone", "agent", a.id, "vantage", a.vantage)
		}
	}
	cy := c.cycle
	if cy == nil {
		return
	}
	for _, p := range cy.passes {
		for i := range p.shards {
			s := &p.shards[i]
			if s.agent != "" && !s.done && now.After(s.expires) {
				c.log.Warn("lease expired", "cycle", cy.n, "vantage", p.vantage, "shard", i, "agent", s.agent)
				c.requeue(p, i)
			}
		}
	}
	if !c.cfg.EveryVantage {
		return
	}
	// A vantage point whose agents have all left cannot finish its pass:
	// the cycle goes on without it.
	for v, p := range cy.passes {
		if p.abandoned || p.got == cy.set.targets.Len() {
			continue
		}
		live := false
		for _, a := range c.agents {
			live = live || (a.vantage == v && a.live())
		}
		if !live {
			p.abandoned = true
			c.log.Warn("vantage point left before its pass was done", "cycle", cy.n, "vantage", v, "results", p.got, "targets", cy.set.targets.Len())
		}
	}
	c.finishIfDone()
}

// requeue puts a leased shard back in front of its pass's queue. Called
// locked.
func (c *Controller) requeue(p *pass, i int) {
	p.shards[i].agent = ""
	p.queue = append([]int{i}, p.queue...)
	p.moved++
	c.m.moved.Inc()
}

// eachLease calls f for each shard of the cycle leased to an agent. Called
// locked.
func (c *Controller) eachLease(id string, f func(p *pass, i int)) {
	if c.cycle == nil {
		return
	}
	for _, p := range c.cycle.passes {
		for i := range p.shards {
			if p.shards[i].agent == id {
				f(p, i)
			}
		}
	}
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Register implements the control service.
func (c *Controller) Register(_ context.Context, in *RegisterRequest) (*RegisterReply, error) {
	vantage := in.Vantage
	if vantage == "" {
		return nil, status.Error(codes.InvalidArgument, "vantage: required")
	}
	now := time.Now()
	a := &agent{id: newID(), vantage: vantage, registered: now, lastSeen: now, pushes: make(chan struct{}, 1)}
	c.mu.Lock()
	c.agents[a.id] = a
	cfg := c.set.config
	c.mu.Unlock()
	c.log.Info("agent registered", "agent", a.id, "vantage", vantage)
	return &RegisterReply{AgentID: a.id, LeaseTimeoutMS: c.cfg.LeaseTimeout.Milliseconds(), Config: cfg}, nil
}

// known finds an agent and marks it seen. Called locked.
func (c *Controller) known(id string) (*agent, error) {
	a := c.agents[id]
	if a == nil {
		return nil, status.Errorf(codes.NotFound, "agent %q: not registered", id)
	}
	a.lastSeen = time.Now()
	a.gone = false
	return a, nil
}

// Lease implements the control service.
func (c *Controller) Lease(_ context.Context, in *LeaseRequest) (*LeaseReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.known(in.AgentID)
	if err != nil {
		return nil, err
	}
	retry := max(c.cfg.LeaseTimeout/10, 50*time.Millisecond).Milliseconds()
	if a.drain {
		return &LeaseReply{Drain: true, RetryMS: retry}, nil
	}
	cy := c.cycle
	reply := &LeaseReply{RetryMS: retry}
	if cy == nil {
		return reply, nil
	}
	// The agent counts the shards it is still probing; the controller
	// cannot, since a shard probed to the end stays leased until its
	// last results arrive.
	p := cy.passes[c.passKey(a)]
	if p == nil {
		p = cy.pass(c.passKey(a))
	}
	if p.abandoned {
		return reply, nil
	}
	now := time.Now()
	for len(reply.Leases) < max(in.Max, 1) && len(p.queue) > 0 {
		i := p.queue[0]
		p.queue = p.queue[1:]
		s := &p.shards[i]
		if s.done {
			continue
		}
		s.agent, s.expires = a.id, now.Add(c.cfg.LeaseTimeout)
		l := Lease{Cycle: cy.n, Shard: i}
		for idx := s.lo; idx < s.hi; idx++ {
			if p.received[idx/64]&(1<<(idx%64)) != 0 {
				continue
			}
			t := cy.set.targets.At(idx)
			l.Items = append(l.Items, Item{Index: idx, Target: t.Target, Module: t.Module})
		}
		reply.Leases = append(reply.Leases, l)
	}
	return reply, nil
}

// Heartbeat implements the control service: it extends the agent's leases.
func (c *Controller) Heartbeat(_ context.Context, in *HeartbeatRequest) (*HeartbeatReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.agents[in.AgentID]
	if a == nil {
		return &HeartbeatReply{Known: false}, nil
	}
	c.known(in.AgentID)
	exp := time.Now().Add(c.cfg.LeaseTimeout)
	c.eachLease(a.id, func(p *pass, i int) { p.shards[i].expires = exp })
	return &HeartbeatReply{Known: true, ConfigVersion: c.set.config.Version}, nil
}

// Drain implements the control service: the agent's unfinished leases go
// back to the queue now.
func (c *Controller) Drain(_ context.Context, in *DrainRequest) (*DrainReply, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, err := c.known(in.AgentID)
	if err != nil {
		return nil, err
	}
	a.drain = true
	c.eachLease(a.id, func(p *pass, i int) {
		if !p.shards[i].done {
			c.requeue(p, i)
		}
	})
	c.log.Info("agent drained", "agent", a.id)
	return &DrainReply{}, nil
}

// DrainAgent tells an agent to finish its leases and take no more (a push
// on its Watch stream). It reports false for an unknown agent.
func (c *Controller) DrainAgent(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	a := c.agents[id]
	if a == nil {
		return false
	}
	a.drain = true
	a.push()
	return true
}

func (a *agent) push() {
	select {
	case a.pushes <- struct{}{}:
	default:
	}
}

// Watch implements the control service: it pushes the configuration when
// its version changes, and the order to drain.
func (c *Controller) Watch(in *WatchRequest, stream grpc.ServerStream) error {
	c.mu.Lock()
	a := c.agents[in.AgentID]
	c.mu.Unlock()
	if a == nil {
		return status.Errorf(codes.NotFound, "agent %q: not registered", in.AgentID)
	}
	var sent uint64
	for {
		c.mu.Lock()
		cfg, drain := c.set.config, a.drain
		c.mu.Unlock()
		if cfg.Version != sent {
			if err := stream.SendMsg(&Push{Config: &cfg}); err != nil {
				return err
			}
			sent = cfg.Version
		}
		if drain {
			return stream.SendMsg(&Push{Drain: true})
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-a.pushes:
		}
	}
}

// apply takes one batch of an agent's results, unless it was applied
// before (and then reports true: it is acknowledged again). It reports
// false for a batch that does not follow the last one applied. Each
// target's first result in a cycle is kept; a later one is counted as a
// duplicate and dropped.
func (c *Controller) apply(a *agent, b *Batch) bool {
	c.mu.Lock()
	if b.Seq <= a.lastAck {
		c.mu.Unlock()
		c.m.resent.Inc()
		return true
	}
	if b.Seq != a.lastAck+1 {
		c.mu.Unlock()
		return false
	}
	a.lastAck = b.Seq
	a.lastSeen = time.Now()
	cy := c.cycle
	var p *pass
	if cy != nil {
		p = cy.passes[c.passKey(a)]
	}
	var keep []Record
	for _, rec := range b.Records {
		if rec.Result == nil || p == nil || p.abandoned || rec.Cycle != cy.n || rec.Index >= cy.set.targets.Len() {
			// A late answer for a cycle already complete: every one of
			// its targets was answered (or its pass was given up).
			c.m.duplicates.Inc()
			continue
		}
		w, bit := rec.Index/64, uint64(1)<<(rec.Index%64)
		if p.received[w]&bit != 0 {
			p.duplicates++
			c.m.duplicates.Inc()
			continue
		}
		p.received[w] |= bit
		p.got++
		a.results++
		rec.Vantage = a.vantage
		keep = append(keep, rec)
		s := &p.shards[rec.Index/cy.size]
		if s.got++; s.got == s.hi-s.lo {
			s.done, s.agent = true, ""
		}
	}
	c.finishIfDone()
	if len(keep) > 0 {
		// Counted before mu goes: a Run that sees the cycles finished
		// sees this batch too. After the last cycle no record is kept,
		// so nothing is added while Run waits.
		c.writing.Add(1)
		defer c.writing.Done()
	}
	c.mu.Unlock()
	for _, rec := range keep {
		c.m.results.WithLabelValues(rec.Result.Module, string(rec.Result.Reason), rec.Vantage).Inc()
		c.m.addTarget(rec.Result.Target, rec.Vantage, rec.Result)
		if c.out != nil {
			line, err := json.Marshal(rec)
			if err == nil {
				c.outMu.Lock()
				c.out.Write(line)
				c.out.WriteByte('\n')
				c.outMu.Unlock()
			}
		}
	}
	return true
}

func (c *Controller) flush() {
	if c.out == nil {
		return
	}
	c.outMu.Lock()
	c.out.Flush()
	c.outMu.Unlock()
}

// Cycles returns the summaries of the cycles completed so far.
func (c *Controller) Cycles() []CycleSummary {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]CycleSummary(nil), c.done...)
}

// Received reports the results kept so far in the current cycle (0
// between cycles) and the cycle's number.
func (c *Controller) Received() (cycle, got uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cycle == nil {
		return 0, 0
	}
	got, _, _ = c.cycle.got()
	return c.cycle.n, got
}

// authorized checks an agent's token: "Bearer TOKEN".
func (c *Controller) authorized(header string) bool {
	if c.cfg.Token == "" {
		return true
	}
	want := "Bearer " + c.cfg.Token
	return subtle.ConstantTimeCompare([]byte(header), []byte(want)) == 1
}

func (c *Controller) authCtx(ctx context.Context) error {
	if c.cfg.Token == "" {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("authorization"); len(v) == 1 && c.authorized(v[0]) {
		return nil
	}
	return status.Error(codes.Unauthenticated, "missing or wrong token")
}

func (c *Controller) authUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := c.authCtx(ctx); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (c *Controller) authStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := c.authCtx(ss.Context()); err != nil {
		return err
	}
	return h(srv, ss)
}

// AgentInfo is one agent in /agents.
type AgentInfo struct {
	ID         string    `json:"id"`
	Vantage    string    `json:"vantage"`
	Registered time.Time `json:"registered"`
	LastSeen   time.Time `json:"last_seen"`
	// Healthy is false once the agent has not been heard of for a lease
	// timeout.
	Healthy   bool   `json:"healthy"`
	Streaming bool   `json:"streaming"`
	Leases    int    `json:"leases"`
	Results   uint64 `json:"results"`
	LastAck   uint64 `json:"last_ack"`
	Draining  bool   `json:"draining"`
}

// Agents lists the agents, by vantage.
func (c *Controller) Agents() []AgentInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []AgentInfo
	for _, a := range c.agents {
		info := AgentInfo{ID: a.id, Vantage: a.vantage, Registered: a.registered, LastSeen: a.lastSeen,
			Healthy: !a.gone, Streaming: a.stream != nil, Results: a.results, LastAck: a.lastAck, Draining: a.drain}
		c.eachLease(a.id, func(*pass, int) { info.Leases++ })
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Vantage+out[i].ID < out[j].Vantage+out[j].ID })
	return out
}
