package upstream_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// endpoints builds endpoints named by address with the given weights.
func endpoints(spec ...string) []*upstream.Endpoint {
	var eps []*upstream.Endpoint
	for _, s := range spec {
		eps = append(eps, &upstream.Endpoint{Address: s, Weight: 1})
	}
	return eps
}

// takeDown takes e out of rotation for an hour.
func takeDown(e *upstream.Endpoint) { e.ReportFailure(1, time.Hour) }

// picks returns the addresses of n successive picks ("-" for nil).
func picks(t *testing.T, b upstream.Balancer, n int) []string {
	t.Helper()
	now := time.Now().UnixNano()
	out := make([]string, n)
	for i := range out {
		if e := b.Pick(now); e != nil {
			out[i] = e.Address
		} else {
			out[i] = "-"
		}
	}
	return out
}

func newBalancer(t *testing.T, policy string, eps []*upstream.Endpoint) upstream.Balancer {
	t.Helper()
	b, err := upstream.NewBalancer(policy, eps)
	if err != nil {
		t.Fatalf("NewBalancer(%q): %v", policy, err)
	}
	return b
}

func count(addrs []string) map[string]int {
	m := map[string]int{}
	for _, a := range addrs {
		m[a]++
	}
	return m
}

func TestNewBalancerUnknownPolicy(t *testing.T) {
	b, err := upstream.NewBalancer("random_please", endpoints("a"))
	if err == nil || b != nil {
		t.Fatalf("NewBalancer(unknown) = %v, %v; want nil and an error", b, err)
	}
	if !strings.Contains(err.Error(), `"random_please"`) {
		t.Errorf("error %q does not name the policy", err)
	}
}

func TestPolicyTableMatchesTheConfig(t *testing.T) {
	// The config accepts these names; each must build a balancer, and the
	// table must hold nothing the config would refuse.
	want := []string{config.BalancingRoundRobin, config.BalancingWeightedRoundRobin, config.BalancingLeastRequest}
	if got := upstream.PolicyNames(); !slices.Equal(got, want) {
		t.Errorf("PolicyNames() = %q, want %q", got, want)
	}
	for _, name := range want {
		if b, err := upstream.NewBalancer(name, endpoints("a")); err != nil || b == nil {
			t.Errorf("NewBalancer(%q) = %v, %v; want a balancer", name, b, err)
		}
	}
}

func TestEveryPolicyReturnsNilWhenAllAreDown(t *testing.T) {
	for _, policy := range upstream.PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			eps := endpoints("a", "b", "c", "d")
			for _, e := range eps {
				takeDown(e)
			}
			b := newBalancer(t, policy, eps)
			for i, got := range picks(t, b, 20) {
				if got != "-" {
					t.Fatalf("pick %d = %s with every endpoint down, want nil", i, got)
				}
			}
		})
	}
}

func TestEveryPolicyFindsTheOnlyHealthyEndpoint(t *testing.T) {
	for _, policy := range upstream.PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			eps := endpoints("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")
			for _, e := range eps {
				if e.Address != "g" {
					takeDown(e)
				}
			}
			b := newBalancer(t, policy, eps)
			for i, got := range picks(t, b, 50) {
				if got != "g" {
					t.Fatalf("pick %d = %s, want the only healthy endpoint g", i, got)
				}
			}
		})
	}
}

func TestEveryPolicyWithASingleEndpoint(t *testing.T) {
	for _, policy := range upstream.PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			eps := endpoints("only")
			b := newBalancer(t, policy, eps)
			if got := picks(t, b, 3); count(got)["only"] != 3 {
				t.Errorf("picks = %q, want only", got)
			}
			takeDown(eps[0])
			if got := picks(t, b, 3); count(got)["-"] != 3 {
				t.Errorf("picks with the endpoint down = %q, want nil", got)
			}
		})
	}
}

