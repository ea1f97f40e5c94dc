package pgproxy

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/penstock-dev/penstock/internal/config"
)

// With session_state: pin, a SET outside a transaction keeps the client on
// its server connection; other clients never see the setting, and the
// connection is reset before it serves anyone else.
func TestSessionStatePin(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.Databases[0].PoolSize = 2
	p, _ := startProxy(t, pc)
	ctx := ctxT(t)
	a := connect(t, p)
	if _, err := a.Exec(ctx, "SET application_name = 'pinned-client'"); err != nil {
		t.Fatal(err)
	}
	var pid1, pid2 int
	a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1)
	b := connect(t, p)
	for range 5 {
		var name string
		if err := b.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&name); err != nil {
			t.Fatal(err)
		}
		if name == "pinned-client" {
			t.Fatal("another client saw the pinned client's setting")
		}
	}
	a.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2)
	var name string
	a.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&name)
	if pid1 != pid2 || name != "pinned-client" {
		t.Fatalf("pinned client moved (%d → %d) or lost its setting (%q)", pid1, pid2, name)
	}
	a.Close(ctx)
	// Once a has gone, its connection is reset: nobody sees the setting.
	for range 3 {
		cl := connect(t, p)
		var got string
		if err := cl.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got == "pinned-client" {
			t.Fatal("a reset connection still carried the setting")
		}
		cl.Close(ctx)
	}
}

// With session_state: reject, each kind of session state is refused with
// SQLSTATE 0A000 and nothing is left on the server connection; SET LOCAL in
// a transaction is fine.
func TestSessionStateReject(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.SessionState = config.PostgresStateReject
	p, _ := startProxy(t, pc)
	ctx := ctxT(t)
	conn := connect(t, p)
	for _, sql := range []string{
		"SET search_path TO nowhere",
		"LISTEN events",
		"SELECT pg_advisory_lock(7)",
		"CREATE TEMP TABLE scratch (a int)",
		"PREPARE p AS SELECT 1",
	} {
		t.Run(sql, func(t *testing.T) {
			_, err := conn.PgConn().Exec(ctx, sql).ReadAll()
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
				t.Fatalf("err = %v, want SQLSTATE 0A000", err)
			}
		})
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = 1000"); err != nil {
		t.Fatalf("SET LOCAL: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var locked int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").Scan(&locked); err != nil || locked != 0 {
		t.Fatalf("advisory locks held: %d (%v)", locked, err)
	}
}

// In pool_mode statement each statement may run on another server
// connection, and a transaction block is refused: BEGIN in a simple Query
// with ERROR 0A000 (the session goes on), a block opened through the
// extended protocol with FATAL 0A000 and the connection closed, the block
// rolled back.
func TestStatementMode(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.PoolMode = config.PostgresPoolStatement
	pc.Databases[0].PoolSize = 1
	p, _ := startProxy(t, pc)
	ctx := ctxT(t)
	a, b := connect(t, p), connect(t, p)
	for i := range 3 {
		for _, conn := range []*pgx.Conn{a, b} {
			var n int
			if err := conn.QueryRow(ctx, "SELECT $1::int + 1", i).Scan(&n); err != nil || n != i+1 {
				t.Fatalf("statement %d: %d, %v", i, n, err)
			}
		}
	}
	_, err := a.PgConn().Exec(ctx, "BEGIN").ReadAll()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != codeFeatureNotSupported {
		t.Fatalf("BEGIN: %v; want SQLSTATE 0A000", err)
	}
	var one int
	if err := a.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after the refused BEGIN: %v", err)
	}
	err = a.PgConn().ExecParams(ctx, "BEGIN", nil, nil, nil, nil).Read().Err
	if err == nil {
		// The FATAL comes with the block's ReadyForQuery: the next
		// request finds the connection closed.
		err = a.QueryRow(ctx, "SELECT 1").Scan(&one)
	}
	if err == nil {
		t.Fatal("a transaction block opened through the extended protocol was let through")
	}
	// The server connection was rolled back and serves b.
	var status string
	if err := b.QueryRow(ctx, "SELECT 'ok'").Scan(&status); err != nil || status != "ok" {
		t.Fatalf("b after a's refused block: %q, %v", status, err)
	}
}
