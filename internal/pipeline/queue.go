package pipeline

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/admission"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/grpccall"
	"github.com/penstock-dev/penstock/internal/metrics"
)

// RouteQueue orders the requests waiting for the route's concurrency
// limit by priority instead of arrival (internal/admission.Queue): strict
// priority between levels, weighted fair queuing between tenants inside a
// level, earliest deadline first inside a tenant. A request whose deadline
// cannot be met is refused at once, and one whose deadline comes while it
// waits is refused then, never sent late. Refusals are 503 with
// Retry-After and the reason as the error code (queue_full, queue_timeout,
// deadline_unreachable, deadline_expired). Needs concurrency.max_in_flight
// (the capacity the queue feeds); not with adaptive or key. With
// concurrency.scope upstream, the routes to one upstream with the same
// limit and levels share one queue, the pool's.
type RouteQueue struct {
	// Levels lists the priority levels, highest first (each: name,
	// max_queue default 100, max_wait default 1s). At least one; names
	// unique. Default none (required).
	Levels []QueueLevelSettings `yaml:"levels"`
	// LevelHeader names a request header whose value is a level's name
	// (x-priority: interactive). A value naming no level is ignored.
	// Default none.
	LevelHeader string `yaml:"level_header"`
	// DefaultLevel names the level of a request that neither level_header
	// nor tenant_levels places. Default the last (lowest) level.
	DefaultLevel string `yaml:"default_level"`
	// TenantHeader names the request header that says which tenant a
	// request is charged to (x-tenant). Requests without it share the
	// tenant "". Default none: one tenant.
	TenantHeader string `yaml:"tenant_header"`
	// TenantLevels maps tenants to their level, for requests without a
	// level_header value. Default none.
	TenantLevels map[string]string `yaml:"tenant_levels"`
	// TenantWeights gives the tenants' weights inside a level (positive
	// numbers): backlogged tenants get the slots in proportion to them.
	// Tenants named here or in tenant_levels get metrics of their own;
	// the others are counted as "other". Default 1 each.
	TenantWeights map[string]float64 `yaml:"tenant_weights"`
	// MaxTenants bounds the tenants with requests waiting at once (count);
	// a request of another tenant gets 503 queue_full. Default 10000.
	MaxTenants int `yaml:"max_tenants"`
	// DeadlineHeader names the request header with an absolute deadline,
	// Unix time in milliseconds or RFC 3339. A grpc-timeout header (gRPC's
	// relative timeout, "250m") is read too; without either, the route's
	// timeouts.request (if set) is the deadline. The deadline is when the
	// response is needed. Default
	// x-request-deadline.
	DeadlineHeader string `yaml:"deadline_header"`
}

// QueueLevelSettings is one priority level.
type QueueLevelSettings struct {
	// Name names the level in headers, tenant_levels and metrics.
	// Required.
	Name string `yaml:"name"`
	// MaxQueue bounds the level's waiting requests (count); beyond it a
	// request gets 503 queue_full. Default 100.
	MaxQueue int `yaml:"max_queue"`
	// MaxWait bounds a request's wait in the level (duration); it then
	// gets 503 queue_timeout. Default 1s.
	MaxWait config.Duration `yaml:"max_wait"`
	// Reserve holds this many of concurrency.max_in_flight for this level
	// and the levels above it: a request of a lower level is sent only
	// while more than the reserves above it are free. Strict priority
	// orders the waiting requests; a reserve also keeps slots idle for
	// the next interactive request, which then never waits for batch
	// requests already sent. Default 0.
	Reserve int `yaml:"reserve"`
}

// Defaults of RouteQueue.
const (
	DefaultQueueLevelMax  = 100
	DefaultQueueLevelWait = config.Duration(time.Second)
	DefaultQueueTenants   = 10000
	DefaultDeadlineHeader = "x-request-deadline"
)

func (q *RouteQueue) setDefaults() {
	for i := range q.Levels {
		l := &q.Levels[i]
		if l.MaxQueue == 0 {
			l.MaxQueue = DefaultQueueLevelMax
		}
		if l.MaxWait == 0 {
			l.MaxWait = DefaultQueueLevelWait
		}
	}
	if q.DefaultLevel == "" && len(q.Levels) > 0 {
		q.DefaultLevel = q.Levels[len(q.Levels)-1].Name
	}
	if q.MaxTenants == 0 {
		q.MaxTenants = DefaultQueueTenants
	}
	if q.DeadlineHeader == "" {
		q.DeadlineHeader = DefaultDeadlineHeader
	}
}

