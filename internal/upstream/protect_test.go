package upstream_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// t0 is the tests' clock origin: a whole second, like a real Unix time.
const t0 = int64(1_700_000_000) * int64(time.Second)

func at(d time.Duration) int64 { return t0 + int64(d) }

// protectedPool builds a pool of n loopback endpoints (never dialed) with
// the given protection blocks, defaults filled in.
func protectedPool(t *testing.T, n int, hc *config.HealthCheck, od *config.OutlierDetection, cb *config.CircuitBreaker) *upstream.Pool {
	t.Helper()
	cfg := &config.Config{Upstreams: []config.Upstream{{Name: "pool", HealthCheck: hc, OutlierDetection: od, CircuitBreaker: cb}}}
	for i := range n {
		cfg.Upstreams[0].Endpoints = append(cfg.Upstreams[0].Endpoints, config.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", 10001+i)})
	}
	cfg.SetDefaults()
	p, err := upstream.NewPool(&cfg.Upstreams[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// breakerStep is one event in a breaker table: at is the time; admit asks
// the breaker (and wants wantAdmit), otherwise result is recorded with
// latency; want is the state after the step ("" skips the check).
type breakerStep struct {
	at        time.Duration
	admit     bool
	wantAdmit bool
	result    upstream.Result
	latency   time.Duration
	n         int // repeat count, default 1
	want      string
}

func TestPoolBreakerTransitions(t *testing.T) {
	cb := &config.CircuitBreaker{Window: config.Duration(10 * time.Second), MinRequests: 4, ErrorRatio: 0.5,
		SlowThreshold: config.Duration(time.Second), SlowRatio: 0.75,
		OpenDuration: config.Duration(5 * time.Second), MaxTrialRequests: 2}
	ok, fail, g5 := upstream.ResultOK, upstream.Result5xx, upstream.ResultGatewayFailure
	tests := []struct {
		name  string
		steps []breakerStep
	}{
		{"stays closed below min_requests", []breakerStep{
			{result: fail, n: 3, want: "closed"},
			{admit: true, wantAdmit: true},
		}},
		{"opens at the error ratio and refuses at once", []breakerStep{
			{result: ok, n: 2},
			{at: time.Second, result: fail, want: "closed"},
			{at: 2 * time.Second, result: g5, want: "open"},
			{at: 3 * time.Second, admit: true, wantAdmit: false, want: "open"},
		}},
		{"failures slide out of the window", []breakerStep{
			{result: fail, n: 2},
			{at: 11 * time.Second, result: ok, n: 2},
			{at: 12 * time.Second, result: fail, want: "closed"},
		}},
		{"half-open after open_duration, closes when every trial passes", []breakerStep{
			{result: fail, n: 4, want: "open"},
			{at: 4 * time.Second, admit: true, wantAdmit: false},
			{at: 5 * time.Second, admit: true, wantAdmit: true, want: "half_open"},
			{at: 5 * time.Second, admit: true, wantAdmit: true},
			{at: 5 * time.Second, admit: true, wantAdmit: false, want: "half_open"},
			{at: 6 * time.Second, result: ok, want: "half_open"},
			{at: 6 * time.Second, result: ok, want: "closed"},
			// A clean window: one more failure does not open it again.
			{at: 7 * time.Second, result: fail, want: "closed"},
		}},
		{"a failed trial opens it again", []breakerStep{
			{result: fail, n: 4, want: "open"},
			{at: 5 * time.Second, admit: true, wantAdmit: true, want: "half_open"},
			{at: 6 * time.Second, result: fail, want: "open"},
			{at: 10 * time.Second, admit: true, wantAdmit: false},
			{at: 11 * time.Second, admit: true, wantAdmit: true, want: "half_open"},
		}},
		{"trials that never report are given out again after open_duration", []breakerStep{
			{result: fail, n: 4, want: "open"},
			{at: 5 * time.Second, admit: true, wantAdmit: true},
			{at: 5 * time.Second, admit: true, wantAdmit: true},
			{at: 6 * time.Second, admit: true, wantAdmit: false},
			{at: 10 * time.Second, admit: true, wantAdmit: true, want: "half_open"},
		}},
		{"opens at the slow ratio", []breakerStep{
			{result: ok, latency: 2 * time.Second, n: 3, want: "closed"},
			{result: ok, latency: 10 * time.Millisecond, want: "closed"},
			{at: time.Second, result: ok, latency: 2 * time.Second, want: "open"},
		}},
		{"a slow trial opens it again", []breakerStep{
			{result: fail, n: 4, want: "open"},
			{at: 5 * time.Second, admit: true, wantAdmit: true},
			{at: 5 * time.Second, result: ok, latency: 3 * time.Second, want: "open"},
		}},
		{"results recorded while open are ignored", []breakerStep{
			{result: fail, n: 4, want: "open"},
			{at: time.Second, result: ok, n: 10, want: "open"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := protectedPool(t, 2, nil, nil, cb)
			for i, s := range tt.steps {
				now := at(s.at)
				for range max(s.n, 1) {
					if s.admit {
						if got := p.Admit(now); got != s.wantAdmit {
							t.Fatalf("step %d: Admit = %v, want %v", i, got, s.wantAdmit)
						}
						continue
					}
					p.RecordRequestAt(now, s.result, s.latency)
				}
				if s.want != "" {
					if got := p.Protection(now).State.String(); got != s.want {
						t.Fatalf("step %d: state %s, want %s", i, got, s.want)
					}
				}
			}
		})
	}
}

// An endpoint's open breaker takes it out of picking while the pool's
// other endpoints serve; the pool breaker, fed by both, stays closed.
func TestEndpointBreakerTakesEndpointOut(t *testing.T) {
	cb := &config.CircuitBreaker{MinRequests: 3, OpenDuration: config.Duration(5 * time.Second), MaxTrialRequests: 1}
	p := protectedPool(t, 2, nil, nil, cb)
	bad, good := p.Endpoints[0], p.Endpoints[1]
	for range 10 {
		p.RecordAt(good, t0, upstream.ResultOK, 0)
	}
	for range 3 {
		p.RecordAt(bad, t0, upstream.Result5xx, 0)
	}
	if s := upstream.EndpointProtection(bad, t0).Breaker.State.String(); s != "open" {
		t.Fatalf("bad endpoint's breaker %s, want open", s)
	}
	if s := p.Protection(t0).State.String(); s != "closed" {
		t.Fatalf("pool breaker %s, want closed", s)
	}
	for range 10 {
		if e := p.Pick(t0); e != good {
			t.Fatalf("picked %v, want only %s", e, good.Address)
		}
	}
	// Half-open: one trial, then only the good endpoint until it reports.
	later := at(5 * time.Second)
	picked := 0
	for range 10 {
		if p.Pick(later) == bad {
			picked++
		}
	}
	if picked != 1 {
		t.Fatalf("half-open endpoint picked %d times, want 1 (max_trial_requests)", picked)
	}
	p.RecordAt(bad, later, upstream.ResultOK, 0)
	if s := upstream.EndpointProtection(bad, later).Breaker.State.String(); s != "closed" {
		t.Fatalf("after a passed trial the breaker is %s, want closed", s)
	}
}

func TestHealthRiseFall(t *testing.T) {
	hc := &config.HealthCheck{Rise: 2, Fall: 3}
	tests := []struct {
		name   string
		checks string // p: passed, f: failed
		wantUp string // after each check: u up, d down
	}{
		{"starts up and stays up", "ppp", "uuu"},
		{"falls after three failures", "fff", "uud"},
		{"a pass resets the fall count", "ffpff", "uuuuu"},
		{"rises after two passes", "fffpp", "uuddu"},
		{"a failure resets the rise count", "fffpfpp", "uuddddu"},
		{"down again after three more failures", "fffppfff", "uudduuud"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := protectedPool(t, 2, hc, nil, nil)
			e := p.Endpoints[0]
			for i, c := range tt.checks {
				now := at(time.Duration(i) * time.Second)
				upstream.ObserveCheck(p, e, c == 'p', now)
				up := upstream.EndpointProtection(e, now).Health.Up
				if want := tt.wantUp[i] == 'u'; up != want || e.Available(now) != want {
					t.Fatalf("after check %d (%c): up %v, available %v, want %v", i, c, up, e.Available(now), want)
				}
			}
		})
	}
}

// An endpoint that rises again ramps from 10 % to its full share over
// slow_start.
func TestSlowStartShare(t *testing.T) {
	p := protectedPool(t, 2, &config.HealthCheck{Rise: 1, Fall: 1, SlowStart: config.Duration(30 * time.Second)}, nil, nil)
	e := p.Endpoints[0]
	if s := upstream.EndpointProtection(e, t0).SlowStartShare; s != 1 {
		t.Fatalf("share before any change %v, want 1", s)
	}
	upstream.ObserveCheck(p, e, false, t0)
	upstream.ObserveCheck(p, e, true, at(time.Second))
	for _, c := range []struct {
		after time.Duration
		want  float64
	}{{0, 0.1}, {time.Second, 0.1}, {15 * time.Second, 0.5}, {24 * time.Second, 0.8}, {30 * time.Second, 1}, {time.Hour, 1}} {
		now := at(time.Second + c.after)
		if got := upstream.EndpointProtection(e, now).SlowStartShare; got < c.want-1e-9 || got > c.want+1e-9 {
			t.Errorf("%s after rising: share %v, want %v", c.after, got, c.want)
		}
	}
	// Halfway, about half the picks that reach it go through.
	now := at(16 * time.Second)
	n := 0
	for range 4000 {
		if e.Available(now) {
			n++
		}
	}
	if n < 1600 || n > 2400 {
		t.Errorf("available in %d of 4000 picks at share 0.5", n)
	}
}

func TestMaxEjected(t *testing.T) {
	tests := []struct {
		name       string
		n, percent int
		want       int
	}{
		{"a single endpoint is never ejected", 1, 100, 0},
		{"two endpoints at 10 %: one", 2, 10, 1},
		{"two endpoints at 100 %: never both", 2, 100, 1},
		{"four endpoints at 10 %: the floor of one", 4, 10, 1},
		{"twenty endpoints at 10 %: two", 20, 10, 2},
		{"ten endpoints at 50 %: five", 10, 50, 5},
		{"ten endpoints at 0 %: still one", 10, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := upstream.MaxEjected(tt.n, tt.percent); got != tt.want {
				t.Errorf("maxEjected(%d, %d) = %d, want %d", tt.n, tt.percent, got, tt.want)
			}
		})
	}
}

// Each ejection lasts base_ejection_time × the times ejected, capped by
// max_ejection_time; each interval in rotation takes one off the count.
func TestEjectionTimeGrows(t *testing.T) {
	od := &config.OutlierDetection{Consecutive5xx: 3, BaseEjectionTime: config.Duration(10 * time.Second),
		MaxEjectionTime: config.Duration(35 * time.Second), MaxEjectionPercent: 50, SuccessRateStdevFactor: -1}
	p := protectedPool(t, 4, nil, od, nil)
	e := p.Endpoints[0]
	ejectAt := func(now int64) time.Duration {
		t.Helper()
		for range 3 {
			p.RecordAt(e, now, upstream.Result5xx, 0)
		}
		s := upstream.EndpointProtection(e, now)
		if s.EjectedUntil.IsZero() {
			t.Fatalf("not ejected after 3 consecutive 5xx")
		}
		if e.Available(now) {
			t.Fatalf("ejected endpoint still available")
		}
		return time.Duration(s.EjectedUntil.UnixNano() - now)
	}
	now := t0
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 30 * time.Second, 35 * time.Second} {
		if got := ejectAt(now); got != want {
			t.Fatalf("ejection %d lasts %s, want %s", i+1, got, want)
		}
		now += int64(want)
		if !e.Available(now) {
			t.Fatalf("ejection %d: endpoint not back when it ended", i+1)
		}
	}
	if n := upstream.EndpointProtection(e, now).TimesEjected; n != 4 {
		t.Fatalf("times ejected %d, want 4", n)
	}
	// Two intervals in rotation take the count from 4 to 2: the next
	// ejection is the third again.
	upstream.OutlierInterval(p, now)
	upstream.OutlierInterval(p, now+int64(10*time.Second))
	now += int64(20 * time.Second)
	if got := ejectAt(now); got != 30*time.Second {
		t.Fatalf("after two clean intervals the ejection lasts %s, want 30s (3 × 10s)", got)
	}
	// A success between failures resets the run.
	e2 := p.Endpoints[1]
	for _, r := range []upstream.Result{upstream.Result5xx, upstream.Result5xx, upstream.ResultOK, upstream.Result5xx, upstream.Result5xx} {
		p.RecordAt(e2, now, r, 0)
	}
	if !e2.Available(now) {
		t.Fatal("ejected though its 5xx were not consecutive")
	}
}

// max_ejection_percent bounds how many endpoints are out at once, with a
// floor of one and never the last endpoint.
func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		name       string
		n, percent int
		wantOut    int
	}{
		{"one endpoint: never ejected", 1, 10, 0},
		{"two endpoints, 10 %: one", 2, 10, 1},
		{"five endpoints, 10 %: one", 5, 10, 1},
		{"five endpoints, 40 %: two", 5, 40, 2},
		{"three endpoints, 100 %: never the last", 3, 100, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			od := &config.OutlierDetection{ConsecutiveGatewayFailure: 2, MaxEjectionPercent: tt.percent}
			p := protectedPool(t, tt.n, nil, od, nil)
			for _, e := range p.Endpoints {
				for range 2 {
					p.RecordAt(e, t0, upstream.ResultGatewayFailure, 0)
				}
			}
			out := 0
			for _, e := range p.Endpoints {
				if !e.Available(t0) {
					out++
					if r := upstream.EndpointProtection(e, t0).EjectReason; r != "consecutive_gateway_failure" {
						t.Errorf("eject reason %q", r)
					}
				}
			}
			if out != tt.wantOut {
				t.Fatalf("%d endpoints ejected, want %d", out, tt.wantOut)
			}
			if p.Pick(t0) == nil {
				t.Fatal("ejection emptied the pool")
			}
		})
	}
}

