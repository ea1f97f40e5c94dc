package h1

import (
	"sync"
	"sync/atomic"
	"time"
)

// The idle timeout of connections parked in the poller.
//
// A time.Timer per connection costs about a hundred bytes held for the
// connection's life and a Reset per request. Instead one sweeper goroutine
// per server keeps a coarse clock (a tick every idleGrain of the idle
// timeout) and closes the connections that have been idle for the timeout:
// a connection only records the tick at which it went idle. A connection is
// closed between IdleTimeout and IdleTimeout + 2 ticks after its last
// request (at most 1.25 × the timeout, never sooner than the timeout).
// Connections with their own goroutine (TLS, no poller) use a read deadline
// instead.

// idleGrain divides the idle timeout into ticks; idleTickMax and
// idleTickMin bound a tick.
const (
	idleGrain   = 8
	idleTickMax = time.Second
	idleTickMin = 5 * time.Millisecond
)

// idleSweeper closes a server's polled connections once they are idle for
// the idle timeout.
type idleSweeper struct {
	once     sync.Once
	haltOnce sync.Once
	stop     chan struct{}
	// tick is the coarse clock; read by connections going idle.
	tick atomic.Uint32
	// need is how many ticks after going idle a connection is closed.
	need uint32
	// scratch is the sweep's copy of the connection set, reused.
	scratch []*conn
}

// idleTickFor is the tick length for an idle timeout.
func idleTickFor(d time.Duration) time.Duration {
	return min(max(d/idleGrain, idleTickMin), idleTickMax)
}

// start runs the sweeper once, for servers with an idle timeout.
func (w *idleSweeper) start(s *Server) {
	w.once.Do(func() {
		d := s.o.IdleTimeout
		tick := idleTickFor(d)
		// Closed when at least d has passed since the connection went
		// idle: it went idle somewhere within its tick, so one tick more.
		w.need = uint32((d+tick-1)/tick) + 1
		w.stop = make(chan struct{})
		go w.run(s, tick)
	})
}

// halt stops the sweeper (Shutdown).
func (w *idleSweeper) halt() {
	w.once.Do(func() {}) // a sweeper not started never will be
	w.haltOnce.Do(func() {
		if w.stop != nil {
			close(w.stop)
		}
	})
}

func (w *idleSweeper) run(s *Server, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		now := w.tick.Add(1)
		s.mu.Lock()
		all := w.scratch[:0]
		for c := range s.conns {
			all = append(all, c)
		}
		s.mu.Unlock()
		for i, c := range all {
			if c.state.Load() == connIdle {
				if at := c.idleTick.Load(); at != 0 && now-at >= w.need {
					c.closeIfIdleSince(at)
				}
			}
			all[i] = nil
		}
		w.scratch = all[:0]
	}
}

// wentIdle records the tick at which c became idle. Ticks start at 1; 0
// means "never idle".
func (c *conn) wentIdle() {
	c.idleTick.Store(max(c.srv.idle.tick.Load(), 1))
}

// closeIfIdleSince closes c if it is still idle since the tick at: a
// connection that was served and went idle again meanwhile is left alone.
func (c *conn) closeIfIdleSince(at uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idleTick.Load() != at || !c.state.CompareAndSwap(connIdle, connClosed) {
		return
	}
	c.close()
}
