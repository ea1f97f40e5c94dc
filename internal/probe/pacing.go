package probe

import (
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"
)

// destLimit allows at most count probe starts per destination in any
// window, exactly: it keeps each destination's last count start times (a
// sliding log) rather than estimating from two fixed windows, because an
// estimate can let through more than count in some window, and the limit
// is a promise made to the probed host. It forgets destinations idle for a
// window. Safe for concurrent use.
type destLimit struct {
	count  int
	window time.Duration
	// byPrefix groups IPv4 destinations by /24 and IPv6 by /64 instead of
	// by address.
	byPrefix bool

	mu    sync.Mutex
	dests map[string]*ring
	swept time.Time
}

type ring struct {
	starts []time.Time // the last count starts, oldest at next
	next   int
	last   time.Time
}

func newDestLimit(count int, window time.Duration, byPrefix bool) *destLimit {
	return &destLimit{count: count, window: window, byPrefix: byPrefix, dests: map[string]*ring{}}
}

// take records a start for dest at now if the limit allows one, and
// otherwise returns how long until it would.
func (l *destLimit) take(dest string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > l.window {
		for k, r := range l.dests {
			if now.Sub(r.last) > l.window {
				delete(l.dests, k)
			}
		}
		l.swept = now
	}
	r := l.dests[dest]
	if r == nil {
		r = &ring{starts: make([]time.Time, 0, l.count)}
		l.dests[dest] = r
	}
	if len(r.starts) < l.count {
		r.starts = append(r.starts, now)
		r.last = now
		return true, 0
	}
	oldest := r.starts[r.next]
	if wait := oldest.Add(l.window + guard(l.window)).Sub(now); wait > 0 {
		return false, wait
	}
	r.starts[r.next] = now
	r.next = (r.next + 1) % l.count
	r.last = now
	return true, 0
}

// guard lengthens the window a little (5 %, at most 50 ms) so that the
// jitter between a probe's start here and its connection's arrival at the
// destination cannot put count+1 arrivals in one window there.
func guard(window time.Duration) time.Duration {
	return min(window/20, 50*time.Millisecond)
}

// backoff holds a destination back after failures that say it is down or
// overloaded (refused, reset, timed out): base after the first, doubling
// up to max, until a probe of it succeeds. Safe for concurrent use.
type backoff struct {
	base, max time.Duration

	mu    sync.Mutex
	dests map[string]*backoffState
}

type backoffState struct {
	fails int
	until time.Time
}

func newBackoff(base time.Duration) *backoff {
	return &backoff{base: base, max: 64 * base, dests: map[string]*backoffState{}}
}

// wait is how long dest is still held back at now (0: not).
func (b *backoff) wait(dest string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.dests[dest]; st != nil {
		return max(0, st.until.Sub(now))
	}
	return 0
}

// record notes a probe of dest that finished at now with reason.
func (b *backoff) record(dest string, reason Reason, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch reason {
	case ReasonConnectRefused, ReasonConnectReset, ReasonConnectTimeout, ReasonConnectUnreachable, ReasonTimeout, ReasonQUICHandshake:
	default:
		// A success, or an answer (even a wrong one): the host is up.
		delete(b.dests, dest)
		return
	}
	st := b.dests[dest]
	if st == nil {
		st = &backoffState{}
		b.dests[dest] = st
	}
	st.fails++
	d := b.base << min(st.fails-1, 30)
	st.until = now.Add(min(d, b.max))
}

// destOf is the key a target is paced under: its host, or with byPrefix
// the host's /24 (IPv4) or /64 (IPv6).
func destOf(target string, byPrefix bool) string {
	host := target
	if strings.Contains(target, "://") {
		if u, err := url.Parse(target); err == nil {
			host = u.Hostname()
		}
	} else if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	if !byPrefix {
		return host
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	bits := 24
	if a.Is6() && !a.Is4In6() {
		bits = 64
	}
	p, _ := a.Unmap().Prefix(bits)
	return p.String()
}
