package dashboard

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/ratelimit"
	"github.com/penstock-dev/penstock/internal/reload"
	"github.com/penstock-dev/penstock/internal/rollout"
	"github.com/penstock-dev/penstock/internal/snapshot"
	"github.com/penstock-dev/penstock/internal/split"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// Windows of the figures, in samples (one a second).
const (
	// rateWindow is what a rate ("req/s") is averaged over: short, so the
	// page follows a change within seconds.
	rateWindow = 10
	// statWindow is what error ratios and P50/P99 are taken over.
	statWindow = 60
	// longWindow is the second P99, over the whole ring.
	longWindow = Slots
	// sparkPoints × sparkEvery samples: the sparklines' five minutes.
	sparkPoints = 60
	sparkEvery  = 5
	// hottestShown is how many keys of each limit the page lists.
	hottestShown = 5
	// eventsShown is how many events of each rollout the page lists.
	eventsShown = 5
)

// hottestEvery is how often a limit's hottest keys are read again: a
// reading visits every key the limit holds (up to its max_keys), taking
// each of its shards' locks in turn.
const hottestEvery = 5 * time.Second

// State is one snapshot of the dashboard: what GET /dashboard/state
// returns and each event of GET /dashboard/events carries.
type State struct {
	// Time is when it was taken.
	Time time.Time `json:"time"`
	// Generation counts the configurations loaded (1 for the first).
	Generation uint64 `json:"generation"`
	// Sampler says how much history the traffic figures rest on.
	Sampler SamplerInfo `json:"sampler"`
	Routes  []Route     `json:"routes"`
	Pools   []Pool      `json:"pools"`
	// Rollouts, Limits and Reloads are empty lists when there are none.
	Rollouts []Rollout        `json:"rollouts"`
	Limits   []Limit          `json:"limits"`
	Reloads  []reload.Outcome `json:"reloads"`
	// Fleet is what Options.Fleet returned; absent without it.
	Fleet any `json:"fleet,omitempty"`
}

// SamplerInfo describes the samples behind the traffic figures.
type SamplerInfo struct {
	// Since is when sampling started (it runs while the page is open).
	Since time.Time `json:"since"`
	// Samples is how many samples the rings hold (at most Slots).
	Samples int `json:"samples"`
	// Windows in seconds: rates, error ratios and quantiles, sparklines.
	RateWindow   int `json:"rate_window_s"`
	StatWindow   int `json:"stat_window_s"`
	SparkSeconds int `json:"spark_seconds"`
	SparkEvery   int `json:"spark_every_s"`
	// Untracked counts the routes, endpoints and limits beyond the caps
	// (MaxRoutes, MaxEndpoints, MaxLimits), shown without traffic.
	UntrackedRoutes    int `json:"untracked_routes,omitempty"`
	UntrackedEndpoints int `json:"untracked_endpoints,omitempty"`
	UntrackedLimits    int `json:"untracked_limits,omitempty"`
}

// Route is one route's settings and traffic. Ratios are 0..1; durations
// are seconds; a quantile is absent without requests in its window, and
// its Over flag says the value is only a lower bound (the rank fell above
// the histogram's last bucket).
type Route struct {
	Name   string `json:"name"`
	Match  string `json:"match"`
	Target string `json:"target"`
	// Tracked is false for a route beyond MaxRoutes (no figures).
	Tracked  bool     `json:"tracked"`
	Active   float64  `json:"active"`
	Rate     float64  `json:"rate"`
	Requests uint64   `json:"requests"`
	Err5xx   float64  `json:"err_5xx"`
	Err4xx   float64  `json:"err_4xx"`
	P50      *float64 `json:"p50,omitempty"`
	P99      *float64 `json:"p99,omitempty"`
	P99Over  bool     `json:"p99_over,omitempty"`
	P99Long  *float64 `json:"p99_5m,omitempty"`
	// Spark and SparkErr are requests and 5xx per second over the last
	// five minutes, oldest first.
	Spark    []float64 `json:"spark,omitempty"`
	SparkErr []float64 `json:"spark_5xx,omitempty"`
}