func (q *RouteQueue) check(r *Route, c RouteConcurrency) {
	if c.MaxInFlight == 0 || c.Adaptive.Enabled || c.Key != "" {
		r.Errorf("queue", "needs concurrency.max_in_flight (the capacity it feeds), without adaptive or key")
	}
	if len(q.Levels) == 0 {
		r.Errorf("queue.levels", "needs at least one level")
	}
	names := map[string]bool{}
	reserved := 0
	for i, l := range q.Levels {
		p := fmt.Sprintf("queue.levels[%d]", i)
		switch {
		case l.Name == "":
			r.Errorf(p+".name", "is required")
		case names[l.Name]:
			r.Errorf(p+".name", "level %q is listed twice", l.Name)
		}
		names[l.Name] = true
		if l.MaxQueue < 1 {
			r.Errorf(p+".max_queue", "must be at least 1, got %d", l.MaxQueue)
		}
		if l.MaxWait <= 0 {
			r.Errorf(p+".max_wait", "must be positive, got %s", l.MaxWait)
		}
		if l.Reserve < 0 {
			r.Errorf(p+".reserve", "must not be negative, got %d", l.Reserve)
		}
		if i == len(q.Levels)-1 && l.Reserve > 0 {
			r.Errorf(p+".reserve", "the lowest level has no level below it to hold slots from")
		}
		if i < len(q.Levels)-1 {
			reserved += max(l.Reserve, 0)
		}
	}
	if c.MaxInFlight > 0 && reserved >= c.MaxInFlight {
		r.Errorf("queue.levels", "the reserves (%d in all) must leave the lowest level at least one of max_in_flight's %d slots", reserved, c.MaxInFlight)
	}
	if q.DefaultLevel != "" && !names[q.DefaultLevel] {
		r.Errorf("queue.default_level", "unknown level %q", q.DefaultLevel)
	}
	for _, t := range slices.Sorted(maps.Keys(q.TenantLevels)) {
		if !names[q.TenantLevels[t]] {
			r.Errorf("queue.tenant_levels."+t, "unknown level %q", q.TenantLevels[t])
		}
	}
	for _, t := range slices.Sorted(maps.Keys(q.TenantWeights)) {
		if w := q.TenantWeights[t]; !(w > 0 && w <= 1e6) {
			r.Errorf("queue.tenant_weights."+t, "must be between 0 (excluded) and 1000000, got %v", w)
		}
	}
	if q.MaxTenants < 1 {
		r.Errorf("queue.max_tenants", "must be at least 1, got %d", q.MaxTenants)
	}
	for _, h := range []struct{ field, v string }{{"level_header", q.LevelHeader}, {"tenant_header", q.TenantHeader}, {"deadline_header", q.DeadlineHeader}} {
		if strings.ContainsAny(h.v, " \t:") {
			r.Errorf("queue."+h.field, "invalid header name %q", h.v)
		}
	}
}

// queued is the concurrency stage's handler on a route with a queue.
type queued struct {
	q            *admission.Queue
	levelIndex   map[string]int
	levelHeader  string
	defaultLevel int
	tenantHeader string
	tenantLevels map[string]int
	weights      map[string]float64
	deadlineHdr  string
	routeTimeout time.Duration
	levels       []*metrics.QueueLevel // nil entries: not recorded
	tenants      map[string]*metrics.QueueTenant
	other        *metrics.QueueTenant
	log          *slog.Logger
	route        string
	warn         *logLimiter
	next         exchange.Handler
}

// queueCodes are the failure codes of the queue's refusals, by
// admission.Result.
var queueCodes = map[admission.Result]failure.Code{
	admission.Rejected:    failure.QueueFull,
	admission.TimedOut:    failure.QueueTimeout,
	admission.Unreachable: failure.DeadlineUnreachable,
	admission.Expired:     failure.DeadlineExpired,
}

