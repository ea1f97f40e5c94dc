package pgproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/epoll"
)

// routeKey names one routing counter of a client.
type routeKey struct{ kind, target string }

// routed returns the client's counter of statements of kind sent to target.
func (c *client) routed(kind, target string) prometheus.Counter {
	k := routeKey{kind, target}
	ctr := c.routedC[k]
	if ctr == nil {
		ctr = c.p.metrics.routed.WithLabelValues(c.db.cfg.Name, kind, target)
		c.routedC[k] = ctr
	}
	return ctr
}

// client is one client connection. Two goroutines serve it while a server
// connection is attached: the client's (reads client messages, attaches a
// server connection when one is needed, writes to the server) and the
// server connection's reader, which hands it the server's messages
// (deliver: writes them to the client, and detaches the server connection
// at the ReadyForQuery that ends the client's last request, when the pool
// mode and session state allow). mu orders the two.
type client struct {
	p     *Proxy
	rt    *runtime
	db    *database
	pools *userPools
	user  string
	conn  net.Conn
	be    *pgproto3.Backend
	// in is be's reader: serve reads the socket through its run.
	in *drainReader
	// killed is set by hangUp.
	killed atomic.Bool
	pid    uint32
	key    []byte
	txMode bool
	// stmtMode: pool_mode statement (txMode is set too); transaction
	// blocks are refused.
	stmtMode bool
	split    *config.PostgresSplit
	// params are the client's tracked startup parameters, replayed on
	// each server connection it uses.
	params []param

	// The client's series, looked up once: a label lookup per statement
	// costs more than the counting.
	queriesC, txC prometheus.Counter
	routedC       map[routeKey]prometheus.Counter

	// wmu serialises writes to the client.
	wmu sync.Mutex

	// stmts are the client's named prepared statements (transaction
	// mode), by the client's names.
	stmts map[string]*stmt
	// unnamed is the class of the last unnamed Parse, for routing its Bind.
	unnamed Class
	// lastWrite is when the client last sent a statement that writes.
	lastWrite time.Time
	// skipUntilSync drops extended-protocol messages after an error the
	// proxy answered itself, as a server would (protocol section 55.2.3).
	skipUntilSync bool
	// deferred are named Parses received while no server connection was
	// attached, answered by the proxy at the Sync (or Flush) that follows
	// when nothing else needs a server, else sent before the next message
	// on the connection attached for it.
	deferred []*stmt
	// simpleQuery is set while a simple Query is forwarded: an error
	// answering it is followed by ReadyForQuery at once.
	simpleQuery bool

	mu sync.Mutex
	// failNext is answered to the next request: the server connection of
	// an open transaction was lost.
	failNext error
	sc       *serverConn
	// onReplica: sc is a replica's.
	onReplica bool
	// pending counts Sync and Query messages sent and not yet answered by
	// ReadyForQuery; unsynced is set when messages were sent after the
	// last of them.
	pending  int
	unsynced bool
	// sent and answered count Sync/Query messages and ReadyForQuery
	// answers over the client's life; completions are the Parse/Close
	// answers awaited, in order.
	sent, answered uint64
	completions    []completion
	txStatus       byte
	// pinned holds the session effects that keep sc attached.
	pinned Effect
	closed bool

	// ref is the client as the holder of its server connections.
	ref sinkRef
	// one carries forward's message to forwardWith without allocating.
	one [1]pgproto3.FrontendMessage
}

// pgError builds an ErrorResponse.
func pgError(severity, code, msg string) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{Severity: severity, SeverityUnlocalized: severity, Code: code, Message: msg}
}

// SQLSTATEs the proxy answers with (PostgreSQL appendix A).
const (
	codeProtocolViolation   = "08P01"
	codeConnectionFailure   = "08006"
	codeTooManyConnections  = "53300"
	codeInvalidPassword     = "28P01"
	codeInvalidCatalog      = "3D000"
	codeFeatureNotSupported = "0A000"
	codeCannotConnectNow    = "57P03"
	codeAdminShutdown       = "57P01"
)

// errCode maps an acquire error to its SQLSTATE.
func errCode(err error) string {
	switch {
	case errors.Is(err, errWaitTimeout):
		return codeTooManyConnections
	case errors.Is(err, errServerDown), errors.Is(err, errNoReplica):
		return codeCannotConnectNow
	case errors.Is(err, errPoolClosed):
		return codeAdminShutdown
	}
	return codeConnectionFailure
}

