package upstream

import (
	"fmt"
	"reflect"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/epoll"
)

// Pool is a compiled upstream: its endpoints, balancing policy and
// clients. It is immutable once built, apart from per-endpoint counters.
type Pool struct {
	// Name is the pool's config name.
	Name string
	// Scheme is "http" or "https" for requests to the endpoints.
	Scheme string
	// Endpoints in config order.
	Endpoints []*Endpoint
	// MaxFails, FailTimeout and TrialInterval drive passive health.
	MaxFails      int
	FailTimeout   time.Duration
	TrialInterval time.Duration
	// Config is the upstream's configuration, kept so that a reload can tell
	// an unchanged pool (which it keeps, with its connections and state) from
	// a changed one.
	Config config.Upstream

	balancer Balancer
	// fallbackNext spreads panicFallback's picks over the endpoints.
	fallbackNext atomic.Uint32
	// prot is the pool's active health, outlier and breaker state
	// (protect.go); nil when it configures none.
	prot *protection
}

// Options are what a pool is given by the process that runs it, rather
// than by its configuration.
type Options struct {
	// IO is the Linux I/O layer whose hang-up watcher watches the pool's
	// plain HTTP/1.1 connections while they are idle. Its owner closes it,
	// after the pool. Nil means epoll.Shared(), the process's.
	IO *epoll.IO
}

// NewPoolWith compiles an upstream from its (validated, defaulted) config.
func NewPoolWith(u *config.Upstream, o Options) (*Pool, error) {
	p := &Pool{Name: u.Name, Scheme: "http", MaxFails: max(u.PassiveHealth.MaxFails, 1), FailTimeout: u.PassiveHealth.FailTimeout.D(),
		TrialInterval: u.PassiveHealth.TrialInterval.D(), Config: *u}
	if u.TLS != nil {
		p.Scheme = "https"
	}
	tlsConf, err := clientTLS(u.TLS)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", u.Name, err)
	}
	for i, ec := range u.Endpoints {
		network, addr, err := ParseAddress(ec.Address)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: endpoints[%d]: %w", u.Name, i, err)
		}
		e := &Endpoint{Address: ec.Address, Weight: max(ec.Weight, 1), network: network, dialAddr: addr, urlHost: addr,
			trialInterval: p.TrialInterval}
		if network == "unix" {
			e.urlHost = "localhost"
		}
		switch {
		case u.Protocol == config.ProtocolH3:
			// QUIC is always encrypted.
			e.client = &StdClient{e: e, scheme: "https", rt: newH3Transport(e, u, tlsConf)}
		case u.Protocol == config.ProtocolH1 && u.Client != config.ClientStdHTTP:
			e.client = newH1Client(e, u, tlsConf, o.IO)
		default:
			e.client = &StdClient{e: e, scheme: p.Scheme, rt: newTransport(e, u, tlsConf), multiplexed: u.Protocol == "h2" || u.Protocol == "h2c"}
		}
		p.Endpoints = append(p.Endpoints, e)
	}
	p.setupProtection(u)
	p.balancer, err = NewBalancer(u.Balancing, p.Endpoints)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", u.Name, err)
	}
	return p, nil
}

// Pick returns an endpoint for one request, or nil when none is available
// (see Endpoint.Available). When every endpoint is out of rotation, one
// request per endpoint and trial interval goes through as a passive health
// trial (see Endpoint.Trial) to the endpoints that only passive health
// keeps out.
func (p *Pool) Pick(now int64) *Endpoint {
	for range len(p.Endpoints) {
		e := p.balancer.Pick(now)
		if e == nil {
			break
		}
		// A half-open endpoint breaker lets its trials through and no
		// more; past them, pick again.
		if e.claim(now) {
			return e
		}
	}
	for _, e := range p.Endpoints {
		if e.pickable(now) && e.Trial(now) {
			return e
		}
	}
	return p.panicFallback(now)
}

// Close closes the pool's idle connections and stops its health checkers
// and outlier statistics (see Start).
func (p *Pool) Close() {
	p.stop()
	for _, e := range p.Endpoints {
		e.client.CloseIdle()
	}
}

// End closes every connection of the pool, idle or carrying a request
// (long-lived streams such as server-sent events or WebSockets end). A
// reload that removes or replaces the pool calls Close at once and End
// when reload.stream_grace is over; the caller owns that wait, so shutting
// down does not leave a timer behind.
func (p *Pool) End() { p.EndFor(nil) }

// EndFor is End for a pool that next replaces: the streams still running to
// an endpoint that next also has, reached the same way (protocol, client and
// TLS settings unchanged), are left to finish, since nothing they depend on
// changed (a reload that only tunes balancing, timeouts or pool sizes, or
// adds an endpoint, cuts no WebSocket or event stream). next's endpoint
// takes over their connections, so a later reload that removes it, or
// shutdown, ends them. Streams to other endpoints end now. next may be nil.
func (p *Pool) EndFor(next *Pool) {
	p.Close()
	for _, e := range p.Endpoints {
		if next != nil && sameConnections(&p.Config, &next.Config) {
			if to := next.endpoint(e.Address); to != nil {
				e.handOver(to)
				continue
			}
		}
		e.closeConns()
		// HTTP/3: the QUIC connections are the client's own.
		e.client.Close()
	}
}

// endpoint returns p's endpoint with address addr, or nil.
func (p *Pool) endpoint(addr string) *Endpoint {
	for _, e := range p.Endpoints {
		if e.Address == addr {
			return e
		}
	}
	return nil
}

// sameConnections reports whether connections made under a are what b
// would make: the same protocol, client and TLS settings.
func sameConnections(a, b *config.Upstream) bool {
	return a.Protocol == b.Protocol && a.Client == b.Client && reflect.DeepEqual(a.TLS, b.TLS)
}

// Same reports whether the pool was built from a configuration equal to u.
func (p *Pool) Same(u *config.Upstream) bool { return reflect.DeepEqual(&p.Config, u) }
