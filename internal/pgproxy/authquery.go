package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/penstock-dev/penstock/internal/config"
)

// authLookup runs postgres.auth_query for one database: on its primary, as
// postgres.auth_user, over one connection kept open between logins (and
// opened again when it fails), so a login costs one round trip, not a
// connect.
type authLookup struct {
	mu   sync.Mutex
	conn *pgconn.PgConn
}

// errLookupFailed: auth_query could not be run (server unreachable, query
// refused); the client gets 08006, not a password error.
var errLookupFailed = errors.New("auth_query failed")

// lookupUser returns the login checker of user, found by auth_query on
// d's primary; nil (no error) when the server has no such user or no
// password for it.
func (p *Proxy) lookupUser(ctx context.Context, rt *runtime, d *database, user string) (*userAuth, error) {
	secret, ok, err := d.auth.secret(ctx, p, rt, d, user)
	if err != nil {
		p.log.Warn("postgres auth_query failed", "database", d.cfg.Name, "user", user, "error", err)
		return nil, fmt.Errorf("%w: %v", errLookupFailed, err)
	}
	if !ok {
		return nil, nil
	}
	// A secret of the other kind cannot check this login type: SCRAM
	// needs the verifier, md5 the md5 hash.
	isSCRAM := strings.HasPrefix(secret, "SCRAM-SHA-256$")
	isMD5 := len(secret) == 35 && strings.HasPrefix(secret, "md5")
	if rt.cfg.AuthType == config.PostgresAuthSCRAM && isMD5 || rt.cfg.AuthType == config.PostgresAuthMD5 && isSCRAM {
		p.log.Warn("postgres auth_query secret cannot check this auth_type", "user", user, "auth_type", rt.cfg.AuthType)
		return nil, nil
	}
	ua, err := newUserAuth(user, secret, rt.cfg.AuthType)
	if err != nil {
		p.log.Warn("postgres auth_query secret malformed", "user", user, "error", err)
		return nil, nil
	}
	return ua, nil
}

// secret runs the query for user.
func (a *authLookup) secret(ctx context.Context, p *Proxy, rt *runtime, d *database, user string) (string, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, rt.cfg.Timeouts.Connect.D())
	defer cancel()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == nil || a.conn.IsClosed() {
		cc := p.serverConfig(rt, d.primary.addr)
		cc.Database = d.cfg.DBName
		cc.User = rt.cfg.AuthUser
		if ua := rt.users[rt.cfg.AuthUser]; ua != nil {
			cc.Password = ua.plain()
		}
		cc.RuntimeParams = map[string]string{"application_name": "penstock auth_query"}
		cc.ConnectTimeout = rt.cfg.Timeouts.Connect.D()
		conn, err := pgconn.ConnectConfig(ctx, cc)
		if err != nil {
			return "", false, err
		}
		a.conn = conn
	}
	res := a.conn.ExecParams(ctx, rt.cfg.AuthQuery, [][]byte{[]byte(user)}, nil, nil, nil).Read()
	if res.Err != nil {
		var pe *pgconn.PgError
		if !errors.As(res.Err, &pe) {
			// The connection is in doubt: open another next time.
			a.close()
		}
		return "", false, res.Err
	}
	if len(res.Rows) == 0 {
		return "", false, nil
	}
	row := res.Rows[0]
	if len(row) == 0 {
		return "", false, errors.New("auth_query returned no columns")
	}
	col := row[len(row)-1]
	if len(row) >= 2 {
		col = row[1]
	}
	if col == nil || len(col) == 0 {
		return "", false, nil
	}
	return string(col), true, nil
}

// close closes the kept connection (a.mu held or the lookup unused).
func (a *authLookup) close() {
	if a.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		a.conn.Close(ctx)
		cancel()
		a.conn = nil
	}
}