// errStatementMode answers a transaction block in pool_mode statement.
const errStatementMode = "transaction blocks are not allowed with postgres.pool_mode statement"

var errNoReplica = errors.New("no replica is usable (down or lagging) and read_write_split.fallback_to_primary is false")

// serveConn runs one client connection from its startup packet to its end.
func (p *Proxy) serveConn(conn net.Conn) {
	defer conn.Close()
	rt := p.rt.Load()
	in := newDrainReader(conn)
	be := pgproto3.NewBackend(in, epoll.RawConn(conn))
	be.SetMaxBodyLen(int(rt.cfg.MaxMessageBytes))
	conn.SetDeadline(time.Now().Add(rt.cfg.Timeouts.ClientLogin.D()))
	fatal := func(code, msg string) {
		be.Send(pgError("FATAL", code, msg))
		be.Flush()
	}
	var startup *pgproto3.StartupMessage
	encrypted := false
	for startup == nil {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			p.metrics.protocolErrors.Inc()
			return
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if rt.tls == nil || encrypted {
				// No TLS here: the client goes on in plain text or
				// gives up, as with a server without ssl.
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return
			}
			tc := tls.Server(conn, rt.tls)
			if err := tc.Handshake(); err != nil {
				p.log.Debug("postgres client TLS handshake", "error", err)
				return
			}
			defer tc.Close()
			conn, encrypted = tc, true
			in = newDrainReader(conn)
			be = pgproto3.NewBackend(in, epoll.RawConn(conn))
			be.SetMaxBodyLen(int(rt.cfg.MaxMessageBytes))
		case *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return
			}
		case *pgproto3.CancelRequest:
			p.cancelRequest(m.ProcessID, m.SecretKey)
			return
		case *pgproto3.StartupMessage:
			startup = m
		}
	}
	if n := p.nclient.Add(1); n > int64(rt.cfg.MaxClientConn) {
		p.nclient.Add(-1)
		fatal(codeTooManyConnections, "sorry, too many clients already (postgres.max_client_conn)")
		return
	}
	defer p.nclient.Add(-1)
	user := startup.Parameters["user"]
	dbName := startup.Parameters["database"]
	if dbName == "" {
		dbName = user
	}
	c := &client{p: p, rt: rt, user: user, conn: conn, be: be, in: in, txMode: rt.cfg.PoolMode != config.PostgresPoolSession, stmtMode: rt.cfg.PoolMode == config.PostgresPoolStatement, txStatus: 'I'}
	// The database is known before the password is checked (auth_query
	// runs on its primary) but an unknown one is told only after.
	c.db = rt.dbs[dbName]
	c.ref.s = c
	if err := c.authenticate(); err != nil {
		p.metrics.authFailures.Inc()
		if errors.Is(err, errLookupFailed) {
			fatal(codeConnectionFailure, fmt.Sprintf("cannot check the password of user %q: %v", user, err))
			return
		}
		if !errors.Is(err, errAuthFailed) && !errors.Is(err, errUnknownUser) {
			return
		}
		fatal(codeInvalidPassword, fmt.Sprintf("password authentication failed for user %q", user))
		return
	}
	if c.db == nil {
		fatal(codeInvalidCatalog, fmt.Sprintf("database %q does not exist on this proxy (postgres.databases)", dbName))
		return
	}
	c.split = c.db.cfg.ReadWriteSplit
	c.pools = p.poolsFor(rt, c.db, user)
	c.stmts = make(map[string]*stmt)
	c.queriesC = p.metrics.queries.WithLabelValues(c.db.cfg.Name)
	c.txC = p.metrics.transactions.WithLabelValues(c.db.cfg.Name)
	c.routedC = make(map[routeKey]prometheus.Counter)
	// The parameters the client sees are the primary's, from a server
	// connection: open one now, so a login against an unreachable server
	// fails with a clear error rather than later.
	c.params = trackedParams(startup.Parameters, rt.tracked)
	sc, err := c.pools.primary.acquire(p.ctx, rt.cfg.Timeouts.QueryWait.D())
	if err != nil {
		fatal(errCode(err), fmt.Sprintf("cannot reach server %s of database %q: %v", c.pools.primary.srv.addr, dbName, err))
		return
	}
	// The client's settings are checked by the server now, as a direct
	// login would be, and the parameters reported are the ones it asked for.
	if err := c.syncParams(sc); err != nil {
		c.pools.primary.discard(sc)
		var pe *paramError
		if errors.As(err, &pe) {
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: pe.resp.Code, Message: pe.resp.Message, Detail: pe.resp.Detail, Hint: pe.resp.Hint})
			be.Flush()
			return
		}
		fatal(codeConnectionFailure, fmt.Sprintf("server %s of database %q: %v", c.pools.primary.srv.addr, dbName, err))
		return
	}
	params := maps.Clone(sc.params)
	p.register(c)
	defer p.unregister(c.pid)
	if !c.txMode {
		// Session mode: this connection is the client's until it leaves.
		c.sc = sc
		if !sc.hold(&c.ref) {
			c.pools.primary.discard(sc)
			fatal(codeConnectionFailure, fmt.Sprintf("server %s of database %q: %v", c.pools.primary.srv.addr, dbName, errLostBeforeUse))
			return
		}
	} else {
		c.pools.primary.release(sc)
	}
	be.Send(&pgproto3.AuthenticationOk{})
	for k, v := range params {
		be.Send(&pgproto3.ParameterStatus{Name: k, Value: v})
	}
	be.Send(&pgproto3.BackendKeyData{ProcessID: c.pid, SecretKey: c.key})
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		c.close()
		return
	}
	conn.SetDeadline(time.Time{})
	if c.killed.Load() {
		// hangUp ran before the login's deadline was cleared.
		c.close()
		return
	}
	p.metrics.clients.Inc()
	defer p.metrics.clients.Dec()
	c.serve()
}

