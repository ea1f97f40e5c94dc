package upstream

import "github.com/penstock-dev/penstock/internal/config"

// NewPool compiles an upstream with zero Options: the tests' pools use the
// process-wide I/O layer (epoll.Shared), as a pool built without a server
// does.
func NewPool(u *config.Upstream) (*Pool, error) { return NewPoolWith(u, Options{}) }

// PolicyNames lists the balancing policies NewBalancer knows, in table
// order.
func PolicyNames() []string {
	var names []string
	for _, p := range policies() {
		names = append(names, p.name)
	}
	return names
}

// Views of the pool's idle connections, for the tests.

// WithConnectTimeout is withConnectTimeout.
var WithConnectTimeout = withConnectTimeout

// ProbeReads reports the reads c made to check idle connections before
// reusing them.
func ProbeReads(c *H1Client) int64 { return c.probes.Load() }

// IdleWatch reports, over c's idle connections: how many have a hang-up
// watch, how many of those were found hung up, and whether they read and
// write through raw system calls.
func IdleWatch(c *H1Client) (watched, hungUp int, raw bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.idle {
		if hc.hup.Registered() {
			watched++
		}
		if hc.hup.HungUp() {
			hungUp++
		}
		raw = raw || hc.rs != nil
	}
	return watched, hungUp, raw
}

// IdleSocketReads reports the read system calls made so far on c's idle
// connections that read through raw system calls.
func IdleSocketReads(c *H1Client) (n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.idle {
		if hc.rs != nil {
			n += hc.rs.reads
		}
	}
	return n
}

// IdleFDs reports the descriptors of c's idle connections.
func IdleFDs(c *H1Client) (fds []int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, hc := range c.idle {
		if hc.raw != nil {
			fds = append(fds, socketFD(hc.raw))
		}
	}
	return fds
}
