package pgproxy

import (
	goruntime "runtime"
	"sync/atomic"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

// busyPoller is postgres.busy_poll. A proxy that sleeps between messages
// is woken by each one: PostgreSQL's send (or a client's) finds the
// proxy's thread asleep in epoll_pwait and wakes it, and on a virtual
// machine that wake-up is an inter-processor interrupt paid on the
// sender's core. perf on bench/pgproxy.sh's database core at 200 clients
// puts 15 % of its samples on that path (sendto → sock_def_readable →
// the wake-up) with penstock; the wake-up's symbol is the database's top
// one with PgBouncer too (20 %).
//
// When a wake-up finds at least PostgresBusyPollMinInFlight statements
// in flight, one goroutine yields in a loop (runtime.Gosched) for the
// window: the Go scheduler always has something to run, so it never
// blocks in the network poller, and senders write to sockets nobody
// sleeps on. Goroutines made runnable meanwhile run between the yields;
// network events that arrive during the window are taken when it ends
// (the scheduler polls the network when nothing else is runnable), so
// each is delayed by at most the window. Go has no other way to poll:
// an application cannot make the scheduler poll the network without
// blocking, and a timer shorter than a millisecond still sleeps in
// epoll_pwait for one.
type busyPoller struct {
	p *Proxy
	// inflight counts the Sync and Query messages sent to servers and not
	// yet answered, over all clients.
	inflight atomic.Int64
	kick     chan struct{}
}

func newBusyPoller(p *Proxy) *busyPoller {
	return &busyPoller{p: p, kick: make(chan struct{}, 1)}
}

// woke is called by every goroutine of the proxy that was woken by its
// socket: it starts a window when busy_poll is on and enough is in
// flight.
func (b *busyPoller) woke() {
	if b.inflight.Load() < config.PostgresBusyPollMinInFlight || b.p.rt.Load().cfg.BusyPoll <= 0 {
		return
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// run is the polling goroutine: one window per kick.
func (b *busyPoller) run(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-b.kick:
		}
		window := b.p.rt.Load().cfg.BusyPoll.D()
		b.p.metrics.busyPollWindows.Inc()
		for t0 := time.Now(); time.Since(t0) < window; {
			goruntime.Gosched()
		}
	}
}