var errUnknownUser = errors.New("unknown user")

// authenticate checks the client's password as auth_type says.
func (c *client) authenticate() error {
	cfg := c.rt.cfg
	ua := c.rt.users[c.user]
	if cfg.AuthType == config.PostgresAuthTrust {
		return nil
	}
	if ua == nil && cfg.AuthUser != "" && c.db != nil {
		found, err := c.p.lookupUser(c.p.ctx, c.rt, c.db, c.user)
		if err != nil {
			return err
		}
		ua = found
	}
	if ua == nil {
		// Run the exchange anyway so an unknown user looks like a wrong
		// password.
		dummy, _ := newUserAuth(c.user, "x", cfg.AuthType)
		if cfg.AuthType == config.PostgresAuthMD5 {
			authMD5(c, c.user, dummy.password)
		} else {
			authSCRAM(c, dummy.scram)
		}
		return errUnknownUser
	}
	if cfg.AuthType == config.PostgresAuthMD5 {
		return authMD5(c, c.user, ua.password)
	}
	return authSCRAM(c, ua.scram)
}

// The authConn methods, used during authentication only.
func (c *client) send(m pgproto3.BackendMessage) error {
	c.be.Send(m)
	return c.be.Flush()
}
func (c *client) receive() (pgproto3.FrontendMessage, error) { return c.be.Receive() }
func (c *client) setAuthType(t uint32)                       { c.be.SetAuthType(t) }

// write sends messages to the client; flush says whether to write them out
// now.
func (c *client) write(flush bool, msgs ...pgproto3.BackendMessage) {
	c.wmu.Lock()
	for _, m := range msgs {
		c.be.Send(m)
	}
	if flush {
		c.be.Flush()
	}
	c.wmu.Unlock()
}

// serve reads the client's messages until it leaves.
func (c *client) serve() {
	defer c.close()
	var rerr error
	err := c.in.run(func() bool {
		c.p.busy.woke()
		for {
			msg, err := c.be.Receive()
			if errors.Is(err, errDrained) {
				return false
			}
			if err != nil {
				rerr = err
				return true
			}
			if _, ok := msg.(*pgproto3.Terminate); ok {
				return true
			}
			if err := c.handle(msg); err != nil {
				return true
			}
		}
	})
	if rerr == nil {
		rerr = err
	}
	if rerr == nil || c.killed.Load() {
		return
	}
	var tooLong *pgproto3.ExceededMaxBodyLenErr
	if errors.As(rerr, &tooLong) {
		c.p.metrics.protocolErrors.Inc()
		c.write(true, pgError("FATAL", codeProtocolViolation, fmt.Sprintf("message of %d bytes exceeds postgres.max_message_bytes (%d)", tooLong.ActualBodyLen, tooLong.MaxExpectedBodyLen)))
	} else if !errors.Is(rerr, net.ErrClosed) && !isEOF(rerr) {
		c.p.metrics.protocolErrors.Inc()
		c.write(true, pgError("FATAL", codeProtocolViolation, "invalid message: "+rerr.Error()))
	}
}

