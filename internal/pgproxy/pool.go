package pgproxy

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/penstock-dev/penstock/internal/epoll"
)

// Errors a client can get instead of a server connection. Each maps to a
// SQLSTATE in pgError.
var (
	// errWaitTimeout: the pool stayed full for timeouts.query_wait.
	errWaitTimeout = errors.New("no server connection became free within timeouts.query_wait")
	// errServerDown: the server's breaker is open.
	errServerDown = errors.New("server is down (breaker open); it is probed and used again once it answers")
	// errPoolClosed: the pool was removed by a reload or shutdown.
	errPoolClosed = errors.New("pool closed")
)

// server is one PostgreSQL server (primary or replica) of a database, with
// its breaker and, for replicas, its measured lag. Pools of every client
// user share it.
type server struct {
	addr    string
	replica bool

	// fails counts consecutive failed connects; downSince is set (Unix
	// nanoseconds) while the breaker is open.
	fails     atomic.Int32
	downSince atomic.Int64
	// lag is the replica's replay lag behind the primary in bytes of WAL;
	// -1 while unknown.
	lag atomic.Int64
	// lagAt is when (Unix nanoseconds) lag was last measured.
	lagAt atomic.Int64
	// lostAt is when (Unix nanoseconds) a connection to the server last
	// broke under a client. Connections of any pool that were already
	// idle then are suspect (a crashed or restarted server takes them
	// all): acquire closes them instead of handing them out.
	lostAt atomic.Int64
}

func (s *server) down() bool { return s.downSince.Load() != 0 }

// connectFailed records a failed connect and opens the breaker at
// threshold; it reports whether the breaker just opened.
func (s *server) connectFailed(threshold int) bool {
	if int(s.fails.Add(1)) >= threshold {
		return s.downSince.CompareAndSwap(0, time.Now().UnixNano())
	}
	return false
}

// connectOK closes the breaker; it reports whether it was open.
func (s *server) connectOK() bool {
	s.fails.Store(0)
	return s.downSince.Swap(0) != 0
}

// serverConn is one authenticated connection to a server, hijacked from
// pgconn so the proxy owns its protocol stream. One goroutine, its reader
// (read), reads it from the dial to the end and hands each message to the
// connection's holder: the client it is attached to, the proxy itself
// (syncing settings, resetting), or nobody while it is idle in the pool.
type serverConn struct {
	pool *pool
	conn net.Conn
	fe   *pgproto3.Frontend
	// in is fe's reader: the reader reads the socket through its run.
	in     *drainReader
	pid    uint32
	key    []byte
	params map[string]string
	// applied are the tracked settings the proxy set (or saw a client
	// set) on the connection, by lower-case name.
	applied map[string]string
	stmts   *stmtCache
	inUse   atomic.Bool
	// sendMu is held while a client writes to the connection.
	sendMu sync.Mutex
	// lastUsed is when it went back to the pool.
	lastUsed time.Time

	// sink receives what the server sends; nil while idle, deadRef once
	// the reader stopped.
	sink atomic.Pointer[sinkRef]
	// closing is set when the proxy closes the connection on purpose,
	// its slot already given back.
	closing atomic.Bool
}

// close ends the connection: it is told to Terminate, and the reader,
// woken by a read deadline in the past, closes the socket. The reader may
// call it itself (a Close there would wait for its own read to end).
func (sc *serverConn) close() {
	sc.closing.Store(true)
	sc.sendMu.Lock()
	sc.fe.Send(&pgproto3.Terminate{})
	sc.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	sc.fe.Flush()
	sc.sendMu.Unlock()
	sc.abort()
}

// abort wakes the reader with a read deadline in the past: it stops, and
// the holder (if any) is told the connection was lost.
func (sc *serverConn) abort() { sc.conn.SetReadDeadline(time.Unix(1, 0)) }

func closeAll(scs []*serverConn) {
	for _, sc := range scs {
		sc.close()
	}
}

// poolKey names a pool in the admin API and metrics.
type poolKey struct {
	database, user, server string
}

// pool holds the connections of one client user to one server of one
// database: at most max open, the idle ones on a stack (the most recently
// used first, so the rest can idle out), and a FIFO of clients waiting for
// one.
type pool struct {
	key      poolKey
	srv      *server
	connCfg  *pgconn.Config
	max, min int
	p        *Proxy

	mu      sync.Mutex
	idle    []*serverConn
	open    int // idle + in use + being connected
	waiters list.List
	closed  bool

	// statistics for the admin API
	waiting    atomic.Int32
	acquired   atomic.Uint64
	timeouts   atomic.Uint64
	waitNanos  atomic.Uint64
	connectErr atomic.Uint64
}

// waiter is one client in the queue; ch receives a connection handed over
// by release, or nil to tell it a slot to connect is free.
type waiter struct {
	ch chan *serverConn
}