func TestEveryPolicyWithNoEndpoints(t *testing.T) {
	// Validation requires at least one endpoint, but a Balancer's contract is
	// "nil when none is healthy", and an empty pool has none.
	for _, policy := range upstream.PolicyNames() {
		t.Run(policy, func(t *testing.T) {
			b := newBalancer(t, policy, nil)
			if e := b.Pick(time.Now().UnixNano()); e != nil {
				t.Errorf("Pick on an empty pool = %s, want nil", e.Address)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name string
		down []string
		want []string
	}{
		{name: "cycles in config order", want: []string{"a", "b", "c", "a", "b", "c", "a"}},
		{name: "all down", down: []string{"a", "b", "c"}, want: []string{"-", "-", "-"}},
		{name: "only the last is up", down: []string{"a", "b"}, want: []string{"c", "c", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := endpoints("a", "b", "c")
			for _, e := range eps {
				for _, d := range tt.down {
					if e.Address == d {
						takeDown(e)
					}
				}
			}
			b := newBalancer(t, "round_robin", eps)
			if got := picks(t, b, len(tt.want)); strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Errorf("picks = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRoundRobinSkipsUnhealthy(t *testing.T) {
	eps := endpoints("a", "b", "c")
	takeDown(eps[1])
	b := newBalancer(t, "round_robin", eps)
	got := picks(t, b, 60)
	if n := count(got)["b"]; n != 0 {
		t.Errorf("b was picked %d times while down", n)
	}
	if n := count(got)["a"] + count(got)["c"]; n != 60 {
		t.Errorf("a and c got %d of 60 picks, want all of them", n)
	}
}

func TestRoundRobinSharesADownEndpointsTrafficEvenly(t *testing.T) {
	eps := endpoints("a", "b", "c")
	takeDown(eps[1])
	b := newBalancer(t, "round_robin", eps)
	c := count(picks(t, b, 60))
	if c["a"] != 30 || c["c"] != 30 {
		t.Errorf("with b down: a=%d c=%d, want 30 each", c["a"], c["c"])
	}
}

func TestRoundRobinReturnsAfterFailTimeout(t *testing.T) {
	eps := endpoints("a", "b")
	eps[1].ReportFailure(1, time.Minute)
	b := newBalancer(t, "round_robin", eps)
	now := time.Now()
	if c := count(pickAt(b, now.UnixNano(), 4)); c["b"] != 0 {
		t.Errorf("b picked %d times during its fail timeout", c["b"])
	}
	if c := count(pickAt(b, now.Add(2*time.Minute).UnixNano(), 4)); c["b"] != 2 {
		t.Errorf("b picked %d of 4 times after its fail timeout, want 2", c["b"])
	}
}

func pickAt(b upstream.Balancer, now int64, n int) []string {
	var out []string
	for range n {
		if e := b.Pick(now); e != nil {
			out = append(out, e.Address)
		}
	}
	return out
}

func weighted(weights map[string]int, order ...string) []*upstream.Endpoint {
	var eps []*upstream.Endpoint
	for _, name := range order {
		eps = append(eps, &upstream.Endpoint{Address: name, Weight: weights[name]})
	}
	return eps
}

func TestWeightedRoundRobinSchedule(t *testing.T) {
	tests := []struct {
		name    string
		weights map[string]int
		order   []string
		want    string // one full cycle
	}{
		{
			// NGINX's smooth weighted round robin gives the same sequence.
			name:    "5:1:1 is interleaved",
			weights: map[string]int{"a": 5, "b": 1, "c": 1},
			order:   []string{"a", "b", "c"},
			want:    "a a b a c a a",
		},
		{
			name:    "equal weights are plain round robin",
			weights: map[string]int{"a": 1, "b": 1, "c": 1},
			order:   []string{"a", "b", "c"},
			want:    "a b c",
		},
		{
			name:    "3:1",
			weights: map[string]int{"a": 3, "b": 1},
			order:   []string{"a", "b"},
			want:    "a a b a",
		},
		{
			name:    "weight 0 counts as 1",
			weights: map[string]int{"a": 2, "b": 0},
			order:   []string{"a", "b"},
			want:    "a b a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBalancer(t, "weighted_round_robin", weighted(tt.weights, tt.order...))
			n := len(strings.Fields(tt.want))
			if got := strings.Join(picks(t, b, n), " "); got != tt.want {
				t.Errorf("first cycle = %q, want %q", got, tt.want)
			}
			// The next cycle repeats it.
			if got := strings.Join(picks(t, b, n), " "); got != tt.want {
				t.Errorf("second cycle = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWeightedRoundRobinProportionsAndInterleaving(t *testing.T) {
	b := newBalancer(t, "weighted_round_robin", weighted(map[string]int{"a": 5, "b": 1, "c": 1}, "a", "b", "c"))
	got := picks(t, b, 7)
	if c := count(got); c["a"] != 5 || c["b"] != 1 || c["c"] != 1 {
		t.Errorf("7 picks = %v, want a:5 b:1 c:1", c)
	}
	run, longest := 0, 0
	for _, a := range got {
		if a == "a" {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	if longest > 3 {
		t.Errorf("picks %q have %d consecutive a's, want at most 3", got, longest)
	}
}

func TestWeightedRoundRobinSkipsUnhealthy(t *testing.T) {
	eps := weighted(map[string]int{"a": 5, "b": 1, "c": 1}, "a", "b", "c")
	takeDown(eps[2])
	b := newBalancer(t, "weighted_round_robin", eps)
	c := count(picks(t, b, 70))
	if c["c"] != 0 {
		t.Errorf("c picked %d times while down", c["c"])
	}
	if c["a"]+c["b"] != 70 || c["b"] < 10 {
		t.Errorf("with c down: %v; want a and b to take all 70 picks, b at least its own 10", c)
	}
}

func TestWeightedRoundRobinSharesADownEndpointsTrafficByWeight(t *testing.T) {
	eps := weighted(map[string]int{"a": 5, "b": 1, "c": 1}, "a", "b", "c")
	takeDown(eps[0])
	b := newBalancer(t, "weighted_round_robin", eps)
	c := count(picks(t, b, 70))
	if c["b"] != 35 || c["c"] != 35 {
		t.Errorf("with a down: b=%d c=%d, want 35 each (equal weights)", c["b"], c["c"])
	}
}

func TestLeastRequest(t *testing.T) {
	tests := []struct {
		name     string
		inflight map[string]int
		down     []string
		order    []string
		want     string // every pick
		never    string // never picked (when want is "")
	}{
		{name: "two endpoints: the idle one", inflight: map[string]int{"a": 3}, order: []string{"a", "b"}, want: "b"},
		{name: "two endpoints: the less loaded one", inflight: map[string]int{"a": 2, "b": 5}, order: []string{"a", "b"}, want: "a"},
		{name: "the less loaded one unless it is down", inflight: map[string]int{"a": 5}, down: []string{"b"}, order: []string{"a", "b"}, want: "a"},
		{
			// Two distinct samples: the busiest endpoint loses every comparison.
			name: "the busiest of many is never picked", inflight: map[string]int{"a": 1, "b": 1, "c": 100, "d": 1},
			order: []string{"a", "b", "c", "d"}, never: "c",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := endpoints(tt.order...)
			for _, e := range eps {
				for range tt.inflight[e.Address] {
					e.Begin()
				}
				for _, d := range tt.down {
					if e.Address == d {
						takeDown(e)
					}
				}
			}
			b := newBalancer(t, "least_request", eps)
			c := count(picks(t, b, 200))
			if tt.want != "" && c[tt.want] != 200 {
				t.Errorf("picks = %v, want %s every time", c, tt.want)
			}
			if tt.never != "" && (c[tt.never] != 0 || c["-"] != 0) {
				t.Errorf("picks = %v, want %s never and never nil", c, tt.never)
			}
		})
	}
}

func TestLeastRequestFollowsLoadChanges(t *testing.T) {
	eps := endpoints("a", "b")
	b := newBalancer(t, "least_request", eps)
	now := time.Now().UnixNano()
	// Each pick takes a request slot and keeps it: two endpoints must then
	// alternate, never getting more than one request apart.
	for i := range 100 {
		e := b.Pick(now)
		e.Begin()
		if d := eps[0].Inflight() - eps[1].Inflight(); d > 1 || d < -1 {
			t.Fatalf("after %d picks in flight a=%d b=%d, want them within one", i+1, eps[0].Inflight(), eps[1].Inflight())
		}
	}
	for _, e := range eps {
		for e.Inflight() > 0 {
			e.Done()
		}
	}
}

func TestPassiveHealth(t *testing.T) {
	const maxFails = 2
	const failTimeout = time.Minute
	tests := []struct {
		name    string
		events  string // f = failure, s = success
		healthy bool
	}{
		{name: "new endpoint", events: "", healthy: true},
		{name: "one failure is tolerated", events: "f", healthy: true},
		{name: "max_fails consecutive failures take it out", events: "ff", healthy: false},
		{name: "more failures keep it out", events: "fff", healthy: false},
		{name: "a success in between resets the count", events: "fsf", healthy: true},
		{name: "a success brings it back at once", events: "ffs", healthy: true},
		{name: "after a success it takes max_fails failures again", events: "ffsf", healthy: true},
		{name: "after a success max_fails failures take it out again", events: "ffsff", healthy: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &upstream.Endpoint{Address: "a", Weight: 1}
			for _, ev := range tt.events {
				if ev == 'f' {
					e.ReportFailure(maxFails, failTimeout)
				} else {
					e.ReportSuccess()
				}
			}
			now := time.Now()
			if got := e.Healthy(now.UnixNano()); got != tt.healthy {
				t.Errorf("Healthy now = %v, want %v", got, tt.healthy)
			}
			// Whatever happened, the endpoint is back once fail_timeout has
			// passed.
			if !e.Healthy(now.Add(failTimeout + time.Second).UnixNano()) {
				t.Error("not healthy after fail_timeout")
			}
		})
	}
}

func TestInflightCounts(t *testing.T) {
	e := &upstream.Endpoint{Address: "a"}
	e.Begin()
	e.Begin()
	e.Done()
	if got := e.Inflight(); got != 1 {
		t.Errorf("Inflight = %d after 2 Begin and 1 Done, want 1", got)
	}
}

func TestConcurrentPicks(t *testing.T) {
	const goroutines, perGoroutine = 8, 700 // 5600 picks: a multiple of 4 and of 7
	tests := []struct {
		policy string
		eps    []*upstream.Endpoint
		want   map[string]int // exact counts, or nil to check only the total
	}{
		{policy: "round_robin", eps: endpoints("a", "b", "c", "d"), want: map[string]int{"a": 1400, "b": 1400, "c": 1400, "d": 1400}},
		{policy: "weighted_round_robin", eps: weighted(map[string]int{"a": 5, "b": 1, "c": 1}, "a", "b", "c"), want: map[string]int{"a": 4000, "b": 800, "c": 800}},
		{policy: "least_request", eps: endpoints("a", "b", "c", "d")},
	}
	for _, tt := range tests {
		t.Run(tt.policy, func(t *testing.T) {
			b := newBalancer(t, tt.policy, tt.eps)
			var mu sync.Mutex
			total := map[string]int{}
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					local := map[string]int{}
					now := time.Now().UnixNano()
					for range perGoroutine {
						e := b.Pick(now)
						if e == nil {
							local["-"]++
							continue
						}
						e.Begin()
						local[e.Address]++
						e.Done()
					}
					mu.Lock()
					for k, v := range local {
						total[k] += v
					}
					mu.Unlock()
				})
			}
			wg.Wait()

			if total["-"] != 0 {
				t.Errorf("%d picks returned nil with every endpoint healthy", total["-"])
			}
			sum := 0
			for _, v := range total {
				sum += v
			}
			if sum != goroutines*perGoroutine {
				t.Errorf("%d picks counted, want %d", sum, goroutines*perGoroutine)
			}
			// The counter is one atomic add per pick, so concurrent picks
			// still walk the schedule exactly.
			for addr, want := range tt.want {
				if total[addr] != want {
					t.Errorf("%s picked %d times, want %d (all: %v)", addr, total[addr], want, total)
				}
			}
			for _, e := range tt.eps {
				if e.Inflight() != 0 {
					t.Errorf("%s has %d in flight after every request ended", e.Address, e.Inflight())
				}
			}
		})
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		name        string
		addr        string
		wantNetwork string
		wantDial    string
		wantErr     bool
	}{
		{name: "IPv4 and port", addr: "127.0.0.1:8080", wantNetwork: "tcp", wantDial: "127.0.0.1:8080"},
		{name: "name and port", addr: "backend.internal:80", wantNetwork: "tcp", wantDial: "backend.internal:80"},
		{name: "IPv6 and port", addr: "[::1]:9000", wantNetwork: "tcp", wantDial: "[::1]:9000"},
		{name: "unix socket", addr: "unix:/run/model.sock", wantNetwork: "unix", wantDial: "/run/model.sock"},
		{name: "relative unix socket", addr: "unix:model.sock", wantNetwork: "unix", wantDial: "model.sock"},
		{name: "unix without a path", addr: "unix:", wantErr: true},
		{name: "missing port", addr: "127.0.0.1", wantErr: true},
		{name: "unbracketed IPv6", addr: "::1:80", wantErr: true},
		{name: "unclosed bracket", addr: "[::1:80", wantErr: true},
		{name: "empty", addr: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			network, dial, err := upstream.ParseAddress(tt.addr)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseAddress(%q) error = %v, want error %v", tt.addr, err, tt.wantErr)
			}
			if network != tt.wantNetwork || dial != tt.wantDial {
				t.Errorf("ParseAddress(%q) = %q, %q; want %q, %q", tt.addr, network, dial, tt.wantNetwork, tt.wantDial)
			}
		})
	}
}