// Each interval, an endpoint whose success rate (or mean latency) stands
// out from its peers' by more than the factor × stdev is ejected.
func TestStatisticalOutliers(t *testing.T) {
	type load struct {
		requests, passed int
		latency          time.Duration
	}
	tests := []struct {
		name      string
		od        config.OutlierDetection
		loads     []load
		wantOut   []int
		wantWhy   string
		wantNoOut bool
	}{
		{
			name:    "low success rate",
			od:      config.OutlierDetection{RequestVolume: 100, MinimumHosts: 5, MaxEjectionPercent: 50},
			loads:   []load{{100, 100, 0}, {100, 99, 0}, {100, 100, 0}, {100, 98, 0}, {100, 40, 0}},
			wantOut: []int{4}, wantWhy: "success_rate",
		},
		{
			name:      "too few hosts with enough requests",
			od:        config.OutlierDetection{RequestVolume: 100, MinimumHosts: 5, MaxEjectionPercent: 50},
			loads:     []load{{100, 100, 0}, {100, 99, 0}, {100, 100, 0}, {100, 98, 0}, {99, 0, 0}},
			wantNoOut: true,
		},
		{
			name: "high latency",
			od: config.OutlierDetection{RequestVolume: 10, MinimumHosts: 3, LatencyStdevFactor: 1, SuccessRateStdevFactor: -1,
				MaxEjectionPercent: 50},
			loads:   []load{{20, 20, 10 * time.Millisecond}, {20, 20, 12 * time.Millisecond}, {20, 20, 11 * time.Millisecond}, {20, 20, 2 * time.Second}},
			wantOut: []int{3}, wantWhy: "latency",
		},
		{
			name:      "latency off by default",
			od:        config.OutlierDetection{RequestVolume: 10, MinimumHosts: 3, MaxEjectionPercent: 50},
			loads:     []load{{20, 20, 10 * time.Millisecond}, {20, 20, 12 * time.Millisecond}, {20, 20, 11 * time.Millisecond}, {20, 20, 2 * time.Second}},
			wantNoOut: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			od := tt.od
			// Consecutive failures must not eject first.
			od.Consecutive5xx, od.ConsecutiveGatewayFailure = -1, -1
			p := protectedPool(t, len(tt.loads), nil, &od, nil)
			for i, l := range tt.loads {
				for j := range l.requests {
					r := upstream.ResultOK
					if j >= l.passed {
						r = upstream.Result5xx
					}
					p.RecordAt(p.Endpoints[i], t0, r, l.latency)
				}
			}
			upstream.OutlierInterval(p, at(10*time.Second))
			for i, e := range p.Endpoints {
				s := upstream.EndpointProtection(e, at(10*time.Second))
				out := !s.EjectedUntil.IsZero()
				want := !tt.wantNoOut && containsInt(tt.wantOut, i)
				if out != want {
					t.Errorf("endpoint %d ejected %v, want %v", i, out, want)
				}
				if out && s.EjectReason != tt.wantWhy {
					t.Errorf("endpoint %d eject reason %q, want %q", i, s.EjectReason, tt.wantWhy)
				}
			}
		})
	}
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// A pool with protection but never started (penstock validate compiles
// pools without serving them) runs no goroutine, and Close on it returns.
func TestUnstartedPoolCloses(t *testing.T) {
	p := protectedPool(t, 2, &config.HealthCheck{}, &config.OutlierDetection{}, &config.CircuitBreaker{})
	p.Close()
	p.Start(nil) // after Close: does nothing
	p.Close()
}