// acquire returns a server connection, waiting up to wait for a free one
// when the pool is full.
func (pl *pool) acquire(ctx context.Context, wait time.Duration) (*serverConn, error) {
	if pl.srv.down() {
		return nil, errServerDown
	}
	start := time.Now()
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		return nil, errPoolClosed
	}
	var stale []*serverConn
	lost := pl.srv.lostAt.Load()
	for n := len(pl.idle); n > 0; n = len(pl.idle) {
		sc := pl.idle[n-1]
		pl.idle = pl.idle[:n-1]
		if lost != 0 && sc.lastUsed.UnixNano() <= lost {
			stale = append(stale, sc)
			pl.open--
			continue
		}
		pl.mu.Unlock()
		closeAll(stale)
		pl.acquired.Add(1)
		return sc, nil
	}
	if stale != nil {
		defer closeAll(stale)
	}
	if pl.open < pl.max {
		pl.open++
		pl.mu.Unlock()
		return pl.connect(ctx)
	}
	w := &waiter{ch: make(chan *serverConn, 1)}
	el := pl.waiters.PushBack(w)
	pl.mu.Unlock()
	pl.waiting.Add(1)
	defer pl.waiting.Add(-1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case sc := <-w.ch:
		return pl.handed(ctx, sc, start)
	case <-t.C:
	case <-ctx.Done():
	}
	pl.mu.Lock()
	if el.Value != nil {
		pl.waiters.Remove(el)
		el.Value = nil
		pl.mu.Unlock()
		pl.timeouts.Add(1)
		pl.p.metrics.waitTimeouts.WithLabelValues(pl.key.database).Inc()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, errWaitTimeout
	}
	pl.mu.Unlock()
	// Handed over just as the wait ended: take it.
	return pl.handed(ctx, <-w.ch, start)
}

// handed finishes an acquire that waited: a connection, or (nil) a free
// slot to open one in.
func (pl *pool) handed(ctx context.Context, sc *serverConn, start time.Time) (*serverConn, error) {
	d := time.Since(start)
	pl.waitNanos.Add(uint64(d))
	pl.p.metrics.wait.WithLabelValues(pl.key.database).Observe(d.Seconds())
	if sc != nil {
		pl.acquired.Add(1)
		return sc, nil
	}
	pl.mu.Lock()
	closed := pl.closed
	pl.mu.Unlock()
	if closed {
		return nil, errPoolClosed
	}
	return pl.connect(ctx)
}

// connect opens a connection in a slot already counted in open.
func (pl *pool) connect(ctx context.Context) (*serverConn, error) {
	sc, err := pl.dial(ctx)
	if err != nil {
		pl.connectErr.Add(1)
		if pl.srv.connectFailed(pl.p.breakerFailures()) {
			pl.p.log.Warn("postgres server marked down", "server", pl.srv.addr, "database", pl.key.database, "error", err)
			pl.p.metrics.breaker.WithLabelValues(pl.srv.addr).Inc()
		}
		pl.discard(nil)
		return nil, err
	}
	if pl.srv.connectOK() {
		pl.p.log.Info("postgres server up again", "server", pl.srv.addr)
	}
	pl.acquired.Add(1)
	return sc, nil
}

// dial opens and authenticates one server connection with pgconn, then
// takes its socket over.
func (pl *pool) dial(ctx context.Context) (*serverConn, error) {
	cfg := pl.connCfg.Copy()
	ctx, cancel := context.WithTimeout(ctx, pl.p.connectTimeout())
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", pl.srv.addr, err)
	}
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	h, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, err
	}
	// The client's limit on message size does not apply to results: rows
	// come from the server the operator chose.
	fe, in := h.Frontend, newDrainReader(h.Conn)
	if fe.ReadBufferLen() == 0 {
		// pgconn's frontend reads through its background reader, stopped
		// now: the proxy's reads the socket itself.
		fe = pgproto3.NewFrontend(in, epoll.RawConn(h.Conn))
	} else {
		in.rc = nil
	}
	fe.SetMaxBodyLen(0)
	sc := &serverConn{
		pool: pl, conn: h.Conn, fe: fe, in: in, pid: h.PID, key: h.SecretKey,
		params: h.ParameterStatuses, stmts: newStmtCache(pl.p.preparedCap()),
	}
	pl.p.wg.Go(sc.read)
	return sc, nil
}

// release puts sc back: to the first waiter, else on the idle stack. sc
// must be idle (ReadyForQuery with status I) and carry no session state.
func (pl *pool) release(sc *serverConn) {
	if sc.dead() {
		// Lost between its last answer and now: its slot goes instead.
		pl.discard(sc)
		return
	}
	sc.lastUsed = time.Now()
	pl.mu.Lock()
	if pl.closed {
		pl.open--
		pl.mu.Unlock()
		sc.close()
		return
	}
	if w := pl.popWaiter(); w != nil {
		pl.mu.Unlock()
		w.ch <- sc
		return
	}
	pl.idle = append(pl.idle, sc)
	pl.mu.Unlock()
}

