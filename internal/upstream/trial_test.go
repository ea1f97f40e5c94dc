package upstream_test

import (
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// When every endpoint of a pool is out of rotation, one request per
// endpoint and second goes through as a trial, long before fail_timeout
// ends; a successful trial puts the endpoint back at once.
func TestPickTrialsAnEmptyPool(t *testing.T) {
	const failTimeout = 10 * time.Second
	p, err := upstream.NewPool(&config.Upstream{Name: "one", Balancing: "round_robin",
		Endpoints:     []config.Endpoint{{Address: "127.0.0.1:1"}},
		PassiveHealth: config.PassiveHealth{MaxFails: 1, FailTimeout: config.Duration(failTimeout), TrialInterval: config.Duration(time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	e := p.Endpoints[0]
	down := time.Now()
	e.ReportFailure(p.MaxFails, p.FailTimeout)
	at := func(d time.Duration) int64 { return down.Add(d).UnixNano() }

	steps := []struct {
		name  string
		after time.Duration
		want  bool // Pick returns the endpoint
	}{
		{"right after the failure", 10 * time.Millisecond, false},
		{"before the first trial", 900 * time.Millisecond, false},
		{"first trial", 1100 * time.Millisecond, true},
		{"only one trial per second", 1200 * time.Millisecond, false},
		{"second trial", 2200 * time.Millisecond, true},
		{"after fail_timeout, in rotation", failTimeout + time.Millisecond, true},
	}
	for _, s := range steps {
		if got := p.Pick(at(s.after)) == e; got != s.want {
			t.Errorf("%s (+%v): endpoint picked = %v, want %v", s.name, s.after, got, s.want)
		}
	}

	e.ReportFailure(p.MaxFails, p.FailTimeout)
	e.ReportSuccess() // a trial that succeeded
	if p.Pick(time.Now().UnixNano()) != e {
		t.Error("after a successful trial the endpoint is not back in rotation")
	}
}

// A pool with a healthy endpoint never sends trials to the others: they
// come back after fail_timeout.
func TestPickNoTrialWhileAnEndpointIsHealthy(t *testing.T) {
	p, err := upstream.NewPool(&config.Upstream{Name: "two", Balancing: "round_robin",
		Endpoints:     []config.Endpoint{{Address: "127.0.0.1:1"}, {Address: "127.0.0.1:2"}},
		PassiveHealth: config.PassiveHealth{MaxFails: 1, FailTimeout: config.Duration(10 * time.Second), TrialInterval: config.Duration(time.Second)}})
	if err != nil {
		t.Fatal(err)
	}
	p.Endpoints[0].ReportFailure(p.MaxFails, p.FailTimeout)
	later := time.Now().Add(5 * time.Second).UnixNano()
	for range 10 {
		if p.Pick(later) != p.Endpoints[1] {
			t.Fatal("a request went to the endpoint out of rotation while the other was healthy")
		}
	}
}