// hangUp ends the client connection from another goroutine than serve's.
// A TCP connection is not closed here: Close would wait for serve's read
// callback (drainReader.run) to return, which may be writing to the very
// server whose reader calls hangUp. A deadline in the past wakes serve,
// which closes the connection on its way out, and fails its writes.
func (c *client) hangUp() {
	c.killed.Store(true)
	if c.in.rc == nil {
		c.conn.Close()
		return
	}
	c.conn.SetDeadline(time.Unix(1, 0))
}

func isEOF(err error) bool {
	return err != nil && (err.Error() == "EOF" || err.Error() == "unexpected EOF" || errors.Is(err, net.ErrClosed))
}

// handle forwards one client message, attaching a server connection first
// when none is.
func (c *client) handle(msg pgproto3.FrontendMessage) error {
	if c.skipUntilSync {
		if _, ok := msg.(*pgproto3.Sync); ok {
			c.skipUntilSync = false
			c.write(true, &pgproto3.ReadyForQuery{TxStatus: 'I'})
		}
		return nil
	}
	switch m := msg.(type) {
	case *pgproto3.Query:
		return c.handleQuery(m)
	case *pgproto3.Parse:
		return c.handleParse(m)
	case *pgproto3.Bind:
		return c.handleStatementRef(m, m.PreparedStatement, func(name string) { m.PreparedStatement = name })
	case *pgproto3.Describe:
		if m.ObjectType == 'S' {
			return c.handleStatementRef(m, m.Name, func(name string) { m.Name = name })
		}
		return c.forward(m, Class{}, false, nil)
	case *pgproto3.Close:
		if m.ObjectType == 'S' && m.Name != "" && c.txMode {
			// The statement stays prepared on the servers for other
			// clients; the client's name is forgotten, and a no-op
			// Close answers it in order.
			delete(c.stmts, m.Name)
			m.Name = noSuchStatement
		}
		return c.forward(m, Class{}, false, []completion{{action: actForward}})
	case *pgproto3.Sync:
		c.mu.Lock()
		idle := c.sc == nil
		c.mu.Unlock()
		if idle {
			// Nothing in flight and no server attached: the answer
			// needs no server.
			if err := c.takeFailure(true); err != nil {
				c.skipUntilSync = false
				c.deferred = c.deferred[:0]
			}
			c.answerDeferred(true, &pgproto3.ReadyForQuery{TxStatus: 'I'})
			return nil
		}
		return c.forward(m, Class{}, false, nil)
	case *pgproto3.Flush:
		c.mu.Lock()
		idle := c.sc == nil
		c.mu.Unlock()
		if idle {
			if len(c.deferred) > 0 {
				c.answerDeferred(true)
			}
			return nil
		}
		return c.forward(m, Class{}, false, nil)
	default:
		// Execute, CopyData, CopyDone, CopyFail, FunctionCall.
		return c.forward(m, Class{}, false, nil)
	}
}

// takeFailure answers a pending lost-transaction error, if any. extended
// says the request is extended-protocol (the error is followed by skipping
// to Sync rather than by ReadyForQuery).
func (c *client) takeFailure(extended bool) error {
	c.mu.Lock()
	err := c.failNext
	c.failNext = nil
	c.mu.Unlock()
	if err == nil {
		return nil
	}
	c.write(!extended, pgError("ERROR", codeConnectionFailure, err.Error()))
	if extended {
		c.skipUntilSync = true
	} else {
		c.write(true, &pgproto3.ReadyForQuery{TxStatus: 'I'})
	}
	return err
}

func (c *client) handleQuery(m *pgproto3.Query) error {
	if c.takeFailure(false) != nil {
		return nil
	}
	cls := Classify(m.String, c.volatile())
	if eff := cls.Effects &^ EffectDiscard; eff != 0 && c.txMode {
		if c.rt.cfg.SessionState == config.PostgresStateReject {
			c.mu.Lock()
			quiet := c.pending == 0 && !c.unsynced
			status := c.txStatus
			c.mu.Unlock()
			if quiet {
				c.p.metrics.sessionState.WithLabelValues(c.db.cfg.Name, "rejected").Inc()
				c.write(true, pgError("ERROR", codeFeatureNotSupported,
					fmt.Sprintf("%s keeps state on the server connection, which transaction pooling shares (postgres.session_state: reject)", eff)),
					&pgproto3.ReadyForQuery{TxStatus: status})
				return nil
			}
		}
	}
	if c.stmtMode && cls.Begin {
		c.mu.Lock()
		quiet := c.pending == 0 && !c.unsynced
		c.mu.Unlock()
		if quiet {
			c.write(true, pgError("ERROR", codeFeatureNotSupported, errStatementMode), &pgproto3.ReadyForQuery{TxStatus: 'I'})
			return nil
		}
	}
	c.simpleQuery = true
	defer func() { c.simpleQuery = false }()
	return c.forward(m, cls, true, nil)
}

