package pgproxy

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/penstock-dev/penstock/internal/config"
)

// Clients with different startup parameters share one server connection in
// transaction pooling: each sees its own settings in every transaction,
// reported at login as it asked, and a client that sent none sees the
// server's defaults, never another client's.
func TestStartupParametersReplayed(t *testing.T) {
	c := needCluster(t)
	for _, mode := range []string{config.PostgresPoolTransaction, config.PostgresPoolSession} {
		t.Run(mode, func(t *testing.T) {
			pc := testConfig(c, false)
			pc.PoolMode = mode
			pc.Databases[0].PoolSize = 1
			if mode == config.PostgresPoolSession {
				pc.Databases[0].PoolSize = 3
			}
			p, _ := startProxy(t, pc)
			ctx := ctxT(t)
			with := func(params map[string]string) func(*pgx.ConnConfig) {
				return func(cc *pgx.ConnConfig) {
					for k, v := range params {
						cc.RuntimeParams[k] = v
					}
				}
			}
			a := connect(t, p, with(map[string]string{
				"application_name": "client-a", "search_path": "a_schema, public",
				"DateStyle": "SQL, DMY", "TimeZone": "Asia/Tokyo", "extra_float_digits": "1",
			}))
			b := connect(t, p, with(map[string]string{"application_name": "client-b", "TimeZone": "UTC"}))
			plain := connect(t, p)
			if got := a.PgConn().ParameterStatus("TimeZone"); got != "Asia/Tokyo" {
				t.Errorf("a's TimeZone reported at login = %q, want Asia/Tokyo", got)
			}
			if got := a.PgConn().ParameterStatus("DateStyle"); got != "SQL, DMY" {
				t.Errorf("a's DateStyle reported at login = %q, want \"SQL, DMY\"", got)
			}
			type settings struct{ app, path, style, tz, digits string }
			read := func(conn *pgx.Conn) settings {
				t.Helper()
				var s settings
				err := conn.QueryRow(ctx, `SELECT current_setting('application_name'), current_setting('search_path'),
					current_setting('DateStyle'), current_setting('TimeZone'), current_setting('extra_float_digits')`).
					Scan(&s.app, &s.path, &s.style, &s.tz, &s.digits)
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			def := read(plain)
			wantA := settings{"client-a", "a_schema, public", "SQL, DMY", "Asia/Tokyo", "1"}
			wantB := settings{"client-b", def.path, def.style, "UTC", def.digits}
			if def.app == "client-a" || def.app == "client-b" || def.tz == "Asia/Tokyo" {
				t.Fatalf("a client without parameters saw another's: %+v", def)
			}
			// Interleaved, on one server connection (transaction pooling).
			for i := range 4 {
				if got := read(a); got != wantA {
					t.Fatalf("round %d: a sees %+v, want %+v", i, got, wantA)
				}
				if got := read(b); got != wantB {
					t.Fatalf("round %d: b sees %+v, want %+v", i, got, wantB)
				}
				if got := read(plain); got != def {
					t.Fatalf("round %d: the client without parameters sees %+v, want the defaults %+v", i, got, def)
				}
			}
		})
	}
}

// A value the server refuses fails the login with the server's error, as a
// direct connection would, and the server connection is not reused.
func TestStartupParameterRefused(t *testing.T) {
	c := needCluster(t)
	p, _ := startProxy(t, testConfig(c, false))
	cc, err := pgx.ParseConfig(dsn(p, testUser, testPass, testDB))
	if err != nil {
		t.Fatal(err)
	}
	cc.RuntimeParams["DateStyle"] = "no such style"
	_, err = pgx.ConnectConfig(ctxT(t), cc)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "22023" {
		t.Fatalf("login with a bad DateStyle: %v; want SQLSTATE 22023 from the server", err)
	}
	// The pool still serves.
	conn := connect(t, p)
	var one int
	if err := conn.QueryRow(ctxT(t), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the refused login: %v", err)
	}
}
