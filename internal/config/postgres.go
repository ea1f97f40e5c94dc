package config

import (
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"time"
)

// Postgres is the PostgreSQL-aware proxy (internal/pgproxy): one listener
// that speaks the PostgreSQL wire protocol to clients, authenticates them,
// and pools server connections per database and user, with read/write
// splitting to replicas and a breaker per server. Absent means no proxy.
type Postgres struct {
	// Listen is host:port the proxy accepts clients on, e.g.
	// "127.0.0.1:6432". Required.
	Listen string `yaml:"listen"`
	// PoolMode is when a server connection goes back to its pool:
	// "transaction" (at ReadyForQuery with status idle, outside a
	// transaction: many clients share few server connections) or
	// "session" (when the client disconnects), or "statement" (as
	// transaction, and a transaction block is refused: every statement
	// runs on its own). Default "transaction".
	PoolMode string `yaml:"pool_mode"`
	// AuthType is how clients prove who they are: "scram-sha-256",
	// "md5" or "trust" (no password; for tests and loopback only).
	// Default "scram-sha-256".
	AuthType string `yaml:"auth_type"`
	// Users are the client accounts. A client whose user is not listed is
	// refused (SQLSTATE 28P01), except with auth_type trust or when
	// AuthUser finds it on the server.
	Users []PostgresUser `yaml:"users"`
	// AuthUser, when set, turns on passthrough authentication as
	// PgBouncer's auth_user: a client user not in Users is looked up with
	// AuthQuery on the primary of the database it names, logged in as
	// AuthUser (a user of Users with a plain password), and its stored
	// secret (md5 hash or SCRAM verifier) checks the login. Those clients
	// reach the servers as the database's user, which each database must
	// then set. Default none.
	AuthUser string `yaml:"auth_user"`
	// AuthQuery returns the stored password of the user named by $1: one
	// row whose second column (or only column) is the secret, NULL or no
	// row for no such user. Used only with AuthUser. Default "SELECT
	// usename, passwd FROM pg_shadow WHERE usename = $1".
	AuthQuery string `yaml:"auth_query"`
	// Databases are the databases clients may connect to, by name.
	// At least one.
	Databases []PostgresDatabase `yaml:"databases"`
	// MaxClientConn bounds the clients connected at once (count); the
	// next is refused with SQLSTATE 53300. Default 1000.
	MaxClientConn int `yaml:"max_client_conn"`
	// MaxMessageBytes bounds one protocol message from a client (bytes);
	// a longer one is a protocol error (SQLSTATE 08P01) and the connection
	// is closed, before anything of that size is allocated. Default 16MiB.
	MaxMessageBytes ByteSize `yaml:"max_message_bytes"`
	// PreparedStatements is the most named prepared statements the proxy
	// keeps prepared on one server connection (count); beyond it the least
	// recently used is closed there. Clients' statements are tracked by the
	// proxy and prepared again on whichever server connection runs them.
	// Default 200.
	PreparedStatements int `yaml:"prepared_statements"`
	// SessionState is what transaction pooling does with a statement that
	// leaves state on the server connection past its transaction (SET or
	// RESET outside a transaction, LISTEN, session advisory locks, temporary
	// tables, SQL PREPARE): "pin" keeps that server connection for the
	// client until it disconnects (then resets it), "reject" refuses the
	// statement with SQLSTATE 0A000. Default "pin".
	SessionState string `yaml:"session_state"`
	// BusyPoll, when above zero, keeps the process awake for that long
	// after it wakes with a statement in flight
	// (a goroutine yields in a loop instead of letting the scheduler sleep
	// in the network poller), so PostgreSQL and the clients write to
	// sockets nobody sleeps on and pay no wake-up; the events of the
	// window are taken together at its end. It trades CPU on the proxy's
	// core (busy under load) for throughput on the others. At most 1ms;
	// default 0 (off).
	BusyPoll Duration `yaml:"busy_poll"`
	// ResetQuery runs on a server connection that carries session state
	// before another client gets it. Default "DISCARD ALL".
	ResetQuery string `yaml:"reset_query"`
	// TLS, when present, offers TLS to clients: an SSLRequest is answered
	// "S" and the session continues encrypted. Absent means clients are
	// answered "N" and go on in plain text (or give up, with
	// sslmode=require).
	TLS *PostgresTLS `yaml:"tls"`
	// ServerSSLMode is how the proxy asks servers for TLS, as libpq's
	// sslmode: "disable" (default), "prefer", "require", "verify-ca" or
	// "verify-full".
	ServerSSLMode string `yaml:"server_sslmode"`
	// ServerCAFile is the CA bundle (PEM) that verifies servers'
	// certificates with verify-ca and verify-full. Default: the system's.
	ServerCAFile string `yaml:"server_ca_file"`
	// Timeouts bound connecting, waiting and idling.
	Timeouts PostgresTimeouts `yaml:"timeouts"`
	// Breaker marks a server down after failed connects and probes it
	// back.
	Breaker PostgresBreaker `yaml:"breaker"`
	// TrackParameters are the startup parameters (names, matched
	// case-insensitively) whose client values the proxy replays on every
	// server connection the client uses, as PgBouncer's
	// track_extra_parameters: set before the client's first message on it
	// when the connection's value differs, and reset to the server's
	// default when a client that did not send it gets the connection.
	// Other startup parameters are ignored. Default application_name,
	// client_encoding, DateStyle, IntervalStyle, TimeZone, search_path,
	// extra_float_digits, standard_conforming_strings.
	TrackParameters []string `yaml:"track_parameters"`
}

