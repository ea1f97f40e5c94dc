// Package pgproxy is penstock's PostgreSQL-aware proxy: a drop-in
// replacement for PgBouncer that pools server connections per database and
// user (session or transaction pooling), keeps clients' named prepared
// statements working across server connections, detects session state that
// cannot be pooled, splits read-only statements to replicas, and marks
// failing servers down behind a breaker.
//
// The wire protocol on both sides is jackc/pgx's pgproto3; server
// connections are opened and authenticated by pgconn and then taken over
// (Hijack). The proxy is one object the server starts and stops (New,
// Start, Reload, Close); its configuration is the postgres section of the
// config file (config.Postgres). See docs/postgres.md.
package pgproxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/config"
)

// Proxy is a running PostgreSQL proxy.
type Proxy struct {
	log     *slog.Logger
	metrics *metrics

	rt atomic.Pointer[runtime]

	mu      sync.Mutex
	ln      net.Listener
	addr    string
	clients map[uint32]*client // by the backend pid given to the client
	nextPID uint32
	nclient atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	busy *busyPoller
}

// runtime is one compiled postgres section.
type runtime struct {
	cfg *config.Postgres
	// tls is offered to clients; nil without postgres.tls.
	tls   *tls.Config
	users map[string]*userAuth
	dbs   map[string]*database
	// tracked are postgres.track_parameters in lower case.
	tracked map[string]bool
}

// database is one configured database: its servers and its pools, created
// per client user on first use.
type database struct {
	cfg      config.PostgresDatabase
	primary  *server
	replicas []*server
	volatile map[string]bool
	rr       atomic.Uint32

	mu    sync.Mutex
	pools map[string]*userPools
	// done stops the database's monitor.
	done chan struct{}
	// auth runs postgres.auth_query.
	auth authLookup
}

// userPools are one client user's pools on each server of a database.
type userPools struct {
	primary  *pool
	replicas []*pool
}

// New builds a proxy for cfg (defaults applied, validated). Metrics go to
// reg (nil: none).
func New(cfg *config.Postgres, log *slog.Logger, reg prometheus.Registerer) (*Proxy, error) {
	if log == nil {
		log = slog.Default()
	}
	p := &Proxy{log: log, metrics: newMetrics(reg), clients: make(map[uint32]*client)}
	p.busy = newBusyPoller(p)
	p.ctx, p.cancel = context.WithCancel(context.Background())
	rt, err := p.compile(cfg, nil)
	if err != nil {
		return nil, err
	}
	p.rt.Store(rt)
	p.metrics.bind(p)
	return p, nil
}

// compile turns cfg into a runtime; databases unchanged from prev keep
// their servers and pools.
func (p *Proxy) compile(cfg *config.Postgres, prev *runtime) (*runtime, error) {
	rt := &runtime{cfg: cfg, users: make(map[string]*userAuth), dbs: make(map[string]*database), tracked: make(map[string]bool)}
	for _, name := range cfg.TrackParameters {
		rt.tracked[strings.ToLower(name)] = true
	}
	if t := cfg.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("postgres.tls: %w", err)
		}
		rt.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	for _, u := range cfg.Users {
		ua, err := newUserAuth(u.Name, u.Password, cfg.AuthType)
		if err != nil {
			return nil, err
		}
		rt.users[u.Name] = ua
	}
	for _, dc := range cfg.Databases {
		if prev != nil && prev.cfg.PoolMode == cfg.PoolMode && prev.cfg.PreparedStatements == cfg.PreparedStatements && prev.cfg.AuthUser == cfg.AuthUser {
			if old := prev.dbs[dc.Name]; old != nil && reflect.DeepEqual(old.cfg, dc) {
				rt.dbs[dc.Name] = old
				continue
			}
		}
		d := &database{cfg: dc, primary: newServer(dc.Primary, false), pools: make(map[string]*userPools), done: make(chan struct{})}
		for _, r := range dc.Replicas {
			d.replicas = append(d.replicas, newServer(r, true))
		}
		if s := dc.ReadWriteSplit; s != nil {
			d.volatile = make(map[string]bool)
			for _, f := range s.VolatileFunctions {
				d.volatile[strings.ToLower(f)] = true
			}
		}
		rt.dbs[dc.Name] = d
	}
	return rt, nil
}

func newServer(addr string, replica bool) *server {
	s := &server{addr: addr, replica: replica}
	s.lag.Store(-1)
	return s
}

