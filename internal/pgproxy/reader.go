package pgproxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// sink is what holds a server connection: it is given every message the
// server sends while it holds it, and told once if the connection is lost.
// Both run on the connection's reader, which must not wait on them: a
// sink that needs to wait (exchange) waits on its own goroutine.
type sink interface {
	deliver(sc *serverConn, msg pgproto3.BackendMessage)
	lost(sc *serverConn, err error)
}

// sinkRef boxes a sink for serverConn.sink (an atomic pointer); a client
// keeps one for its whole life.
type sinkRef struct{ s sink }

// deadRef is the sink of a connection whose reader has stopped: nobody
// can hold it any more (hold fails).
var deadRef = &sinkRef{}

// errLostBeforeUse: the server went away while the connection sat idle in
// the pool, and a client took it before the loss was seen.
var errLostBeforeUse = errors.New("server connection lost before use")

// read is the connection's reader, from the dial to the end. One
// goroutine per server connection, in one drainReader run for its whole
// life, costs one recvfrom(2) per answer: a goroutine per transaction
// would pay its start and a first read that finds nothing (EAGAIN) each
// time (see drainReader).
func (sc *serverConn) read() {
	var lost error
	err := sc.in.run(func() bool {
		sc.pool.p.busy.woke()
		for !sc.closing.Load() {
			msg, err := sc.fe.Receive()
			if errors.Is(err, errDrained) {
				return false
			}
			if err != nil {
				lost = err
				return true
			}
			if e, ok := msg.(*pgproto3.ErrorResponse); ok && fatal(e) {
				// The server closes the connection next.
				sc.in.recheck()
			}
			if r := sc.sink.Load(); r != nil {
				r.s.deliver(sc, msg)
			} else {
				sc.idleMessage(msg)
			}
		}
		return true
	})
	if lost == nil {
		lost = err
	}
	prev := sc.sink.Swap(deadRef)
	sc.conn.Close()
	switch {
	case sc.closing.Load():
		// Closed on purpose: whoever closed it gave its slot back.
	case prev != nil:
		// Its holder is told, once; whoever holds it next cannot.
		prev.s.lost(sc, lost)
	default:
		sc.pool.removeIdle(sc)
	}
}

// idleMessage handles what a server sends to a connection nobody holds:
// a FATAL error before it closes it (shutdown, pg_terminate_backend), a
// notice, a changed setting. The end of the stream that follows takes
// the connection out of the pool.
func (sc *serverConn) idleMessage(msg pgproto3.BackendMessage) {
	switch m := msg.(type) {
	case *pgproto3.ParameterStatus:
		sc.params[m.Name] = m.Value
	case *pgproto3.ErrorResponse:
		sc.pool.p.log.Debug("postgres server message on an idle connection", "server", sc.pool.srv.addr, "severity", m.Severity, "message", m.Message)
	}
}

// hold gives sc to r, a new holder that took it from the pool (or just
// dialled it). It reports false when the connection was already lost: the
// holder handles that itself, as it is not told.
func (sc *serverConn) hold(r *sinkRef) bool {
	for {
		cur := sc.sink.Load()
		if cur == deadRef {
			return false
		}
		if sc.sink.CompareAndSwap(cur, r) {
			return true
		}
	}
}

// dead reports whether sc's reader has stopped.
func (sc *serverConn) dead() bool { return sc.sink.Load() == deadRef }

// exchanger is the proxy's own request on a held connection (settings to
// sync): it collects the answers up to the ready'th ReadyForQuery.
type exchanger struct {
	ready  int
	failed *pgproto3.ErrorResponse
	err    error
	done   chan struct{}
}