func (c *client) handleParse(m *pgproto3.Parse) error {
	cls := Classify(m.Query, c.volatile())
	if m.Name == "" || !c.txMode {
		c.unnamed = cls
		return c.forward(m, cls, true, []completion{{action: actForward}})
	}
	st := newStmt(m, cls)
	c.stmts[m.Name] = st
	c.mu.Lock()
	idle := c.sc == nil && c.failNext == nil
	c.mu.Unlock()
	if idle {
		// A Parse alone (libpq's PQprepare: Parse, Sync) needs no server
		// connection: holding none, a client with several statements to
		// prepare cannot wait for one while another client of the same
		// thread holds it. The statement is checked by the server when it
		// is first used.
		c.deferred = append(c.deferred, st)
		return nil
	}
	return c.forwardWith(cls, true, func(sc *serverConn) ([]pgproto3.FrontendMessage, []completion) {
		return c.prepareOn(sc, st, actForward)
	})
}

// prepareOn returns what prepares st on sc for a client's Parse: the
// Parse itself (its answer handled as act), or, when sc has it already, a
// no-op Close whose answer becomes the client's ParseComplete.
func (c *client) prepareOn(sc *serverConn, st *stmt, act uint8) ([]pgproto3.FrontendMessage, []completion) {
	if sc.stmts.has(st.serverName) {
		return []pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: 'S', Name: noSuchStatement}}, []completion{{action: actAsParse}}
	}
	msgs, comps := c.evictFor(sc)
	sc.stmts.add(st.serverName)
	return append(msgs, st.parse()), append(comps, completion{action: act, prepared: st.serverName})
}

// answerDeferred answers the deferred Parses with ParseComplete, when no
// server connection is needed after all.
func (c *client) answerDeferred(flush bool, more ...pgproto3.BackendMessage) {
	msgs := make([]pgproto3.BackendMessage, 0, len(c.deferred)+len(more))
	for range c.deferred {
		msgs = append(msgs, &pgproto3.ParseComplete{})
	}
	c.deferred = c.deferred[:0]
	c.write(flush, append(msgs, more...)...)
}

// evictFor makes room for one more statement on sc: it returns a Close of
// the least recently used one when sc is full.
func (c *client) evictFor(sc *serverConn) ([]pgproto3.FrontendMessage, []completion) {
	if sc.stmts.len() < sc.stmts.max {
		return nil, nil
	}
	victim := sc.stmts.order.Back().Value.(string)
	sc.stmts.remove(victim)
	c.p.metrics.evictions.Inc()
	return []pgproto3.FrontendMessage{&pgproto3.Close{ObjectType: 'S', Name: victim}}, []completion{{action: actSwallow}}
}

// handleStatementRef forwards a Bind or a Describe of a statement: a named
// one is renamed to its server name and prepared first on the server
// connection if it is not there.
func (c *client) handleStatementRef(m pgproto3.FrontendMessage, name string, rename func(string)) error {
	if !c.txMode {
		return c.forward(m, Class{}, false, nil)
	}
	if name == "" {
		return c.forward(m, c.unnamed, true, nil)
	}
	st := c.stmts[name]
	if st == nil {
		// The server answers "prepared statement does not exist".
		return c.forward(m, Class{}, false, nil)
	}
	return c.forwardWith(st.class, true, func(sc *serverConn) ([]pgproto3.FrontendMessage, []completion) {
		rename(st.serverName)
		if sc.stmts.has(st.serverName) {
			return []pgproto3.FrontendMessage{m}, nil
		}
		msgs, comps := c.evictFor(sc)
		sc.stmts.add(st.serverName)
		return append(msgs, st.parse(), m), append(comps, completion{action: actSwallow, prepared: st.serverName})
	})
}

func (c *client) volatile() map[string]bool { return c.db.volatile }