// Start binds the listener and serves clients until Close.
func (p *Proxy) Start(ctx context.Context) error {
	rt := p.rt.Load()
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", rt.cfg.Listen)
	if err != nil {
		return fmt.Errorf("postgres.listen: %w", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, rt.cfg.Listen
	p.mu.Unlock()
	p.wg.Go(func() { p.accept(ln) })
	p.wg.Go(func() { p.busy.run(p.ctx.Done()) })
	for _, d := range rt.dbs {
		p.startMonitor(d)
	}
	p.log.Info("postgres proxy listening", "address", ln.Addr().String(), "pool_mode", rt.cfg.PoolMode, "databases", len(rt.dbs))
	return nil
}

// Addr is the bound listener address (nil before Start).
func (p *Proxy) Addr() net.Addr {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return nil
	}
	return p.ln.Addr()
}

func (p *Proxy) accept(ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("postgres accept", "error", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.wg.Go(func() { p.serveConn(conn) })
	}
}

// Reload applies a new postgres section: unchanged databases keep their
// pools; changed or removed ones are closed (their busy connections when
// released). A new listen address is bound before the old one is closed.
// Clients already connected keep the settings they logged in with.
func (p *Proxy) Reload(cfg *config.Postgres) error {
	old := p.rt.Load()
	rt, err := p.compile(cfg, old)
	if err != nil {
		return err
	}
	p.mu.Lock()
	if p.ln != nil && cfg.Listen != p.addr {
		var lc net.ListenConfig
		ln, err := lc.Listen(p.ctx, "tcp", cfg.Listen)
		if err != nil {
			p.mu.Unlock()
			return fmt.Errorf("postgres.listen: %w", err)
		}
		p.ln.Close()
		p.ln, p.addr = ln, cfg.Listen
		p.wg.Go(func() { p.accept(ln) })
	}
	started := p.ln != nil
	p.mu.Unlock()
	p.rt.Store(rt)
	for name, d := range old.dbs {
		if rt.dbs[name] != d {
			d.close()
		}
	}
	if started {
		for name, d := range rt.dbs {
			if old.dbs[name] != d {
				p.startMonitor(d)
			}
		}
	}
	p.log.Info("postgres configuration reloaded", "databases", len(rt.dbs))
	return nil
}

// closeWait bounds how long Close waits for busy server connections.
const closeWait = 10 * time.Second

// Close stops accepting, disconnects every client and closes every server
// connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
	}
	clients := make([]*client, 0, len(p.clients))
	for _, c := range p.clients {
		clients = append(clients, c)
	}
	p.mu.Unlock()
	p.cancel()
	for _, c := range clients {
		c.hangUp()
	}
	// The pools close their idle connections now and the busy ones when
	// released, once their server answers the rollback; a server that
	// does not answer is not waited for past closeWait.
	for _, d := range p.rt.Load().dbs {
		d.close()
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closeWait):
		p.log.Warn("postgres proxy closed with server connections still busy")
	}
}

func (d *database) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	select {
	case <-d.done:
	default:
		close(d.done)
	}
	d.auth.mu.Lock()
	d.auth.close()
	d.auth.mu.Unlock()
	for _, up := range d.pools {
		up.primary.close()
		for _, r := range up.replicas {
			r.close()
		}
	}
}

// poolsFor returns user's pools on d, creating them on first use.
func (p *Proxy) poolsFor(rt *runtime, d *database, user string) *userPools {
	d.mu.Lock()
	defer d.mu.Unlock()
	if up := d.pools[user]; up != nil {
		return up
	}
	up := &userPools{primary: p.newPool(rt, d, d.primary, user)}
	for _, r := range d.replicas {
		up.replicas = append(up.replicas, p.newPool(rt, d, r, user))
	}
	d.pools[user] = up
	return up
}

// serverConfig is how the proxy connects to the server at addr, before
// the database and credentials are filled in.
func (p *Proxy) serverConfig(rt *runtime, addr string) *pgconn.Config {
	host, port, _ := net.SplitHostPort(addr)
	portN, _ := strconv.ParseUint(port, 10, 16)
	// pgconn.ParseConfig fills the fields that a zero Config lacks and
	// builds the TLS settings (and, for prefer, the plain fallback) of
	// sslmode; the string carries no secrets.
	conn := fmt.Sprintf("host=%s port=%d sslmode=%s", host, portN, rt.cfg.ServerSSLMode)
	if rt.cfg.ServerCAFile != "" {
		conn += " sslrootcert='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(rt.cfg.ServerCAFile) + "'"
	}
	cc, err := pgconn.ParseConfig(conn)
	if err != nil {
		// Validated already; a CA file removed since is a connect error.
		p.log.Error("postgres server settings", "server", addr, "error", err)
		cc, _ = pgconn.ParseConfig("sslmode=disable")
		cc.Host, cc.Port = host, uint16(portN)
	}
	return cc
}