// discard closes sc (nil: a connect that failed) and frees its slot for a
// waiter.
func (pl *pool) discard(sc *serverConn) {
	if sc != nil {
		sc.close()
	}
	pl.mu.Lock()
	if w := pl.popWaiter(); w != nil && !pl.closed {
		// The slot passes to the waiter, who connects in it.
		pl.mu.Unlock()
		w.ch <- nil
		return
	}
	pl.open--
	pl.mu.Unlock()
}

// removeIdle takes sc, whose server went away while it was idle, off the
// idle stack. When sc is not there, a client took it meanwhile and learns
// of the loss when it holds it (serverConn.hold).
func (pl *pool) removeIdle(sc *serverConn) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for i, x := range pl.idle {
		if x == sc {
			pl.idle = append(pl.idle[:i], pl.idle[i+1:]...)
			pl.open--
			return
		}
	}
}

func (pl *pool) popWaiter() *waiter {
	for {
		el := pl.waiters.Front()
		if el == nil {
			return nil
		}
		pl.waiters.Remove(el)
		if w, ok := el.Value.(*waiter); ok && w != nil {
			el.Value = nil
			return w
		}
	}
}

// maintain closes connections idle longer than idleTimeout beyond min, and
// opens connections up to min.
func (pl *pool) maintain(ctx context.Context, idleTimeout time.Duration) {
	var expired []*serverConn
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		return
	}
	keep := pl.idle[:0]
	for _, sc := range pl.idle {
		// The stack's bottom has idled longest.
		if pl.open-len(expired) > pl.min && time.Since(sc.lastUsed) > idleTimeout {
			expired = append(expired, sc)
			continue
		}
		keep = append(keep, sc)
	}
	pl.idle = keep
	pl.open -= len(expired)
	need := 0
	if !pl.srv.down() && pl.open < pl.min {
		need = pl.min - pl.open
		pl.open += need
	}
	pl.mu.Unlock()
	for _, sc := range expired {
		sc.close()
	}
	for range need {
		sc, err := pl.connect(ctx)
		if err != nil {
			return
		}
		pl.release(sc)
	}
}

// close closes the idle connections now and the busy ones when released.
func (pl *pool) close() {
	pl.mu.Lock()
	pl.closed = true
	idle := pl.idle
	pl.idle = nil
	pl.open -= len(idle)
	for {
		w := pl.popWaiter()
		if w == nil {
			break
		}
		close(w.ch)
	}
	pl.mu.Unlock()
	for _, sc := range idle {
		sc.close()
	}
}

// PoolState is one pool in the admin API, like a row of PgBouncer's SHOW
// POOLS.
type PoolState struct {
	Database string `json:"database"`
	User     string `json:"user"`
	Server   string `json:"server"`
	Role     string `json:"role"`
	Down     bool   `json:"down"`
	// LagBytes is a replica's replay lag, -1 while unknown.
	LagBytes int64 `json:"lag_bytes,omitempty"`
	Max      int   `json:"max"`
	Min      int   `json:"min"`
	Open     int   `json:"open"`
	Idle     int   `json:"idle"`
	Active   int   `json:"active"`
	Waiting  int   `json:"waiting"`
	// Acquired counts server connections handed to clients.
	Acquired uint64 `json:"acquired"`
	// WaitTimeouts counts clients that gave up waiting.
	WaitTimeouts uint64 `json:"wait_timeouts"`
	// WaitSeconds is the total time clients waited in the queue.
	WaitSeconds float64 `json:"wait_seconds"`
	// ConnectErrors counts failed server connects.
	ConnectErrors uint64 `json:"connect_errors"`
}

func (pl *pool) state() PoolState {
	pl.mu.Lock()
	open, idle := pl.open, len(pl.idle)
	pl.mu.Unlock()
	role := "primary"
	if pl.srv.replica {
		role = "replica"
	}
	st := PoolState{
		Database: pl.key.database, User: pl.key.user, Server: pl.srv.addr, Role: role,
		Down: pl.srv.down(), Max: pl.max, Min: pl.min, Open: open, Idle: idle, Active: open - idle,
		Waiting: int(pl.waiting.Load()), Acquired: pl.acquired.Load(), WaitTimeouts: pl.timeouts.Load(),
		WaitSeconds: time.Duration(pl.waitNanos.Load()).Seconds(), ConnectErrors: pl.connectErr.Load(),
	}
	if pl.srv.replica {
		st.LagBytes = pl.srv.lag.Load()
	}
	return st
}
