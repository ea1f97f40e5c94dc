// Package upstream holds penstock's upstream pools: their endpoints, the
// balancing policies that pick one per request, passive health, and the
// keep-alive transports that carry requests to them.
package upstream

import (
	"fmt"
	"net"
	"net/http"
	"strings"
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

	transport http.RoundTripper
	inflight  atomic.Int64
	// downUntil is a Unix nanosecond time before which passive health keeps
	// the endpoint out of rotation; 0 when healthy.
	downUntil atomic.Int64
	fails     atomic.Int32
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

// Transport is the keep-alive transport to this endpoint.
func (e *Endpoint) Transport() http.RoundTripper { return e.transport }

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
func (e *Endpoint) ReportFailure(maxFails int, failTimeout time.Duration) {
	if int(e.fails.Add(1)) >= maxFails {
		e.downUntil.Store(time.Now().Add(failTimeout).UnixNano())
	}
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
