// Package upstream holds penstock's upstream pools: their endpoints, the
// balancing policies that pick one per request, passive health, and the
// clients that carry requests to them over keep-alive connections.
package upstream

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint is one server of a pool.
type Endpoint struct {
	// Address is the endpoint as configured: "host:port" or "unix:/path".
	Address string
	// Weight is the endpoint's share under weighted balancing (≥ 1).
	Weight int

	network, dialAddr string
	// urlHost is what the upstream request's URL carries; for unix sockets it
	// is a placeholder, since the dialer ignores it.
	urlHost string

	// client carries the endpoint's requests: H1Client for h1 pools with
	// client native, StdClient otherwise.
	client   Client
	inflight atomic.Int64
	// downUntil is a Unix nanosecond time before which passive health keeps
	// the endpoint out of rotation; 0 when healthy.
	downUntil atomic.Int64
	fails     atomic.Int32
	// trialAt is a Unix nanosecond time before which no trial request may
	// go to the endpoint while it is out of rotation; trialInterval is the
	// pool's passive_health.trial_interval (see Trial).
	trialAt       atomic.Int64
	trialInterval time.Duration
	// guard is the endpoint's active health, outlier and breaker state
	// (protect.go); nil when its pool configures none.
	guard *guard

	// conns tracks the endpoint's open connections (registered at dial, not
	// per request) so that a retired pool can close long-lived streams.
	connsMu sync.Mutex
	conns   map[*trackedConn]struct{}
	// open is len(conns), read without the lock (StdClient's cold gate).
	open atomic.Int32
}

// trackedConn removes itself from its endpoint's set when closed. Its
// endpoint changes when a reload hands the connection over (handOver).
type trackedConn struct {
	net.Conn
	e    atomic.Pointer[Endpoint]
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		for {
			e := c.e.Load()
			e.connsMu.Lock()
			if c.e.Load() == e {
				delete(e.conns, c)
				e.open.Store(int32(len(e.conns)))
				e.connsMu.Unlock()
				return
			}
			e.connsMu.Unlock() // handed over meanwhile
		}
	})
	return c.Conn.Close()
}

func (e *Endpoint) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c}
	tc.e.Store(e)
	e.connsMu.Lock()
	if e.conns == nil {
		e.conns = make(map[*trackedConn]struct{})
	}
	e.conns[tc] = struct{}{}
	e.open.Store(int32(len(e.conns)))
	e.connsMu.Unlock()
	return tc
}

// OpenConns reports the endpoint's open connections.
func (e *Endpoint) OpenConns() int {
	e.connsMu.Lock()
	defer e.connsMu.Unlock()
	return len(e.conns)
}

// handOver makes to track e's open connections, so that whatever ends to's
// connections (a later reload, shutdown) ends them too. Only a retiring
// pool hands over, always to its successor, so two endpoints never hand
// over to each other at once.
func (e *Endpoint) handOver(to *Endpoint) {
	e.connsMu.Lock()
	defer e.connsMu.Unlock()
	to.connsMu.Lock()
	defer to.connsMu.Unlock()
	if to.conns == nil {
		to.conns = make(map[*trackedConn]struct{})
	}
	for c := range e.conns {
		to.conns[c] = struct{}{}
		c.e.Store(to)
		delete(e.conns, c)
	}
	e.open.Store(0)
	to.open.Store(int32(len(to.conns)))
}

func (e *Endpoint) closeConns() {
	e.connsMu.Lock()
	cs := make([]*trackedConn, 0, len(e.conns))
	for c := range e.conns {
		cs = append(cs, c)
	}
	e.connsMu.Unlock()
	for _, c := range cs {
		c.Close()
	}
}

// State is a snapshot of an endpoint's health and load, for the admin API.
type State struct {
	Address   string    `json:"address"`
	Weight    int       `json:"weight"`
	Healthy   bool      `json:"healthy"`
	DownUntil time.Time `json:"down_until,omitzero"`
	Fails     int       `json:"consecutive_failures"`
	Inflight  int64     `json:"inflight"`
	OpenConns int       `json:"open_connections"`
	// Protection is the endpoint's active health, outlier ejection, breaker
	// and slow-start state; absent when the pool configures none.
	Protection *ProtectionState `json:"protection,omitempty"`
}

// State reports the endpoint's current state.
func (e *Endpoint) State() State {
	now := time.Now()
	s := State{Address: e.Address, Weight: e.Weight, Healthy: e.Healthy(now.UnixNano()),
		Fails: int(e.fails.Load()), Inflight: e.inflight.Load(), OpenConns: e.OpenConns(),
		Protection: e.protectionState(now.UnixNano())}
	if d := e.downUntil.Load(); d != 0 && now.UnixNano() < d {
		s.DownUntil = time.Unix(0, d)
	}
	return s
}

// ParseAddress splits an endpoint address into a dial network and address.
func ParseAddress(addr string) (network, dialAddr string, err error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if path == "" {
			return "", "", fmt.Errorf("unix socket path is empty")
		}
		return "unix", path, nil
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", "", err
	}
	return "tcp", addr, nil
}

// Inflight reports the requests currently forwarded to the endpoint.
func (e *Endpoint) Inflight() int64 { return e.inflight.Load() }

// Begin marks a request as sent to e; call the returned Done when it ends.
func (e *Endpoint) Begin() { e.inflight.Add(1) }

// Done marks a request to e as finished.
func (e *Endpoint) Done() { e.inflight.Add(-1) }

// Client carries requests to this endpoint.
func (e *Endpoint) Client() Client { return e.client }

// URLHost is the host to put in an upstream request URL for this endpoint.
func (e *Endpoint) URLHost() string { return e.urlHost }

// Healthy reports whether passive health currently admits the endpoint.
func (e *Endpoint) Healthy(now int64) bool {
	d := e.downUntil.Load()
	return d == 0 || now >= d
}

// ReportFailure records a failure to connect. After maxFails consecutive
// failures the endpoint leaves rotation for failTimeout, like NGINX's
// max_fails/fail_timeout: cheap, needs no probe traffic, and stops every
// request from paying a dial timeout against a dead server.
//
// The first trial request (see Trial) may come one trial interval after the
// endpoint left rotation.
func (e *Endpoint) ReportFailure(maxFails int, failTimeout time.Duration) {
	if int(e.fails.Add(1)) >= maxFails {
		now := time.Now()
		e.downUntil.Store(now.Add(failTimeout).UnixNano())
		e.trialAt.Store(now.Add(e.trialInterval).UnixNano())
	}
}

// Trial reports whether a request may go to e: always while passive health
// admits it; while it is out, once per interval, so that an endpoint that
// comes back (a restarted model server) is in rotation again within about
// an interval instead of after the whole fail_timeout. Only the pool asks,
// and only when no endpoint is healthy: a pool is then never left empty
// much longer than its endpoints are really down, and a dead endpoint costs
// one failed request per interval.
func (e *Endpoint) Trial(now int64) bool {
	if e.Healthy(now) {
		return true
	}
	next := e.trialAt.Load()
	if now < next {
		return false
	}
	return e.trialAt.CompareAndSwap(next, now+int64(e.trialInterval))
}

// ReportSuccess clears the failure count.
func (e *Endpoint) ReportSuccess() {
	if e.fails.Load() != 0 {
		e.fails.Store(0)
	}
	if e.downUntil.Load() != 0 {
		e.downUntil.Store(0)
	}
}
