package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/penstock-dev/penstock/internal/epoll"
)

// Prober runs probes. Its zero value works; one Prober serves any number
// of concurrent probes.
type Prober struct {
	// Sessions keeps TLS sessions between probes, so that later probes of
	// a destination resume (keyed by server name or address). nil: every
	// handshake is full.
	Sessions tls.ClientSessionCache
	// Resolver resolves names; nil is net.DefaultResolver.
	Resolver *net.Resolver
	// Poller is the epoll layer where tcp probes wait for an answer
	// without a goroutine (tcp.go); nil is the process's shared one
	// (epoll.Shared).
	Poller *epoll.IO
}

// kindFuncs is the table of probe kinds: one function per kind, each in its
// own file. The tcp kind is not here: it is a state machine that may end on
// another goroutine (startTCP, tcp.go).
var kindFuncs = map[string]func(p *Prober, ctx context.Context, target string, m *Module, r *Result) error{
	"http": (*Prober).probeHTTP,
	"tls":  (*Prober).probeTLS,
	"dns":  (*Prober).probeDNS,
	"icmp": (*Prober).probeICMP,
	"grpc": (*Prober).probeGRPC,
}

// Probe probes target with module m (named name) and returns what it found.
// It returns within the module's timeout (or ctx's deadline, if earlier).
func (p *Prober) Probe(ctx context.Context, target, name string, m *Module) *Result {
	ch := make(chan *Result, 1)
	p.run(ctx, target, name, m, func(r *Result) { ch <- r })
	return <-ch
}

// Start starts a probe of target with module m (named name) and returns at
// once; done is called with the result, on another goroutine, within the
// module's timeout (or ctx's deadline, if earlier). A tcp probe waiting
// for its answer holds no goroutine meanwhile (tcp.go).
func (p *Prober) Start(ctx context.Context, target, name string, m *Module, done func(*Result)) {
	go p.run(ctx, target, name, m, done)
}

func (p *Prober) run(ctx context.Context, target, name string, m *Module, done func(*Result)) {
	r := &Result{Target: target, Module: name, Kind: m.Prober, Start: time.Now()}
	timeout := time.Duration(m.Timeout)
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	deadline := r.Start.Add(timeout)
	end := func(err error) {
		r.Duration = Seconds(time.Since(r.Start))
		if err != nil {
			r.Success = false
			r.Error = err.Error()
			if r.Reason == ReasonNone {
				r.Reason = ReasonOther
			}
		} else {
			r.Success, r.Reason = true, ReasonNone
		}
		done(r)
	}
	if m.Prober == "tcp" {
		// The tcp prober keeps no context while it waits (tcp.go).
		p.startTCP(ctx, deadline, target, m, r, end)
		return
	}
	f, ok := kindFuncs[m.Prober]
	if !ok {
		r.Reason = ReasonOther
		end(fmt.Errorf("unknown prober %q", m.Prober))
		return
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	err := f(p, ctx, target, m, r)
	cancel()
	end(err)
}

// fail records err's reason (classified in phase ph) and returns err.
func (r *Result) fail(err error, ph phase) error {
	if r.Reason == ReasonNone {
		r.Reason = classify(err, ph)
	}
	return err
}

// failWith records a known reason.
func (r *Result) failWith(reason Reason, format string, args ...any) error {
	r.Reason = reason
	return fmt.Errorf(format, args...)
}

// resolve finds host's address, preferring the family of preferred ("ip4"
// or "ip6"; blackbox_exporter's default is ip6) and falling back to the
// other unless fallback is false. It records the resolve phase.
func (p *Prober) resolve(ctx context.Context, host, preferred string, fallback *bool, r *Result) (netip.Addr, error) {
	start := time.Now()
	defer func() { r.Phases.Resolve = Seconds(time.Since(start)) }()
	if a, err := netip.ParseAddr(host); err == nil {
		r.setAddr(a)
		return a, nil
	}
	res := p.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	addrs, err := res.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, r.fail(err, phaseResolve)
	}
	if preferred == "" {
		preferred = "ip6"
	}
	var other netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if (preferred == "ip4") == a.Is4() {
			r.setAddr(a)
			return a, nil
		}
		if !other.IsValid() {
			other = a
		}
	}
	if other.IsValid() && (fallback == nil || *fallback) {
		r.setAddr(other)
		return other, nil
	}
	return netip.Addr{}, r.failWith(ReasonDNSError, "resolve %s: no %s address", host, preferred)
}

func (r *Result) setAddr(a netip.Addr) {
	r.Addr = a.String()
	r.IPProtocol = 6
	if a.Unmap().Is4() {
		r.IPProtocol = 4
	}
}

// splitHostPort splits target into host and port, using defPort when the
// target has none.
func splitHostPort(target, defPort string) (string, string, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		if defPort == "" {
			return "", "", fmt.Errorf("target %q: want host:port", target)
		}
		return trimBrackets(target), defPort, nil
	}
	return host, port, nil
}

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}