func (p *Proxy) newPool(rt *runtime, d *database, s *server, user string) *pool {
	cc := p.serverConfig(rt, s.addr)
	cc.Database = d.cfg.DBName
	cc.User, cc.Password = d.cfg.User, d.cfg.Password
	if cc.User == "" {
		cc.User = user
		if ua := rt.users[user]; ua != nil && cc.Password == "" {
			cc.Password = ua.plain()
		}
	}
	cc.RuntimeParams = map[string]string{"application_name": "penstock"}
	cc.ConnectTimeout = rt.cfg.Timeouts.Connect.D()
	min := d.cfg.MinPoolSize
	if s.replica {
		min = 0
	}
	return &pool{key: poolKey{database: d.cfg.Name, user: user, server: s.addr}, srv: s, connCfg: cc, max: d.cfg.PoolSize, min: min, p: p}
}

// startMonitor runs d's background work: idle timeouts and minimum sizes,
// breaker probes and replica lag.
func (p *Proxy) startMonitor(d *database) {
	p.wg.Go(func() { p.monitor(d) })
}

func (p *Proxy) monitor(d *database) {
	rt := p.rt.Load()
	interval := rt.cfg.Breaker.ProbeInterval.D()
	if s := d.cfg.ReadWriteSplit; s != nil {
		interval = min(interval, s.LagCheckInterval.D())
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-d.done:
			return
		case <-t.C:
		}
		rt := p.rt.Load()
		d.mu.Lock()
		var pools []*userPools
		for _, up := range d.pools {
			pools = append(pools, up)
		}
		d.mu.Unlock()
		for _, up := range pools {
			up.primary.maintain(p.ctx, rt.cfg.Timeouts.ServerIdle.D())
			for _, r := range up.replicas {
				r.maintain(p.ctx, rt.cfg.Timeouts.ServerIdle.D())
			}
		}
		if len(pools) == 0 {
			// Nobody has logged in yet: lag and probes use the
			// database's own user, else the first configured user.
			user := d.cfg.User
			if user == "" && len(rt.cfg.Users) > 0 {
				user = rt.cfg.Users[0].Name
			}
			if user == "" || d.cfg.ReadWriteSplit == nil {
				continue
			}
			pools = append(pools, p.poolsFor(rt, d, user))
		}
		// Probes and lag use the first user's pools' credentials.
		up := pools[0]
		p.probe(up.primary)
		for _, r := range up.replicas {
			p.probe(r)
		}
		if d.cfg.ReadWriteSplit != nil && !d.primary.down() {
			p.measureLag(up, d.cfg.ReadWriteSplit.LagCheckInterval.D())
		}
	}
}

// probe connects to a down server; success closes its breaker.
func (p *Proxy) probe(pl *pool) {
	if !pl.srv.down() {
		return
	}
	sc, err := pl.dial(p.ctx)
	if err != nil {
		return
	}
	sc.close()
	if pl.srv.connectOK() {
		p.log.Info("postgres server up again", "server", pl.srv.addr)
	}
}

// lagMisses is how many lag checks in a row may fail before a replica's
// lag counts as unknown (and reads stop going there): one failed check
// (a connect slow under load) does not move reads to the primary, and a
// replica that stays unreachable is skipped within a few intervals. Its
// pool's own connects fail over to the primary meanwhile.
const lagMisses = 3