func newQueued(s *ConcurrencySettings, r *Route, next exchange.Handler) (exchange.Handler, error) {
	c, qc := s.Concurrency, s.Queue
	// With scope upstream, the routes to one upstream with the same
	// limit and levels share one queue: the pool's.
	owner := "route:" + r.Config.Name
	if c.Scope == "upstream" {
		owner = "upstream:" + r.Config.Upstream
	}
	v, err := r.State.Keep(fmt.Sprintf("queue|%s|%d|%+v", owner, c.MaxInFlight, qc.Levels), func() (any, error) {
		cfg := admission.QueueConfig{Limit: c.MaxInFlight, MaxTenants: qc.MaxTenants}
		for _, l := range qc.Levels {
			cfg.Levels = append(cfg.Levels, admission.QueueLevel{MaxQueue: l.MaxQueue, MaxWait: l.MaxWait.D(), Reserve: l.Reserve})
		}
		return &queueState{q: admission.NewQueue(cfg)}, nil
	})
	if err != nil {
		return nil, err
	}
	st := v.(*queueState)
	h := &queued{
		q:            st.q,
		levelIndex:   map[string]int{},
		levelHeader:  qc.LevelHeader,
		tenantHeader: qc.TenantHeader,
		tenantLevels: map[string]int{},
		weights:      qc.TenantWeights,
		deadlineHdr:  qc.DeadlineHeader,
		routeTimeout: r.Config.Timeouts.Request.D(),
		levels:       make([]*metrics.QueueLevel, len(qc.Levels)),
		tenants:      map[string]*metrics.QueueTenant{},
		log:          r.Logger,
		route:        r.Config.Name,
		warn:         &st.warn,
		next:         next,
	}
	for i, l := range qc.Levels {
		h.levelIndex[l.Name] = i
	}
	h.defaultLevel = h.levelIndex[qc.DefaultLevel]
	for t, l := range qc.TenantLevels {
		h.tenantLevels[t] = h.levelIndex[l]
	}
	if r.Metrics != nil {
		for i, l := range qc.Levels {
			h.levels[i] = r.Metrics.QueueLevel(r.Config.Name, l.Name)
		}
		for t := range qc.TenantWeights {
			h.tenants[t] = r.Metrics.QueueTenant(r.Config.Name, t)
		}
		for t := range qc.TenantLevels {
			h.tenants[t] = r.Metrics.QueueTenant(r.Config.Name, t)
		}
		h.other = r.Metrics.QueueTenant(r.Config.Name, "other")
	}
	return h, nil
}

// queueState is what a route's queue keeps across reloads.
type queueState struct {
	q    *admission.Queue
	warn logLimiter
}

func (h *queued) ServeExchange(x *exchange.Exchange) {
	req := admission.QueueRequest{Level: h.defaultLevel, Weight: 1}
	if h.tenantHeader != "" {
		req.Tenant, _ = x.Req.Header.Get(h.tenantHeader)
		if w, ok := h.weights[req.Tenant]; ok {
			req.Weight = w
		}
		if l, ok := h.tenantLevels[req.Tenant]; ok {
			req.Level = l
		}
	}
	if h.levelHeader != "" {
		if v, ok := x.Req.Header.Get(h.levelHeader); ok {
			if l, ok := h.levelIndex[v]; ok {
				req.Level = l
			}
		}
	}
	req.Deadline = h.deadline(x)
	start := time.Now()
	res := h.q.Acquire(x.Ctx, req)
	waited := time.Since(start)
	lm, tm := h.levels[req.Level], h.tenantMetrics(req.Tenant)
	if lm != nil {
		lm.Results[res].Inc()
		lm.Length.Set(float64(h.q.LevelQueued(req.Level)))
		tm.Results[res].Inc()
	}
	if res != admission.Admitted {
		h.refuse(x, res, req)
		return
	}
	if lm != nil {
		lm.Wait.Observe(waited.Seconds())
		tm.Wait.Observe(waited.Seconds())
	}
	sent := time.Now()
	defer func() { h.q.Release(time.Since(sent)) }()
	h.next.ServeExchange(x)
}

func (h *queued) tenantMetrics(t string) *metrics.QueueTenant {
	if m, ok := h.tenants[t]; ok {
		return m
	}
	return h.other
}

// deadline returns x's deadline: its deadline header (Unix milliseconds or
// RFC 3339), else its grpc-timeout, else the route's request timeout from
// its start; zero when none.
func (h *queued) deadline(x *exchange.Exchange) time.Time {
	if v, ok := x.Req.Header.Get(h.deadlineHdr); ok {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
			return time.UnixMilli(ms)
		}
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t
		}
	}
	if v, ok := x.Req.Header.Get("grpc-timeout"); ok {
		if d, ok := grpccall.ParseTimeout(v); ok {
			return x.Start.Add(d)
		}
	}
	if h.routeTimeout > 0 {
		return x.Start.Add(h.routeTimeout)
	}
	return time.Time{}
}

// refuse answers a request the queue did not admit: 503 with Retry-After
// and the reason as the error code; a client that left gets nothing.
func (h *queued) refuse(x *exchange.Exchange, res admission.Result, req admission.QueueRequest) {
	if res == admission.Canceled {
		x.State.Status = 499
		x.State.Error = "the client left while queued"
		return
	}
	code := queueCodes[res]
	x.State.Error = "priority queue: " + res.String()
	secs := int64((h.q.RetryAfter() + time.Second - 1) / time.Second)
	x.W.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	failure.Fail(x, code)
	if ok, suppressed := h.warn.allow(time.Now()); ok {
		h.log.Warn("priority queue: request refused", "route", h.route, "reason", res.String(),
			"level", req.Level, "tenant", req.Tenant, "queued", h.q.Queued(), "suppressed", suppressed)
	}
}
