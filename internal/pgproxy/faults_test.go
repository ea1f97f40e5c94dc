package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
)

// The replica dies during a run of reads: at most the statement in flight
// fails, the rest fall back to the primary; the replica comes back.
func TestReplicaKilledReadsFallBack(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, true)
	zero := config.Duration(0)
	pc.Databases[0].ReadWriteSplit.ReadYourWrites = &zero
	p, _ := startProxy(t, pc)
	waitLag(t, p)
	conn := connect(t, p)
	if !onReplica(t, conn, "SELECT pg_is_in_recovery()") {
		t.Fatal("reads do not reach the replica to begin with")
	}
	defer func() {
		if c.replica.cmd == nil {
			if err := c.start(c.replica); err != nil {
				t.Fatalf("restart replica: %v", err)
			}
		}
	}()
	errs, onPrimary := 0, 0
	for i := range 60 {
		if i == 10 {
			c.kill(c.replica)
		}
		var r bool
		err := conn.QueryRow(context.Background(), "SELECT pg_is_in_recovery()").Scan(&r)
		switch {
		case err != nil:
			t.Logf("read %d: %v", i, err)
			errs++
		case !r && i > 10:
			onPrimary++
		}
	}
	if errs > 1 {
		t.Errorf("%d reads failed after the replica died, want at most the one in flight", errs)
	}
	if onPrimary < 45 {
		t.Errorf("only %d reads fell back to the primary", onPrimary)
	}
	if err := c.start(c.replica); err != nil {
		t.Fatalf("restart replica: %v", err)
	}
	eventually(t, "replica back in use", func() bool {
		var r bool
		return conn.QueryRow(context.Background(), "SELECT pg_is_in_recovery()").Scan(&r) == nil && r
	})
}

// The primary dies and comes back: clients get clear errors (a SQLSTATE of
// class 08 or 57) meanwhile, and the same sessions work again once it is up.
func TestPrimaryRestartPoolRecovers(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.Breaker.Failures = 2
	p, _ := startProxy(t, pc)
	conn := connect(t, p)
	ctx := ctxT(t)
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	c.kill(c.primary)
	restarted := false
	defer func() {
		if !restarted {
			c.start(c.primary)
		}
	}()
	for range 4 {
		_, err := conn.Exec(ctx, "SELECT 1")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || !(strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57")) {
			t.Fatalf("with the primary down: err = %v, want a PostgreSQL error of class 08 or 57", err)
		}
	}
	eventually(t, "breaker open", func() bool { return p.State().Pools[0].Down })
	if err := c.start(c.primary); err != nil {
		t.Fatalf("restart primary: %v", err)
	}
	restarted = true
	eventually(t, "the session works again", func() bool {
		_, err := conn.Exec(ctx, "SELECT 1")
		return err == nil
	})
	if p.State().Pools[0].Down {
		t.Error("breaker still open after the server answered")
	}
	fresh := connect(t, p)
	if _, err := fresh.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("new client after recovery: %v", err)
	}
}

// A client that vanishes in the middle of a transaction: its transaction
// is rolled back and its server connection serves the next client.
func TestClientGoneMidTransaction(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.Databases[0].PoolSize = 1
	p, _ := startProxy(t, pc)
	ctx := ctxT(t)
	setup := connect(t, p)
	if _, err := setup.Exec(ctx, "CREATE TABLE IF NOT EXISTS gone (id int)"); err != nil {
		t.Fatal(err)
	}
	setup.Exec(ctx, "TRUNCATE gone")
	a := connect(t, p)
	if _, err := a.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Exec(ctx, "INSERT INTO gone VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	// The socket closes without a Terminate, as when a process dies.
	a.PgConn().Conn().Close()
	var n int
	if err := setup.QueryRow(ctx, "SELECT count(*) FROM gone").Scan(&n); err != nil {
		t.Fatalf("next client: %v", err)
	}
	if n != 0 {
		t.Errorf("the vanished client's insert is visible: %d rows", n)
	}
	if st := p.State().Pools[0]; st.Open != 1 {
		t.Errorf("pool has %d connections, want the one reused", st.Open)
	}
}

// A CancelRequest to the proxy, with the key data the proxy gave the
// client, cancels the query on the server running it.
func TestCancelRequest(t *testing.T) {
	c := needCluster(t)
	p, reg := startProxy(t, testConfig(c, false))
	conn := connect(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := conn.Exec(ctx, "SELECT pg_sleep(20)")
	if err == nil {
		t.Fatal("pg_sleep(20) was not cancelled")
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("cancel took %v", d)
	}
	_ = reg
	eventually(t, "cancel forwarded", func() bool {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "penstock_pg_cancel_requests_total" && mf.GetMetric()[0].GetCounter().GetValue() >= 1 {
				return true
			}
		}
		return false
	})
}

// rawLogin opens a protocol-level client through p with trust auth.
func rawLogin(t testing.TB, p *Proxy) (net.Conn, *pgproto3.Frontend) {
	t.Helper()
	conn, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber, Parameters: map[string]string{"user": testUser, "database": testDB}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return conn, fe
		}
	}
}

// A message longer than max_message_bytes is a protocol error, answered
// before its body is read, and the connection closes.
func TestOversizedMessage(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.AuthType = config.PostgresAuthTrust
	pc.MaxMessageBytes = 64 << 10
	p, _ := startProxy(t, pc)
	conn, fe := rawLogin(t, p)
	// A Query header announcing 1 GiB, and no body.
	if _, err := conn.Write([]byte{'Q', 0x40, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatalf("want an ErrorResponse, got %v", err)
	}
	e, ok := msg.(*pgproto3.ErrorResponse)
	if !ok || e.Code != "08P01" || e.Severity != "FATAL" {
		t.Fatalf("got %#v, want FATAL 08P01", msg)
	}
	if _, err := fe.Receive(); err == nil {
		t.Fatal("connection still open after the protocol error")
	}
}

// A server connection whose backend is terminated while it sits idle in
// the pool is taken out of it at once, by its reader: no client gets it,
// and none sees an error.
func TestIdleServerConnectionTerminated(t *testing.T) {
	c := needCluster(t)
	p, reg := startProxy(t, testConfig(c, false))
	ctx := ctxT(t)
	conn := connect(t, p)
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	primaryOpen := func() int {
		for _, ps := range p.State().Pools {
			if ps.Role == "primary" {
				return ps.Open
			}
		}
		return -1
	}
	if n := primaryOpen(); n != 1 {
		t.Fatalf("primary pool has %d connections open, want 1", n)
	}
	if err := c.exec(ctx, c.primary, testSuperuser, testSuperPass, testDB, fmt.Sprintf("SELECT pg_terminate_backend(%d)", pid)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the terminated connection leaving the pool", func() bool { return primaryOpen() == 0 })
	var again int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&again); err != nil {
		t.Fatalf("the next statement failed: %v", err)
	}
	if again == pid {
		t.Errorf("the next statement ran on the terminated backend %d", pid)
	}
	lost := testutil.ToFloat64(counterWith(t, reg, "penstock_pg_server_connections_lost_total", nil))
	if lost != 0 {
		t.Errorf("penstock_pg_server_connections_lost_total = %v, want 0 (no client held it)", lost)
	}
}