// measureLag asks the primary for its WAL position and each replica for
// its replay position. every is the interval between checks.
func (p *Proxy) measureLag(up *userPools, every time.Duration) {
	ctx, cancel := context.WithTimeout(p.ctx, p.connectTimeout())
	defer cancel()
	primaryLSN, err := queryLSN(ctx, up.primary, "SELECT pg_current_wal_lsn()::text")
	if err != nil {
		return
	}
	for _, r := range up.replicas {
		if r.srv.down() {
			continue
		}
		lsn, err := queryLSN(ctx, r, "SELECT coalesce(pg_last_wal_replay_lsn(), '0/0')::text")
		if err != nil {
			p.log.Debug("postgres replica lag check failed", "server", r.srv.addr, "error", err)
			if time.Since(time.Unix(0, r.srv.lagAt.Load())) > lagMisses*every {
				r.srv.lag.Store(-1)
			}
			continue
		}
		lag := int64(primaryLSN - lsn)
		if primaryLSN < lsn {
			lag = 0
		}
		r.srv.lag.Store(lag)
		r.srv.lagAt.Store(time.Now().UnixNano())
	}
}

// queryLSN runs one single-value LSN query on its own short connection,
// outside the pool (the pool's slots are the clients').
func queryLSN(ctx context.Context, pl *pool, sql string) (uint64, error) {
	pc, err := pgconn.ConnectConfig(ctx, pl.connCfg.Copy())
	if err != nil {
		return 0, err
	}
	defer pc.Close(context.Background())
	res := pc.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return 0, res.Err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return 0, errors.New("unexpected LSN result")
	}
	return parseLSN(string(res.Rows[0][0]))
}

// parseLSN reads PostgreSQL's "X/Y" log sequence number.
func parseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	return h<<32 | l, nil
}

func (p *Proxy) connectTimeout() time.Duration { return p.rt.Load().cfg.Timeouts.Connect.D() }
func (p *Proxy) breakerFailures() int          { return p.rt.Load().cfg.Breaker.Failures }
func (p *Proxy) preparedCap() int              { return p.rt.Load().cfg.PreparedStatements }

// register adds c to the clients a CancelRequest can reach and sets its
// backend key data (c.pid, c.key).
func (p *Proxy) register(c *client) {
	key := make([]byte, 4)
	rand.Read(key)
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		p.nextPID++
		if p.nextPID == 0 {
			p.nextPID = 1
		}
		if _, used := p.clients[p.nextPID]; !used {
			break
		}
	}
	// Set under mu: cancelRequest reads them after finding c here.
	c.pid, c.key = p.nextPID, key
	p.clients[p.nextPID] = c
}

func (p *Proxy) unregister(pid uint32) {
	p.mu.Lock()
	delete(p.clients, pid)
	p.mu.Unlock()
}

// cancel forwards a client's CancelRequest to the server running its
// query, with that server connection's own key (the client only ever
// sees the proxy's).
func (p *Proxy) cancelRequest(pid uint32, key []byte) {
	p.mu.Lock()
	c := p.clients[pid]
	p.mu.Unlock()
	if c == nil || len(key) != len(c.key) || binary.BigEndian.Uint32(key) != binary.BigEndian.Uint32(c.key) {
		return
	}
	c.mu.Lock()
	sc := c.sc
	c.mu.Unlock()
	if sc == nil {
		return
	}
	p.metrics.cancels.Inc()
	sendCancel(p.ctx, sc.pool.srv.addr, sc.pid, sc.key, p.connectTimeout())
}

// State is the proxy's state on the admin API (GET /postgres): pools like
// PgBouncer's SHOW POOLS, and clients.
type State struct {
	Listen    string      `json:"listen"`
	PoolMode  string      `json:"pool_mode"`
	Clients   int64       `json:"clients"`
	Pools     []PoolState `json:"pools"`
	Databases []string    `json:"databases"`
}

// State returns a snapshot of the pools and clients.
func (p *Proxy) State() State {
	rt := p.rt.Load()
	st := State{PoolMode: rt.cfg.PoolMode, Clients: p.nclient.Load(), Pools: []PoolState{}}
	if a := p.Addr(); a != nil {
		st.Listen = a.String()
	}
	for name, d := range rt.dbs {
		st.Databases = append(st.Databases, name)
		d.mu.Lock()
		for _, up := range d.pools {
			st.Pools = append(st.Pools, up.primary.state())
			for _, r := range up.replicas {
				st.Pools = append(st.Pools, r.state())
			}
		}
		d.mu.Unlock()
	}
	sort.Strings(st.Databases)
	sort.Slice(st.Pools, func(i, j int) bool {
		a, b := st.Pools[i], st.Pools[j]
		if a.Database != b.Database {
			return a.Database < b.Database
		}
		if a.User != b.User {
			return a.User < b.User
		}
		return a.Server < b.Server
	})
	return st
}
