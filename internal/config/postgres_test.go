package config

import (
	"strings"
	"testing"
	"time"
)

// TestPostgres checks the postgres section from YAML text: the defaults,
// values as written, and an error naming the field and line for each bad
// value.
func TestPostgres(t *testing.T) {
	const head = `listeners: [{name: main, address: "127.0.0.1:0"}]
postgres:
`
	const db = `  databases: [{name: app, primary: "127.0.0.1:5432"}]
`
	const users = `  users: [{name: app, password: secret}]
`
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, p *Postgres)
		err   string
	}{
		{name: "defaults", body: `  listen: "127.0.0.1:6432"
` + users + db, check: func(t *testing.T, p *Postgres) {
			d := p.Databases[0]
			if p.PoolMode != "transaction" || p.AuthType != "scram-sha-256" || p.MaxClientConn != 1000 ||
				p.PreparedStatements != 200 || p.SessionState != "pin" || p.ResetQuery != "DISCARD ALL" ||
				p.Timeouts.QueryWait.D() != 30*time.Second || p.Breaker.Failures != 3 ||
				d.DBName != "app" || d.PoolSize != 20 || d.ReadWriteSplit != nil {
				t.Errorf("defaults: %+v", p)
			}
		}},
		{name: "split defaults", body: `  listen: "127.0.0.1:6432"
` + users + `  databases: [{name: app, primary: "127.0.0.1:5432", replicas: ["127.0.0.1:5433"], read_write_split: {}}]
`, check: func(t *testing.T, p *Postgres) {
			s := p.Databases[0].ReadWriteSplit
			if s.ReadYourWrites.D() != 5*time.Second || s.MaxReplicaLag != 16<<20 || !*s.FallbackToPrimary || s.LagCheckInterval.D() != time.Second {
				t.Errorf("split defaults: %+v", s)
			}
		}},
		{name: "no listen", body: users + db, err: "postgres.listen (line 2): is required"},
		{name: "bad pool mode", body: `  listen: "127.0.0.1:6432"
  pool_mode: statements
` + users + db, err: `postgres.pool_mode (line 4): unknown pool mode "statements"; want transaction, session or statement`},
		{name: "bad auth type", body: `  listen: "127.0.0.1:6432"
  auth_type: cert
` + users + db, err: `postgres.auth_type (line 4): unknown auth type "cert"`},
		{name: "no databases", body: `  listen: "127.0.0.1:6432"
` + users, err: "postgres.databases (line 2): at least one database is required"},
		{name: "bad primary", body: `  listen: "127.0.0.1:6432"
` + users + `  databases: [{name: app, primary: "localhost"}]
`, err: `postgres.databases[0].primary (line 5): invalid address "localhost"`},
		{name: "split without replicas", body: `  listen: "127.0.0.1:6432"
` + users + `  databases: [{name: app, primary: "127.0.0.1:5432", read_write_split: {}}]
`, err: "postgres.databases[0].read_write_split (line 5): needs at least one replica"},
		{name: "min above max", body: `  listen: "127.0.0.1:6432"
` + users + `  databases: [{name: app, primary: "127.0.0.1:5432", pool_size: 2, min_pool_size: 3}]
`, err: "postgres.databases[0].min_pool_size (line 5): must be from 0 to pool_size (2), got 3"},
		{name: "missing password", body: `  listen: "127.0.0.1:6432"
  users: [{name: app}]
` + db, err: "postgres.users[0].password (line 4): is required with auth_type scram-sha-256"},
		{name: "md5 hash with scram", body: `  listen: "127.0.0.1:6432"
  users: [{name: app, password: md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}]
  databases: [{name: app, primary: "127.0.0.1:5432", user: app, password: x}]
`, err: "postgres.users[0].password (line 4): an md5 hash cannot check scram-sha-256 logins"},
		{name: "duplicate database", body: `  listen: "127.0.0.1:6432"
` + users + `  databases: [{name: app, primary: "127.0.0.1:5432"}, {name: app, primary: "127.0.0.1:5432"}]
`, err: `postgres.databases[1].name (line 5): duplicate database name "app"`},
		{name: "tiny message limit", body: `  listen: "127.0.0.1:6432"
  max_message_bytes: 10
` + users + db, err: "postgres.max_message_bytes (line 4): must be from 1KiB to 1GiB"},
		{name: "auth_user not a user", body: `  listen: "127.0.0.1:6432"
  auth_user: nobody
` + users + `  databases: [{name: app, primary: "127.0.0.1:5432", user: app, password: x}]
`, err: `postgres.auth_user (line 4): user "nobody" is not in postgres.users`},
		{name: "auth_user without database user", body: `  listen: "127.0.0.1:6432"
  auth_user: app
` + users + db, err: "postgres.databases[0].user (line 6): is required with postgres.auth_user"},
		{name: "auth_query without $1", body: `  listen: "127.0.0.1:6432"
  auth_user: app
  auth_query: SELECT 1
` + users + `  databases: [{name: app, primary: "127.0.0.1:5432", user: app, password: x}]
`, err: "postgres.auth_query (line 5): must take the user name as $1"},
		{name: "bad tracked parameter", body: `  listen: "127.0.0.1:6432"
  track_parameters: [application_name, "bad name"]
` + users + db, err: `postgres.track_parameters[1] (line 4): invalid parameter name "bad name"`},
		{name: "tracked user", body: `  listen: "127.0.0.1:6432"
  track_parameters: [User]
` + users + db, err: `postgres.track_parameters[0] (line 4): "User" is not a setting the proxy can replay`},
		{name: "busy_poll too long", body: `  listen: "127.0.0.1:6432"
  busy_poll: 5ms
` + users + db, err: "postgres.busy_poll (line 4): must be from 0 (off) to 1ms, got 5ms"},
		{name: "negative busy_poll", body: `  listen: "127.0.0.1:6432"
  busy_poll: -1us
` + users + db, err: `postgres.busy_poll (line 4): invalid duration "-1us": must not be negative`},
		{name: "unknown field", body: `  listen: "127.0.0.1:6432"
  pool_size: 3
` + users + db, err: "pool_size"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(head+tc.body), "")
			if err == nil {
				err = cfg.Validate()
			}
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Postgres)
		})
	}
}