// Pool is an upstream pool and its endpoints.
type Pool struct {
	Name      string     `json:"name"`
	Balancing string     `json:"balancing"`
	Breaker   string     `json:"breaker,omitempty"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Endpoint is one endpoint's state: Status sums it up as "up", "ejected",
// "breaker open", "breaker half open", "check failing" or "down" (passive
// health took it out).
type Endpoint struct {
	Address      string    `json:"address"`
	Weight       int       `json:"weight"`
	Status       string    `json:"status"`
	Healthy      bool      `json:"healthy"`
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejected_until,omitzero"`
	EjectReason  string    `json:"eject_reason,omitempty"`
	Ejections    uint64    `json:"ejections,omitempty"`
	Breaker      string    `json:"breaker,omitempty"`
	Check        string    `json:"check,omitempty"`
	Inflight     int64     `json:"inflight"`
	// Rate is attempts per second, FailRatio the share that got no usable
	// response (connect error, timeout, truncated, error).
	Rate      float64   `json:"rate"`
	FailRatio float64   `json:"fail_ratio"`
	Spark     []float64 `json:"spark,omitempty"`
}

// Rollout is a split route's progressive rollout.
type Rollout struct {
	Route       string          `json:"route"`
	Phase       rollout.Phase   `json:"phase"`
	Step        int             `json:"step"` // 0-based, as in /rollouts
	Steps       []int           `json:"steps"`
	Weight      int             `json:"weight"`
	StepStarted time.Time       `json:"step_started"`
	Outcome     rollout.Outcome `json:"outcome,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Arms        []Arm           `json:"arms"`
	Events      []rollout.Event `json:"events"`
	// Judge is the node judging the rollout for the fleet, when it is
	// shared through etcd; FleetDown is set while this node cannot reach
	// etcd (it holds the last step it saw).
	Judge     string `json:"judge,omitempty"`
	FleetDown bool   `json:"fleet_down,omitempty"`
}

// Arm is one arm's figures over the rollout's current window.
type Arm struct {
	Role      string   `json:"role"` // baseline or canary
	Name      string   `json:"name"`
	Requests  int64    `json:"requests"`
	ErrorRate float64  `json:"error_rate"`
	P50       *float64 `json:"p50,omitempty"`
	P99       *float64 `json:"p99,omitempty"`
	TTFTP99   *float64 `json:"ttft_p99,omitempty"`
}

// Limit is a rate limit, its decisions and its hottest keys.
type Limit struct {
	Name     string              `json:"name"`
	Rule     string              `json:"rule"`
	Key      string              `json:"key"`
	Mode     string              `json:"mode"`
	Redis    string              `json:"redis,omitempty"`
	Keys     int                 `json:"keys"`
	MaxKeys  int                 `json:"max_keys"`
	Admitted float64             `json:"admitted_rate"`
	Limited  float64             `json:"limited_rate"`
	Spark    []float64           `json:"spark_limited,omitempty"`
	Hottest  []ratelimit.KeyStat `json:"hottest"`
}

// trackedOf picks what the sampler keeps: the served configuration's
// routes, endpoints and limits, in its order, up to the caps, plus the
// requests that matched no route.
func trackedOf(s *snapshot.Snapshot) tracked {
	tr := tracked{routes: map[string]bool{"none": true}, endpoints: map[string]bool{}, limits: map[string]bool{}}
	for i, r := range s.Config.Routes {
		if i >= MaxRoutes {
			break
		}
		tr.routes[r.Name] = true
	}
	for _, name := range sortedPools(s) {
		for _, e := range s.Pools[name].Endpoints {
			if len(tr.endpoints) < MaxEndpoints {
				tr.endpoints[name+"\x00"+e.Address] = true
			}
		}
	}
	for _, l := range s.Limiters() {
		if len(tr.limits) < MaxLimits {
			tr.limits[l.Config.Name] = true
		}
	}
	return tr
}

func sortedPools(s *snapshot.Snapshot) []string {
	names := make([]string, 0, len(s.Pools))
	for n := range s.Pools {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// build assembles a State from the snapshot being served and the samples.
func build(now time.Time, snap *snapshot.Snapshot, sm *sampler, since time.Time) State {
	st := State{Time: now, Rollouts: []Rollout{}, Limits: []Limit{}, Reloads: []reload.Outcome{},
		Sampler: SamplerInfo{Since: since, Samples: int(min(sm.k, Slots)), RateWindow: rateWindow, StatWindow: statWindow,
			SparkSeconds: sparkPoints * sparkEvery, SparkEvery: sparkEvery,
			UntrackedRoutes: sm.untrackedRoutes, UntrackedEndpoints: sm.untrackedEndpoints, UntrackedLimits: sm.untrackedLimits}}
	for _, rc := range snap.Config.Routes {
		st.Routes = append(st.Routes, routeView(&rc, sm))
	}
	if r := sm.routes["none"]; r != nil {
		if v := routeView(&config.Route{Name: "none"}, sm); v.Requests > 0 {
			v.Match, v.Target = "matched no route", "404 / 405"
			st.Routes = append(st.Routes, v)
		}
	}
	nowNano := now.UnixNano()
	for _, name := range sortedPools(snap) {
		p := snap.Pools[name]
		pv := Pool{Name: name, Balancing: p.Config.Balancing, Endpoints: []Endpoint{}}
		if b := p.Protection(nowNano); b != nil {
			pv.Breaker = breakerText(b.State)
		}
		for _, e := range p.Endpoints {
			pv.Endpoints = append(pv.Endpoints, endpointView(name, e.State(), sm))
		}
		st.Pools = append(st.Pools, pv)
	}
	for _, c := range snap.Rollouts() {
		st.Rollouts = append(st.Rollouts, rolloutView(c))
	}
	if sm.hottest == nil || now.Sub(sm.hottestAt) >= hottestEvery {
		sm.hottest, sm.hottestAt = map[string][]ratelimit.KeyStat{}, now
	}
	for _, l := range snap.Limiters() {
		c := l.Config
		hot, ok := sm.hottest[c.Name]
		if !ok {
			hot = l.Hottest(hottestShown)
			sm.hottest[c.Name] = hot
		}
		lv := Limit{Name: c.Name, Key: c.Key.From, Mode: c.Mode, Keys: l.Keys(), MaxKeys: c.MaxKeys, Hottest: hot}
		if c.Key.Name != "" {
			lv.Key += ":" + c.Key.Name
		}
		switch {
		case c.Window != 0:
			lv.Rule = c.Algorithm + " " + formatNumber(float64(c.Count)) + " per " + c.Window.String()
		default:
			lv.Rule = c.Algorithm + " " + formatNumber(c.Rate) + "/s burst " + formatNumber(float64(c.Burst))
		}
		if c.Redis != nil {
			lv.Redis = c.Redis.Address
		}
		if lv.Hottest == nil {
			lv.Hottest = []ratelimit.KeyStat{}
		}
		if r := sm.limits[c.Name]; r != nil {
			if sums, d, ok := sm.window(r, rateWindow); ok {
				lv.Admitted, lv.Limited = round(float64(sums[0])/d.Seconds()), round(float64(sums[1])/d.Seconds())
			}
			lv.Spark = rounded(sm.series(r, 1, sparkPoints, sparkEvery))
		}
		st.Limits = append(st.Limits, lv)
	}
	sort.Slice(st.Limits, func(i, j int) bool { return st.Limits[i].Name < st.Limits[j].Name })
	return st
}

func routeView(rc *config.Route, sm *sampler) Route {
	v := Route{Name: rc.Name, Match: matchText(rc.Match), Target: targetText(rc)}
	v.Tracked = sm.tr.routes[rc.Name]
	r := sm.routes[rc.Name]
	if r == nil {
		return v
	}
	v.Active = r.active
	if sums, d, ok := sm.window(r.ring, rateWindow); ok {
		v.Rate = round(float64(sums[cTotal]) / d.Seconds())
	}
	if sums, _, ok := sm.window(r.ring, statWindow); ok {
		v.Requests = sums[cTotal]
		if n := sums[cTotal]; n > 0 {
			v.Err5xx = round(float64(sums[c5xx]) / float64(n))
			v.Err4xx = round(float64(sums[c4xx]) / float64(n))
		}
		buckets := sums[routeCounters:]
		if q, _, ok := quantile(0.5, r.bounds, buckets); ok {
			v.P50 = ptr(round(q))
		}
		if q, over, ok := quantile(0.99, r.bounds, buckets); ok {
			v.P99, v.P99Over = ptr(round(q)), over
		}
	}
	if sums, _, ok := sm.window(r.ring, longWindow); ok {
		if q, _, ok := quantile(0.99, r.bounds, sums[routeCounters:]); ok {
			v.P99Long = ptr(round(q))
		}
	}
	v.Spark = rounded(sm.series(r.ring, cTotal, sparkPoints, sparkEvery))
	v.SparkErr = rounded(sm.series(r.ring, c5xx, sparkPoints, sparkEvery))
	return v
}

func matchText(m config.Match) string {
	var b strings.Builder
	if len(m.Methods) > 0 {
		b.WriteString(strings.Join(m.Methods, ","))
		b.WriteByte(' ')
	}
	if len(m.Hosts) > 0 {
		b.WriteString(strings.Join(m.Hosts, ","))
	}
	if m.Path != "" {
		b.WriteString(m.Path)
	} else {
		b.WriteString(m.PathPrefix)
		b.WriteString("…")
	}
	return b.String()
}

func targetText(rc *config.Route) string {
	if rc.Split == nil {
		return rc.Upstream
	}
	arms := make([]string, len(rc.Split.Arms))
	for i, a := range rc.Split.Arms {
		arms[i] = a.Upstream
	}
	return "split: " + strings.Join(arms, " | ")
}

func endpointView(pool string, s upstream.State, sm *sampler) Endpoint {
	v := Endpoint{Address: s.Address, Weight: s.Weight, Healthy: s.Healthy, Inflight: s.Inflight, Status: "up"}
	if !s.Healthy {
		v.Status = "down"
	}
	if p := s.Protection; p != nil {
		v.Ejections = p.Ejections
		if !p.EjectedUntil.IsZero() {
			v.Ejected, v.EjectedUntil, v.EjectReason = true, p.EjectedUntil, p.EjectReason
		}
		if p.Breaker != nil {
			v.Breaker = breakerText(p.Breaker.State)
		}
		if p.Health != nil {
			v.Check = "passing"
			if !p.Health.Up {
				v.Check = "failing"
			}
		}
		switch {
		case v.Ejected:
			v.Status = "ejected"
		case v.Breaker == "open":
			v.Status = "breaker open"
		case v.Check == "failing":
			v.Status = "check failing"
		case v.Breaker == "half open" && v.Status == "up":
			v.Status = "breaker half open"
		}
	}
	if r := sm.endpoints[pool+"\x00"+s.Address]; r != nil {
		if sums, d, ok := sm.window(r, rateWindow); ok {
			if n := sums[0] + sums[1]; n > 0 {
				v.Rate = round(float64(n) / d.Seconds())
				v.FailRatio = round(float64(sums[1]) / float64(n))
			}
		}
		ok := sm.series(r, 0, sparkPoints, sparkEvery)
		failed := sm.series(r, 1, sparkPoints, sparkEvery)
		for i := range ok {
			ok[i] += failed[i]
		}
		v.Spark = rounded(ok)
	}
	return v
}

func breakerText(s upstream.BreakerState) string {
	return strings.ReplaceAll(s.String(), "_", " ")
}

func rolloutView(c *split.Control) Rollout {
	o := c.Options()
	ro := c.Rollout()
	st := ro.Snapshot()
	def := ro.Definition()
	v := Rollout{Route: o.Route, Phase: st.Phase, Step: st.Step, Weight: st.Weight, StepStarted: st.StepStarted}
	for _, s := range def.Steps {
		v.Steps = append(v.Steps, s.Weight)
	}
	if st.Last != nil {
		v.Outcome, v.Reason = st.Last.Outcome, st.Last.Reason
	}
	if f := c.SharedStatus(); f != nil {
		v.Judge, v.FleetDown = f.Leader, !f.Connected
		if v.Judge == "" {
			v.Judge = "none"
		}
	}
	m := ro.Monitor()
	cur := m.Current()
	for _, arm := range []struct {
		role, name string
		i          int
	}{{"baseline", o.Baseline, rollout.Baseline}, {"canary", o.Canary, rollout.Canary}} {
		w := m.Window(arm.i, cur-int64(m.Slots())+1, cur)
		a := Arm{Role: arm.role, Name: arm.name, Requests: w.Requests, ErrorRate: round(w.ErrorRate())}
		if p, ok := w.LatencyQuantile(0.5); ok {
			a.P50 = ptr(round(p.Seconds()))
		}
		if p, ok := w.LatencyQuantile(0.99); ok {
			a.P99 = ptr(round(p.Seconds()))
		}
		if p, ok := w.TTFTQuantile(0.99); ok {
			a.TTFTP99 = ptr(round(p.Seconds()))
		}
		v.Arms = append(v.Arms, a)
	}
	// The newest events first.
	for i := len(st.History) - 1; i >= 0 && len(v.Events) < eventsShown; i-- {
		v.Events = append(v.Events, st.History[i])
	}
	if v.Events == nil {
		v.Events = []rollout.Event{}
	}
	return v
}

// round keeps four significant digits, which is all the page shows and
// keeps each event small.
func round(x float64) float64 {
	if x == 0 || math.IsNaN(x) || math.IsInf(x, 0) {
		return 0
	}
	p := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(x))))
	return math.Round(x*p) / p
}

func rounded(xs []float64) []float64 {
	for i, x := range xs {
		xs[i] = round(x)
	}
	return xs
}

func ptr(x float64) *float64 { return &x }

func formatNumber(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