// DefaultPostgresTrackParameters are the startup parameters replayed by
// default: what libpq, pgx, JDBC and psql send.
var DefaultPostgresTrackParameters = []string{"application_name", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone", "search_path", "extra_float_digits", "standard_conforming_strings"}

// PostgresTLS is the proxy's certificate for clients.
type PostgresTLS struct {
	// CertFile is the certificate chain (PEM). Required.
	CertFile string `yaml:"cert_file"`
	// KeyFile is its private key (PEM). Required.
	KeyFile string `yaml:"key_file"`
}

// PostgresUser is one client account.
type PostgresUser struct {
	// Name is the user name clients send. Required, unique.
	Name string `yaml:"name"`
	// Password is the plain password, an md5 hash ("md5" and 32 hex
	// digits, of password then user name, as PostgreSQL stores it) or a
	// SCRAM-SHA-256 verifier as in pg_authid ("SCRAM-SHA-256$4096:..."). A
	// SCRAM verifier serves scram-sha-256 only, an md5 hash md5 only. It is
	// also the password sent to the servers when the database sets none
	// (plain passwords only). Required unless auth_type is trust.
	Password string `yaml:"password" secret:"true"`
}

// PostgresDatabase is one database clients connect to, and the servers
// behind it.
type PostgresDatabase struct {
	// Name is the database name clients send. Required, unique.
	Name string `yaml:"name"`
	// DBName is the database on the servers. Default: Name.
	DBName string `yaml:"dbname"`
	// User is the role the proxy logs in to the servers as. Default: the
	// client's user (one pool per client user).
	User string `yaml:"user"`
	// Password is User's password on the servers (SCRAM-SHA-256, md5 or
	// cleartext, as the server asks). Default: the client user's plain
	// password.
	Password string `yaml:"password" secret:"true"`
	// Primary is the read-write server, host:port. Required.
	Primary string `yaml:"primary"`
	// Replicas are read-only servers (host:port) that read-only
	// statements go to when ReadWriteSplit is on. Default none.
	Replicas []string `yaml:"replicas"`
	// PoolSize is the most server connections per server and client user
	// (count). Default 20.
	PoolSize int `yaml:"pool_size"`
	// MinPoolSize is how many server connections to the primary are kept
	// open even when idle (count, at most PoolSize). Default 0.
	MinPoolSize int `yaml:"min_pool_size"`
	// ReadWriteSplit, when present, sends read-only statements to the
	// replicas.
	ReadWriteSplit *PostgresSplit `yaml:"read_write_split"`
}

// PostgresSplit configures read/write splitting. A statement goes to a
// replica only when the classifier is sure it is read-only (see
// docs/postgres.md); anything it is unsure of goes to the primary.
type PostgresSplit struct {
	// ReadYourWrites keeps a client's reads on the primary for this long
	// after its last write (duration), so it reads what it wrote despite
	// replication lag. 0 turns it off. Default 5s.
	ReadYourWrites *Duration `yaml:"read_your_writes"`
	// MaxReplicaLag skips a replica whose replay position is more than
	// this many bytes of WAL behind the primary's (bytes). Default 16MiB.
	MaxReplicaLag ByteSize `yaml:"max_replica_lag"`
	// LagCheckInterval is how often each replica's lag is measured
	// (duration). Default 1s.
	LagCheckInterval Duration `yaml:"lag_check_interval"`
	// VolatileFunctions are functions, besides the built-in list (nextval,
	// setval, pg_advisory_lock, ...), whose call sends a SELECT to the
	// primary: functions that write. Names are matched case-insensitively,
	// without schema. Default none.
	VolatileFunctions []string `yaml:"volatile_functions"`
	// FallbackToPrimary sends reads to the primary when no replica is
	// usable (down, or lagging). false refuses them (SQLSTATE 57P03).
	// Default true.
	FallbackToPrimary *bool `yaml:"fallback_to_primary"`
}

// PostgresTimeouts bound the proxy's waits.
type PostgresTimeouts struct {
	// Connect bounds opening and authenticating one server connection
	// (duration). Default 5s.
	Connect Duration `yaml:"connect"`
	// QueryWait bounds how long a client waits in the queue for a server
	// connection when the pool is full (duration); then it gets an
	// ErrorResponse with SQLSTATE 53300. Default 30s.
	QueryWait Duration `yaml:"query_wait"`
	// ServerIdle closes server connections idle in the pool longer than
	// this, down to min_pool_size (duration). Default 10m.
	ServerIdle Duration `yaml:"server_idle"`
	// ClientLogin bounds a client's startup and authentication
	// (duration). Default 15s.
	ClientLogin Duration `yaml:"client_login"`
}

// PostgresBreaker marks a server down after consecutive connect failures.
type PostgresBreaker struct {
	// Failures is how many consecutive failed connects (refused, timed
	// out, rejected) open the breaker (count). Default 3.
	Failures int `yaml:"failures"`
	// ProbeInterval is how often a down server is probed with a new
	// connection while its breaker is open (duration); a success closes
	// it. Default 1s.
	ProbeInterval Duration `yaml:"probe_interval"`
}

// Postgres values, as written in the file.
const (
	PostgresPoolTransaction = "transaction"
	PostgresPoolSession     = "session"
	PostgresPoolStatement   = "statement"

	PostgresAuthSCRAM = "scram-sha-256"
	PostgresAuthMD5   = "md5"
	PostgresAuthTrust = "trust"

	PostgresStatePin    = "pin"
	PostgresStateReject = "reject"
)

// Postgres defaults.
const (
	// MaxPostgresBusyPoll bounds postgres.busy_poll: a longer window
	// delays every event that arrives in it by as much.
	MaxPostgresBusyPoll = time.Millisecond
	// PostgresBusyPollMinInFlight is how many statements must be in
	// flight for a wake-up to start a busy_poll window: an idle proxy
	// never spins. One is enough: with a single client, the window that
	// follows the answer's wake-up catches the client's next statement,
	// whose sender then wakes nobody (1.15-1.22x PgBouncer's TPS at 1
	// client against 0.94-0.99x with a minimum of 4; bench/README.md).
	PostgresBusyPollMinInFlight = 1

	DefaultPostgresMaxClientConn      = 1000
	DefaultPostgresMaxMessageBytes    = ByteSize(16 << 20)
	DefaultPostgresPreparedStatements = 200
	DefaultPostgresResetQuery         = "DISCARD ALL"
	DefaultPostgresAuthQuery          = "SELECT usename, passwd FROM pg_shadow WHERE usename = $1"
	DefaultPostgresPoolSize           = 20
	DefaultPostgresConnectTimeout     = Duration(5 * time.Second)
	DefaultPostgresQueryWait          = Duration(30 * time.Second)
	DefaultPostgresServerIdle         = Duration(10 * time.Minute)
	DefaultPostgresClientLogin        = Duration(15 * time.Second)
	DefaultPostgresBreakerFailures    = 3
	DefaultPostgresProbeInterval      = Duration(time.Second)
	DefaultPostgresReadYourWrites     = Duration(5 * time.Second)
	DefaultPostgresMaxReplicaLag      = ByteSize(16 << 20)
	DefaultPostgresLagCheckInterval   = Duration(time.Second)
	// MaxPostgresMessageBytes bounds MaxMessageBytes: PostgreSQL's own
	// limit for a message is 1 GiB.
	MaxPostgresMessageBytes = ByteSize(1 << 30)
)

// setDefaults fills p's unset fields.
func (p *Postgres) setDefaults() {
	setDefault(&p.PoolMode, PostgresPoolTransaction)
	setDefault(&p.AuthType, PostgresAuthSCRAM)
	setDefault(&p.MaxClientConn, DefaultPostgresMaxClientConn)
	setDefault(&p.MaxMessageBytes, DefaultPostgresMaxMessageBytes)
	setDefault(&p.PreparedStatements, DefaultPostgresPreparedStatements)
	setDefault(&p.SessionState, PostgresStatePin)
	setDefault(&p.ResetQuery, DefaultPostgresResetQuery)
	setDefault(&p.AuthQuery, DefaultPostgresAuthQuery)
	setDefault(&p.ServerSSLMode, "disable")
	setDefault(&p.Timeouts.Connect, DefaultPostgresConnectTimeout)
	setDefault(&p.Timeouts.QueryWait, DefaultPostgresQueryWait)
	setDefault(&p.Timeouts.ServerIdle, DefaultPostgresServerIdle)
	setDefault(&p.Timeouts.ClientLogin, DefaultPostgresClientLogin)
	setDefault(&p.Breaker.Failures, DefaultPostgresBreakerFailures)
	setDefault(&p.Breaker.ProbeInterval, DefaultPostgresProbeInterval)
	if p.TrackParameters == nil {
		p.TrackParameters = append([]string(nil), DefaultPostgresTrackParameters...)
	}
	for i := range p.Databases {
		d := &p.Databases[i]
		setDefault(&d.DBName, d.Name)
		setDefault(&d.PoolSize, DefaultPostgresPoolSize)
		if s := d.ReadWriteSplit; s != nil {
			if s.ReadYourWrites == nil {
				v := DefaultPostgresReadYourWrites
				s.ReadYourWrites = &v
			}
			setDefault(&s.MaxReplicaLag, DefaultPostgresMaxReplicaLag)
			setDefault(&s.LagCheckInterval, DefaultPostgresLagCheckInterval)
			if s.FallbackToPrimary == nil {
				on := true
				s.FallbackToPrimary = &on
			}
		}
	}
}

// validatePostgres checks the postgres section, if any.
func (c *Config) validatePostgres(col *Collector) {
	p := c.Postgres
	if p == nil {
		return
	}
	checkBindAddress(col, "postgres.listen", p.Listen)
	if !isKnown(p.PoolMode, PostgresPoolTransaction, PostgresPoolSession, PostgresPoolStatement) {
		col.Addf("postgres.pool_mode", "unknown pool mode %q; want transaction, session or statement", p.PoolMode)
	}
	if !isKnown(p.AuthType, PostgresAuthSCRAM, PostgresAuthMD5, PostgresAuthTrust) {
		col.Addf("postgres.auth_type", "unknown auth type %q; want scram-sha-256, md5 or trust", p.AuthType)
	}
	if !isKnown(p.SessionState, PostgresStatePin, PostgresStateReject) {
		col.Addf("postgres.session_state", "unknown policy %q; want pin or reject", p.SessionState)
	}
	if p.MaxClientConn < 1 {
		col.Addf("postgres.max_client_conn", "must be at least 1, got %d", p.MaxClientConn)
	}
	if p.MaxMessageBytes < 1024 || p.MaxMessageBytes > MaxPostgresMessageBytes {
		col.Addf("postgres.max_message_bytes", "must be from 1KiB to 1GiB, got %d", p.MaxMessageBytes)
	}
	if p.PreparedStatements < 1 {
		col.Addf("postgres.prepared_statements", "must be at least 1, got %d", p.PreparedStatements)
	}
	if p.BusyPoll < 0 || p.BusyPoll.D() > MaxPostgresBusyPoll {
		col.Addf("postgres.busy_poll", "must be from 0 (off) to %v, got %v", MaxPostgresBusyPoll, p.BusyPoll.D())
	}
	if !isKnown(p.ServerSSLMode, "disable", "prefer", "require", "verify-ca", "verify-full") {
		col.Addf("postgres.server_sslmode", "unknown sslmode %q; want disable, prefer, require, verify-ca or verify-full", p.ServerSSLMode)
	}
	if p.ServerCAFile != "" {
		checkFile(col, "postgres.server_ca_file", "CA file", p.ServerCAFile)
	}
	if t := p.TLS; t != nil {
		switch {
		case t.CertFile == "":
			col.Addf("postgres.tls.cert_file", "is required")
		case t.KeyFile == "":
			col.Addf("postgres.tls.key_file", "is required")
		default:
			if checkFile(col, "postgres.tls.cert_file", "certificate", t.CertFile) && checkFile(col, "postgres.tls.key_file", "key", t.KeyFile) {
				if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
					col.Addf("postgres.tls", "cannot load the certificate and key: %v", err)
				}
			}
		}
	}
	if strings.TrimSpace(p.ResetQuery) == "" {
		col.Addf("postgres.reset_query", "must not be blank")
	}
	for _, d := range []struct {
		path string
		v    Duration
	}{
		{"postgres.timeouts.connect", p.Timeouts.Connect},
		{"postgres.timeouts.query_wait", p.Timeouts.QueryWait},
		{"postgres.timeouts.server_idle", p.Timeouts.ServerIdle},
		{"postgres.timeouts.client_login", p.Timeouts.ClientLogin},
		{"postgres.breaker.probe_interval", p.Breaker.ProbeInterval},
	} {
		if d.v <= 0 {
			col.Addf(d.path, "must be positive, got %s", d.v)
		}
	}
	if p.Breaker.Failures < 1 {
		col.Addf("postgres.breaker.failures", "must be at least 1, got %d", p.Breaker.Failures)
	}
	for i, name := range p.TrackParameters {
		if !isParameterName(name) {
			col.Addf(indexPath("postgres.track_parameters", i), "invalid parameter name %q: want letters, digits, _ and . (such as search_path)", name)
		} else if isKnown(strings.ToLower(name), "user", "database", "replication", "options") {
			col.Addf(indexPath("postgres.track_parameters", i), "%q is not a setting the proxy can replay", name)
		}
	}
	users := map[string]string{}
	for i, u := range p.Users {
		path := indexPath("postgres.users", i)
		checkName(col, path, "user", u.Name, users)
		switch {
		case u.Password == "" && p.AuthType != PostgresAuthTrust:
			col.Addf(path+".password", "is required with auth_type %s", p.AuthType)
		case strings.HasPrefix(u.Password, "SCRAM-SHA-256$") && p.AuthType == PostgresAuthMD5:
			col.Addf(path+".password", "a SCRAM-SHA-256 verifier cannot check md5 logins; give the plain password")
		case isMD5Hash(u.Password) && p.AuthType == PostgresAuthSCRAM:
			col.Addf(path+".password", "an md5 hash cannot check scram-sha-256 logins; give the plain password or a SCRAM verifier")
		}
	}
	if len(p.Databases) == 0 {
		col.Addf("postgres.databases", "at least one database is required")
	}
	if p.AuthUser != "" {
		found := false
		for _, u := range p.Users {
			if u.Name == p.AuthUser {
				found = true
				if strings.HasPrefix(u.Password, "SCRAM-SHA-256$") || isMD5Hash(u.Password) {
					col.Addf("postgres.auth_user", "user %q logs in to the servers to run auth_query: its password in users must be plain", p.AuthUser)
				}
			}
		}
		switch {
		case !found:
			col.Addf("postgres.auth_user", "user %q is not in postgres.users (the proxy logs in as it with its password there)", p.AuthUser)
		case p.AuthType == PostgresAuthTrust:
			col.Addf("postgres.auth_user", "has no use with auth_type trust (no password is checked)")
		}
		if !strings.Contains(p.AuthQuery, "$1") {
			col.Addf("postgres.auth_query", "must take the user name as $1, got %q", p.AuthQuery)
		}
		for i, d := range p.Databases {
			if d.User == "" {
				col.Addf(indexPath("postgres.databases", i)+".user", "is required with postgres.auth_user: users found by auth_query reach the servers as the database's user (the proxy never learns their passwords)")
			}
		}
	}
	names := map[string]string{}
	for i, d := range p.Databases {
		path := indexPath("postgres.databases", i)
		checkName(col, path, "database", d.Name, names)
		checkServerAddress(col, path+".primary", d.Primary)
		for j, r := range d.Replicas {
			checkServerAddress(col, indexPath(path+".replicas", j), r)
		}
		if d.PoolSize < 1 {
			col.Addf(path+".pool_size", "must be at least 1, got %d", d.PoolSize)
		}
		if d.MinPoolSize < 0 || d.MinPoolSize > d.PoolSize {
			col.Addf(path+".min_pool_size", "must be from 0 to pool_size (%d), got %d", d.PoolSize, d.MinPoolSize)
		}
		if s := d.ReadWriteSplit; s != nil {
			if len(d.Replicas) == 0 {
				col.Addf(path+".read_write_split", "needs at least one replica in replicas")
			}
			if s.ReadYourWrites != nil {
				checkDuration(col, path+".read_write_split.read_your_writes", *s.ReadYourWrites)
			}
			if s.MaxReplicaLag < 0 {
				col.Addf(path+".read_write_split.max_replica_lag", "must not be negative, got %d", s.MaxReplicaLag)
			}
			if s.LagCheckInterval <= 0 {
				col.Addf(path+".read_write_split.lag_check_interval", "must be positive, got %s", s.LagCheckInterval)
			}
			for j, f := range s.VolatileFunctions {
				if f == "" || strings.ContainsAny(f, " \t\n().;") {
					col.Addf(indexPath(path+".read_write_split.volatile_functions", j), "invalid function name %q", f)
				}
			}
		}
		if d.User == "" && d.Password == "" && p.AuthType != PostgresAuthTrust {
			for j, u := range p.Users {
				if strings.HasPrefix(u.Password, "SCRAM-SHA-256$") || isMD5Hash(u.Password) {
					col.Addf(indexPath("postgres.users", j)+".password", "database %q logs in to its servers with the client's password, which must then be plain; set databases[].user and password", d.Name)
				}
			}
		}
	}
}

// isParameterName reports whether s can name a PostgreSQL setting.
func isParameterName(s string) bool {
	if s == "" || len(s) > 63 || s[0] >= '0' && s[0] <= '9' || s[0] == '.' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// checkServerAddress checks a host:port the proxy connects to.
func checkServerAddress(col *Collector, path, addr string) {
	if addr == "" {
		col.Addf(path, "is required")
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		col.Addf(path, "invalid address %q: want host:port such as \"127.0.0.1:5432\"", addr)
		return
	}
	if host == "" {
		col.Addf(path, "invalid address %q: the host is missing", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		col.Addf(path, "invalid address %q: port %q is not a number from 1 to 65535", addr, port)
	}
}

// isMD5Hash reports whether s is a password stored as PostgreSQL's md5
// hash: "md5" and 32 lowercase hex digits.
func isMD5Hash(s string) bool {
	if len(s) != 35 || !strings.HasPrefix(s, "md5") {
		return false
	}
	for _, c := range s[3:] {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