func (x *exchanger) deliver(sc *serverConn, msg pgproto3.BackendMessage) {
	if x.ready == 0 {
		return
	}
	switch m := msg.(type) {
	case *pgproto3.ErrorResponse:
		if x.failed == nil {
			e := *m
			x.failed = &e
		}
	case *pgproto3.ParameterStatus:
		sc.params[m.Name] = m.Value
	case *pgproto3.ReadyForQuery:
		x.ready--
		if x.ready == 0 {
			if m.TxStatus != 'I' && x.failed == nil {
				x.failed = &pgproto3.ErrorResponse{Code: codeProtocolViolation, Message: "server connection not idle afterwards"}
			}
			close(x.done)
		}
	}
}

func (x *exchanger) lost(_ *serverConn, err error) {
	if x.ready > 0 {
		x.ready = 0
		x.err = err
		close(x.done)
	}
}

// exchange sends msgs on sc, held by the caller, and waits (up to timeout)
// for the answers up to the ready'th ReadyForQuery, keeping the parameters
// the server reports. It returns the first ErrorResponse, or err when the
// connection failed. The caller sets the connection's next holder after.
func (sc *serverConn) exchange(msgs []pgproto3.FrontendMessage, ready int, timeout time.Duration) (failed *pgproto3.ErrorResponse, err error) {
	x := &exchanger{ready: ready, done: make(chan struct{})}
	ref := &sinkRef{x}
	if !sc.hold(ref) {
		return nil, errLostBeforeUse
	}
	// Done, the connection is nobody's until the caller holds it again.
	defer sc.sink.CompareAndSwap(ref, nil)
	sc.sendMu.Lock()
	for _, m := range msgs {
		sc.fe.Send(m)
	}
	err = sc.fe.Flush()
	sc.sendMu.Unlock()
	if err != nil {
		// The reader sees the broken connection and ends the exchange.
		sc.abort()
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-x.done:
	case <-t.C:
		sc.abort()
		<-x.done
		if x.err != nil {
			x.err = fmt.Errorf("server did not answer within %v (timeouts.connect)", timeout)
		}
	}
	return x.failed, x.err
}

// resetter runs the reset query on a released connection that carries
// session state, and puts it back in the pool (or closes it) once
// answered. It is started and finished on the reader: nothing waits.
type resetter struct {
	failed bool
	timer  *time.Timer
}

// startReset runs query on sc, which its client just let go, then returns
// sc to its pool. A reset not answered within timeout closes it.
func (sc *serverConn) startReset(query string, timeout time.Duration) {
	r := &resetter{}
	sc.sink.Store(&sinkRef{r})
	r.timer = time.AfterFunc(timeout, sc.abort)
	sc.sendMu.Lock()
	sc.fe.Send(&pgproto3.Query{String: query})
	if sc.fe.Flush() != nil {
		sc.abort()
	}
	sc.sendMu.Unlock()
}

func (r *resetter) deliver(sc *serverConn, msg pgproto3.BackendMessage) {
	switch m := msg.(type) {
	case *pgproto3.ErrorResponse:
		r.failed = true
		sc.pool.p.log.Debug("postgres reset failed; connection closed", "server", sc.pool.srv.addr, "error", m.Message)
	case *pgproto3.ParameterStatus:
		sc.params[m.Name] = m.Value
	case *pgproto3.ReadyForQuery:
		if !r.timer.Stop() {
			// The deadline fired: the reader is stopping.
			return
		}
		sc.sink.Store(nil)
		if r.failed || m.TxStatus != 'I' {
			sc.pool.discard(sc)
			return
		}
		// The server forgot its prepared statements and settings: so
		// does sc.
		sc.stmts.clear()
		sc.applied = nil
		sc.pool.release(sc)
	}
}

func (r *resetter) lost(sc *serverConn, _ error) {
	r.timer.Stop()
	sc.pool.discard(sc)
}

// fatal reports whether e ends the session (the server closes the
// connection after it).
func fatal(e *pgproto3.ErrorResponse) bool {
	sev := e.SeverityUnlocalized
	if sev == "" {
		sev = e.Severity
	}
	return sev == "FATAL" || sev == "PANIC"
}