// forward sends m (with comps awaited for it) on the attached server
// connection, attaching one routed by cls (when known) first.
func (c *client) forward(m pgproto3.FrontendMessage, cls Class, known bool, comps []completion) error {
	return c.forwardWith(cls, known, func(*serverConn) ([]pgproto3.FrontendMessage, []completion) {
		// forwardWith is done with the slice before it returns.
		c.one[0] = m
		return c.one[:], comps
	})
}

// forwardWith attaches a server connection if none is, asks build for the
// messages to send on it, records what they await, and sends them.
func (c *client) forwardWith(cls Class, known bool, build func(*serverConn) ([]pgproto3.FrontendMessage, []completion)) error {
	if known && cls.writes() {
		c.lastWrite = time.Now()
	}
	c.mu.Lock()
	sc := c.sc
	if sc == nil {
		c.mu.Unlock()
		var err error
		// A pooled connection whose server had gone can be lost between
		// attaching and sending: nothing was sent on it, so another is
		// taken, a few times at most.
		for try := 0; ; try++ {
			sc, err = c.attach(cls, known)
			if err != nil {
				break
			}
			c.mu.Lock()
			if c.sc == sc {
				break
			}
			c.mu.Unlock()
			if try == 3 {
				err = errors.New("server connection lost before use")
				break
			}
		}
		if err != nil {
			// The deferred Parses fail with the request that needed a
			// server: the client gets the error, then ReadyForQuery.
			c.deferred = c.deferred[:0]
			c.p.metrics.acquireErrors.WithLabelValues(c.db.cfg.Name, errCode(err)).Inc()
			isQuery := known && c.simpleQuery
			msg := fmt.Sprintf("no server connection for database %q: %v", c.db.cfg.Name, err)
			if isQuery {
				c.write(true, pgError("ERROR", errCode(err), msg), &pgproto3.ReadyForQuery{TxStatus: 'I'})
			} else {
				c.write(false, pgError("ERROR", errCode(err), msg))
				c.skipUntilSync = true
			}
			return nil
		}
	}
	// From reading c.sc to counting what is sent, mu is held: the reader
	// must not release the connection in between.
	var msgs []pgproto3.FrontendMessage
	var comps []completion
	for _, st := range c.deferred {
		m, cp := c.prepareOn(sc, st, actForward)
		msgs, comps = append(msgs, m...), append(comps, cp...)
	}
	c.deferred = c.deferred[:0]
	m, cp := build(sc)
	if msgs == nil {
		// The common case, nothing deferred: build's slices as they are.
		msgs, comps = m, cp
	} else {
		msgs, comps = append(msgs, m...), append(comps, cp...)
	}
	flush := false
	for _, m := range msgs {
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query:
			c.setPending(c.pending + 1)
			c.sent++
			c.unsynced = false
			flush = true
		case *pgproto3.Flush, *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
			c.unsynced = true
			flush = true
		default:
			c.unsynced = true
		}
	}
	for _, cp := range comps {
		cp.seq = c.sent
		c.completions = append(c.completions, cp)
	}
	if known && cls.Effects&^EffectDiscard != 0 && c.txMode {
		if c.pinned == 0 {
			c.p.metrics.sessionState.WithLabelValues(c.db.cfg.Name, "pinned").Inc()
		}
		c.pinned |= cls.Effects &^ EffectDiscard
	}
	if known && cls.Effects&EffectDiscard != 0 {
		// The server forgets its prepared statements: so must the cache.
		sc.stmts.clear()
	}
	target := "primary"
	if c.onReplica {
		target = "replica"
	}
	// sendMu is taken before mu is let go: the reader waits for it
	// before handing the connection to another client, so the bytes
	// below are written (and the buffer reset) first.
	sc.sendMu.Lock()
	defer sc.sendMu.Unlock()
	c.mu.Unlock()
	if known {
		c.routed(cls.Kind, target).Inc()
	}
	for _, m := range msgs {
		switch m.(type) {
		case *pgproto3.Query, *pgproto3.Execute:
			c.queriesC.Inc()
		}
		sc.fe.Send(m)
	}
	if flush {
		if err := sc.fe.Flush(); err != nil {
			// The reader sees the broken connection and tells the client.
			return nil
		}
	}
	return nil
}

