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
	// Out receives one JSON line (a Record) per result; nil: none.
	Out io.Writer
	// Log receives the controller's events; nil: none.
	Log *slog.Logger
}

// Controller holds the targets and modules, cuts each cycle into shards,
// leases them to agents, and gathers the results: once per target per
// cycle, whichever agent probed it.
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
	out   *bufio.Writer

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

// cycle is one pass over the targets.
type cycle struct {
	n          uint64
	set        *targetSet
	size       uint64 // targets per shard
	shards     []shard
	queue      []int // pending shards, in order
	received   []uint64
	got        uint64
	duplicates uint64
	moved      uint64
	start      time.Time
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

// startCycle cuts the current set into shards. Called locked.
func (c *Controller) startCycle(n uint64) {
	set := c.set
	total := set.targets.Len()
	shards := uint64(c.cfg.Shards)
	size := max((total+shards-1)/shards, 1)
	cy := &cycle{n: n, set: set, size: size, received: make([]uint64, (total+63)/64), start: time.Now()}
	for lo := uint64(0); lo < total; lo += size {
		cy.queue = append(cy.queue, len(cy.shards))
		cy.shards = append(cy.shards, shard{lo: lo, hi: min(lo+size, total)})
	}
	c.cycle = cy
	c.m.cycle.Set(float64(n))
	c.log.Info("cycle started", "cycle", n, "targets", total, "shards", len(cy.shards))
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
	for i := range cy.shards {
		s := &cy.shards[i]
		if s.agent != "" && !s.done && now.After(s.expires) {
			c.log.Warn("lease expired", "cycle", cy.n, "shard", i, "agent", s.agent)
			c.requeue(cy, i)
		}
	}
}

// requeue puts a leased shard back in front of the queue. Called locked.
func (c *Controller) requeue(cy *cycle, i int) {
	cy.shards[i].agent = ""
	cy.queue = append([]int{i}, cy.queue...)
	cy.moved++
	c.m.moved.Inc()
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
	now := time.Now()
	for len(reply.Leases) < max(in.Max, 1) && len(cy.queue) > 0 {
		i := cy.queue[0]
		cy.queue = cy.queue[1:]
		s := &cy.shards[i]
		if s.done {
			continue
		}
		s.agent, s.expires = a.id, now.Add(c.cfg.LeaseTimeout)
		l := Lease{Cycle: cy.n, Shard: i}
		for idx := s.lo; idx < s.hi; idx++ {
			if cy.received[idx/64]&(1<<(idx%64)) != 0 {
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
	if cy := c.cycle; cy != nil {
		exp := time.Now().Add(c.cfg.LeaseTimeout)
		for i := range cy.shards {
			if cy.shards[i].agent == a.id {
				cy.shards[i].expires = exp
			}
		}
	}
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
	if cy := c.cycle; cy != nil {
		for i := range cy.shards {
			if cy.shards[i].agent == a.id && !cy.shards[i].done {
				c.requeue(cy, i)
			}
		}
	}
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
	var keep []Record
	for _, rec := range b.Records {
		if rec.Result == nil || cy == nil || rec.Cycle != cy.n || rec.Index >= cy.set.targets.Len() {
			// A late answer for a cycle already complete: every one of
			// its targets was answered.
			c.m.duplicates.Inc()
			continue
		}
		w, bit := rec.Index/64, uint64(1)<<(rec.Index%64)
		if cy.received[w]&bit != 0 {
			cy.duplicates++
			c.m.duplicates.Inc()
			continue
		}
		cy.received[w] |= bit
		cy.got++
		a.results++
		rec.Vantage = a.vantage
		keep = append(keep, rec)
		s := &cy.shards[rec.Index/cy.size]
		if s.got++; s.got == s.hi-s.lo {
			s.done, s.agent = true, ""
		}
	}
	if cy != nil && cy.got == cy.set.targets.Len() {
		sum := CycleSummary{Cycle: cy.n, Targets: cy.got, Results: cy.got, Duplicates: cy.duplicates, Moved: cy.moved, Duration: time.Since(cy.start).Seconds()}
		c.done = append(c.done, sum)
		c.cycle = nil
		close(c.cycleDone)
		c.cycleDone = make(chan struct{})
		c.m.cycles.Inc()
		if c.cfg.Cycles > 0 && len(c.done) >= c.cfg.Cycles {
			c.finished = true
		}
		c.log.Info("cycle done", "cycle", sum.Cycle, "targets", sum.Targets, "duplicates", sum.Duplicates, "moved", sum.Moved, "seconds", sum.Duration)
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
	return c.cycle.n, c.cycle.got
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
		if cy := c.cycle; cy != nil {
			for i := range cy.shards {
				if cy.shards[i].agent == a.id {
					info.Leases++
				}
			}
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Vantage+out[i].ID < out[j].Vantage+out[j].ID })
	return out
}
