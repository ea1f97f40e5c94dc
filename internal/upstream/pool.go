package upstream

import (
	"fmt"
	"io"
	"reflect"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// Pool is a compiled upstream: its endpoints, balancing policy and
// transports. It is immutable once built, apart from per-endpoint counters.
type Pool struct {
	// Name is the pool's config name.
	Name string
	// Scheme is "http" or "https" for requests to the endpoints.
	Scheme string
	// Endpoints in config order.
	Endpoints []*Endpoint
	// MaxFails and FailTimeout drive passive health.
	MaxFails    int
	FailTimeout time.Duration
	// Config is the upstream's configuration, kept so that a reload can tell
	// an unchanged pool (which it keeps, with its connections and state) from
	// a changed one.
	Config config.Upstream

	balancer Balancer
}

// NewPool compiles an upstream from its (validated, defaulted) config.
func NewPool(u *config.Upstream) (*Pool, error) {
	p := &Pool{Name: u.Name, Scheme: "http", MaxFails: max(u.PassiveHealth.MaxFails, 1), FailTimeout: u.PassiveHealth.FailTimeout.D(), Config: *u}
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
		e := &Endpoint{Address: ec.Address, Weight: max(ec.Weight, 1), network: network, dialAddr: addr, urlHost: addr}
		if network == "unix" {
			e.urlHost = "localhost"
		}
		if u.Protocol == config.ProtocolH3 {
			e.transport = newH3Transport(e, u, tlsConf)
		} else {
			e.transport = newTransport(e, u, tlsConf)
		}
		if u.Protocol == config.ProtocolH1 && u.Client != config.ClientStdHTTP {
			e.h1 = newH1Client(e, u, tlsConf)
		}
		p.Endpoints = append(p.Endpoints, e)
	}
	p.balancer, err = NewBalancer(u.Balancing, p.Endpoints)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", u.Name, err)
	}
	return p, nil
}

// Pick returns an endpoint for one request, or nil when none is healthy.
func (p *Pool) Pick(now int64) *Endpoint { return p.balancer.Pick(now) }

// Close closes the pool's idle connections.
func (p *Pool) Close() {
	for _, e := range p.Endpoints {
		if t, ok := e.transport.(interface{ CloseIdleConnections() }); ok {
			t.CloseIdleConnections()
		}
		if e.h1 != nil {
			e.h1.CloseIdle()
		}
	}
}

// End closes every connection of the pool, idle or carrying a request
// (long-lived streams such as server-sent events or WebSockets end). A
// reload that removes or replaces the pool calls Close at once and End
// when reload.stream_grace is over; the caller owns that wait, so shutting
// down does not leave a timer behind.
func (p *Pool) End() {
	p.Close()
	for _, e := range p.Endpoints {
		e.closeConns()
		if t, ok := e.transport.(io.Closer); ok {
			// HTTP/3: the QUIC connections are the transport's own.
			t.Close()
		}
	}
}

// Same reports whether the pool was built from a configuration equal to u.
func (p *Pool) Same(u *config.Upstream) bool { return reflect.DeepEqual(&p.Config, u) }