// attach takes a server connection for the client's next request: a
// replica's for a read outside the read-your-writes window, else the
// primary's.
func (c *client) attach(cls Class, known bool) (*serverConn, error) {
	wait := c.rt.cfg.Timeouts.QueryWait.D()
	ctx := c.p.ctx
	if s := c.split; s != nil && known && (cls.Read || cls.Begin && cls.ReadOnly) && time.Since(c.lastWrite) >= s.ReadYourWrites.D() {
		if sc, err := c.attachReplica(ctx, wait); err == nil {
			return sc, nil
		} else if !*s.FallbackToPrimary {
			return nil, err
		}
		c.p.metrics.fallbacks.WithLabelValues(c.db.cfg.Name).Inc()
	}
	sc, err := c.pools.primary.acquire(ctx, wait)
	if err != nil {
		return nil, err
	}
	if err := c.syncParams(sc); err != nil {
		c.pools.primary.discard(sc)
		return nil, err
	}
	c.setAttached(sc, false)
	return sc, nil
}

func (c *client) attachReplica(ctx context.Context, wait time.Duration) (*serverConn, error) {
	n := len(c.pools.replicas)
	start := int(c.db.rr.Add(1))
	maxLag := int64(c.split.MaxReplicaLag)
	var lastErr error = errNoReplica
	for i := range n {
		pl := c.pools.replicas[(start+i)%n]
		if pl.srv.down() {
			continue
		}
		if lag := pl.srv.lag.Load(); lag < 0 || lag > maxLag {
			continue
		}
		sc, err := pl.acquire(ctx, wait)
		if err != nil {
			lastErr = err
			continue
		}
		if err := c.syncParams(sc); err != nil {
			pl.discard(sc)
			lastErr = err
			continue
		}
		c.setAttached(sc, true)
		return sc, nil
	}
	return nil, lastErr
}

func (c *client) setAttached(sc *serverConn, replica bool) {
	c.mu.Lock()
	c.sc = sc
	c.onReplica = replica
	c.setPending(0)
	c.unsynced = false
	c.txStatus = 'I'
	c.mu.Unlock()
	if !sc.hold(&c.ref) {
		c.serverLost(sc, errLostBeforeUse)
	}
}

// setPending sets c.pending (mu held) and keeps the proxy's count of
// requests in flight (busy_poll) in step with it.
func (c *client) setPending(n int) {
	c.p.busy.inflight.Add(int64(max(n, 0) - max(c.pending, 0)))
	c.pending = n
}

// deliver hands the client one message of its server connection, on the
// connection's reader; at the end of the client's last request the
// connection is let go.
func (c *client) deliver(sc *serverConn, msg pgproto3.BackendMessage) {
	release, dirty := c.relayOne(sc, msg)
	if !release {
		return
	}
	sc.sink.Store(nil)
	// Wait for a send in progress to finish with the buffer.
	sc.sendMu.Lock()
	sc.sendMu.Unlock()
	c.release(sc, dirty)
}

// lost is told, on the reader, that the client's server connection failed.
func (c *client) lost(sc *serverConn, err error) { c.serverLost(sc, err) }

// relayOne handles one server message: it reports whether the server
// connection is to be released now, and reset first (dirty).
func (c *client) relayOne(sc *serverConn, msg pgproto3.BackendMessage) (release, dirty bool) {

	flush := sc.fe.ReadBufferLen() == 0
	switch m := msg.(type) {
	case *pgproto3.ParseComplete, *pgproto3.CloseComplete:
		c.mu.Lock()
		act := actForward
		if len(c.completions) > 0 {
			cp := c.completions[0]
			c.completions = c.completions[1:]
			act = cp.action
		}
		closed := c.closed
		c.mu.Unlock()
		switch {
		case closed || act == actSwallow:
			if flush && !closed {
				c.write(true)
			}
			return false, false
		case act == actAsParse:
			c.write(flush, &pgproto3.ParseComplete{})
			return false, false
		}
	case *pgproto3.ParameterStatus:
		sc.noteReported(m, c.rt.tracked)
	case *pgproto3.ReadyForQuery:
		c.mu.Lock()
		c.setPending(c.pending - 1)
		seg := c.answered
		c.answered++
		// Parse and Close answers of the finished segment that never
		// came (an error skipped them) are forgotten; so are the
		// statements those Parses would have prepared.
		keep := c.completions[:0]
		for _, cp := range c.completions {
			if cp.seq <= seg {
				if cp.prepared != "" {
					sc.stmts.remove(cp.prepared)
				}
				continue
			}
			keep = append(keep, cp)
		}
		c.completions = keep
		c.txStatus = m.TxStatus
		closed := c.closed
		eligible := c.pending <= 0 && !c.unsynced && m.TxStatus == 'I' && (closed || c.txMode && c.pinned == 0)
		c.mu.Unlock()
		if m.TxStatus == 'I' {
			c.txC.Inc()
		}
		if c.stmtMode && m.TxStatus != 'I' && !closed {
			// A transaction block got past the check (extended
			// protocol, several statements in one Query): the client
			// is told and closed, which rolls the block back.
			c.write(true, pgError("FATAL", codeFeatureNotSupported, errStatementMode))
			c.hangUp()
			return false, false
		}
		if !closed {
			c.write(true, m)
		}
		if !eligible {
			return false, false
		}
		// The connection is let go only after the client has its
		// ReadyForQuery, so whatever the client sends next (and
		// what the proxy answers itself when nothing is attached)
		// comes after it; unless the client already sent more.
		c.mu.Lock()
		release = c.pending <= 0 && !c.unsynced && (c.closed || c.txMode && c.pinned == 0)
		dirty = c.pinned != 0 || !c.txMode
		if release {
			c.sc = nil
			c.setPending(0)
		}
		c.mu.Unlock()
		return release, dirty
	}
	// A Parse answer to forward, or anything else.
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if !closed {
		c.write(flush, msg)
	}
	return false, false
}

