package proxy

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// TestBackoff checks that the wait before retry n lies in [0, min(max,
// base × 2^(n-1))], reaching both ends, with the random source at its
// extremes and at random.
func TestBackoff(t *testing.T) {
	const base, cap = 25 * time.Millisecond, 250 * time.Millisecond
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	tests := []struct {
		name      string
		n         int
		base, max time.Duration
		want      time.Duration // bound: the highest wait
	}{
		{name: "first retry", n: 1, base: base, max: cap, want: base},
		{name: "second retry doubles", n: 2, base: base, max: cap, want: 2 * base},
		{name: "fourth retry", n: 4, base: base, max: cap, want: 8 * base},
		{name: "capped", n: 5, base: base, max: cap, want: cap},
		{name: "far past the cap does not overflow", n: 200, base: base, max: cap, want: cap},
		{name: "base equal to max", n: 3, base: cap, max: cap, want: cap},
		{name: "no backoff", n: 3, base: 0, max: 0, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := backoff(tc.n, tc.base, tc.max, lowest); got != 0 {
				t.Errorf("lowest draw waits %v, want 0", got)
			}
			if got := backoff(tc.n, tc.base, tc.max, highest); got != tc.want {
				t.Errorf("highest draw waits %v, want %v", got, tc.want)
			}
			for range 1000 {
				if got := backoff(tc.n, tc.base, tc.max, rand.Int64N); got < 0 || got > tc.want {
					t.Fatalf("wait %v outside [0, %v]", got, tc.want)
				}
			}
		})
	}
}

// TestRetryable checks which failures a policy retries for which methods:
// a failure to connect for every method, the others for the listed
// methods only.
func TestRetryable(t *testing.T) {
	p := policyFrom(t, "{on: [connect_failure, reset, 503]}")
	pp := policyFrom(t, "{on: [503], methods: [GET, POST]}")
	tests := []struct {
		name   string
		p      *RetryPolicy
		reason retryReason
		method string
		want   bool
	}{
		{name: "connect failure, GET", p: p, reason: reasonConnect, method: "GET", want: true},
		{name: "connect failure, POST", p: p, reason: reasonConnect, method: "POST", want: true},
		{name: "503, GET", p: p, reason: reason503, method: "GET", want: true},
		{name: "503, PUT", p: p, reason: reason503, method: "PUT", want: true},
		{name: "503, POST", p: p, reason: reason503, method: "POST", want: false},
		{name: "reset, PATCH", p: p, reason: reasonReset, method: "PATCH", want: false},
		{name: "502 not listed", p: p, reason: reason502, method: "GET", want: false},
		{name: "timeout not listed", p: p, reason: reasonTimeout, method: "GET", want: false},
		{name: "no reason", p: p, reason: reasonNone, method: "GET", want: false},
		{name: "503, POST listed", p: pp, reason: reason503, method: "POST", want: true},
		{name: "connect failure not listed", p: pp, reason: reasonConnect, method: "GET", want: false},
		{name: "default policy: connect failure", p: &defaultRetry, reason: reasonConnect, method: "POST", want: true},
		{name: "default policy: 503", p: &defaultRetry, reason: reason503, method: "GET", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.retryable(tc.reason, tc.method); got != tc.want {
				t.Errorf("retryable(%d, %s) = %v, want %v", tc.reason, tc.method, got, tc.want)
			}
		})
	}
}

// policyFrom compiles a route's retry block written in YAML, defaults
// applied.
func policyFrom(t *testing.T, retry string) *RetryPolicy {
	t.Helper()
	cfg, err := config.Parse([]byte(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: r, match: {path: /}, upstream: up, retry: `+retry+`}]
`), "retry.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return NewRetryPolicy(&cfg.Routes[0].Retry, nil, nil)
}

// TestRetryPolicyDefaults: a route without a retry block retries failures
// to connect on three endpoints, under the default budget and backoff.
func TestRetryPolicyDefaults(t *testing.T) {
	p := policyFrom(t, "{}")
	if p.Attempts != 3 || p.On != 1<<reasonConnect || p.PerTryTimeout != 0 ||
		p.BackoffBase != 25*time.Millisecond || p.BackoffMax != 250*time.Millisecond || p.Budget == nil {
		t.Errorf("defaults: %+v", p)
	}
	if p.Budget.ratio != 0.2 || p.Budget.floor != 100 || p.Budget.width != int64(time.Second) {
		t.Errorf("budget defaults: ratio %v, floor %v, slot %v", p.Budget.ratio, p.Budget.floor, time.Duration(p.Budget.width))
	}
}