// release returns sc to its pool, reset first when it carries session
// state.
func (c *client) release(sc *serverConn, dirty bool) {
	if dirty {
		sc.startReset(c.rt.cfg.ResetQuery, c.rt.cfg.Timeouts.Connect.D())
		return
	}
	sc.pool.release(sc)
}

// serverLost handles a server connection that failed under the client: it
// is closed, and the client is told, per request in flight, that it was
// lost (its transaction, if any, is gone with it).
func (c *client) serverLost(sc *serverConn, err error) {
	c.mu.Lock()
	if c.sc == sc {
		c.sc = nil
	}
	n := c.pending
	inTx := c.txStatus != 'I'
	pinned := c.pinned != 0
	closed := c.closed
	c.unsynced, c.completions, c.txStatus = false, nil, 'I'
	c.setPending(0)
	c.mu.Unlock()
	if brokenConn(err) {
		sc.pool.srv.lostAt.Store(time.Now().UnixNano())
	}
	// A send in progress finishes (or fails) before the connection goes.
	sc.sendMu.Lock()
	sc.sendMu.Unlock()
	sc.pool.discard(sc)
	c.p.metrics.serverLost.WithLabelValues(sc.pool.srv.addr).Inc()
	if closed {
		return
	}
	msg := fmt.Sprintf("server connection to %s lost: %v; the transaction, if any, was rolled back", sc.pool.srv.addr, err)
	if pinned || !c.txMode {
		// Session state (or the session itself) was on that connection:
		// the client must start again.
		c.write(true, pgError("FATAL", codeConnectionFailure, msg))
		c.hangUp()
		return
	}
	if n > 0 {
		msgs := []pgproto3.BackendMessage{pgError("ERROR", codeConnectionFailure, msg)}
		for range n {
			msgs = append(msgs, &pgproto3.ReadyForQuery{TxStatus: 'I'})
		}
		c.write(true, msgs...)
		return
	}
	if inTx {
		// Told at the next request, which must not run outside the
		// transaction the client believes open.
		c.mu.Lock()
		c.failNext = errors.New(msg)
		c.mu.Unlock()
	}
}

// brokenConn reports whether err is the socket failing (the server went
// away), not a message the proxy could not accept.
func brokenConn(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.As(err, &ne)
}

// close ends the client: a server connection still attached is rolled
// back (and reset, when it carries session state) by its reader, then
// returned to its pool.
func (c *client) close() {
	c.mu.Lock()
	c.closed = true
	sc := c.sc
	if sc != nil {
		// Counted before the lock is let go, so the reader cannot hand
		// the connection to another client before these answers.
		c.setPending(c.pending + 2)
		c.sent += 2
		c.unsynced = false
	}
	c.mu.Unlock()
	c.conn.Close()
	if sc == nil {
		return
	}
	// CopyFail ends a COPY FROM STDIN in progress (ignored otherwise),
	// Sync ends an extended-protocol error state, ROLLBACK the
	// transaction; the reader releases the connection at the last answer.
	sc.sendMu.Lock()
	defer sc.sendMu.Unlock()
	sc.fe.Send(&pgproto3.CopyFail{Message: "client disconnected"})
	sc.fe.Send(&pgproto3.Sync{})
	sc.fe.Send(&pgproto3.Query{String: "ROLLBACK"})
	if err := sc.fe.Flush(); err != nil {
		sc.abort()
	}
}
