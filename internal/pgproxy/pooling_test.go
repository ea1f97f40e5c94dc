package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
)

// Every exec mode of pgx works in transaction mode with more clients than
// server connections: named prepared statements (cache_statement), the
// described-then-executed unnamed ones, and the simple protocol.
func TestTransactionPoolingExecModes(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.Databases[0].PoolSize = 2
	p, _ := startProxy(t, pc)
	modes := []struct {
		name string
		mode pgx.QueryExecMode
	}{
		{"cache_statement", pgx.QueryExecModeCacheStatement},
		{"cache_describe", pgx.QueryExecModeCacheDescribe},
		{"describe_exec", pgx.QueryExecModeDescribeExec},
		{"exec", pgx.QueryExecModeExec},
		{"simple_protocol", pgx.QueryExecModeSimpleProtocol},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			const clients, rounds = 6, 40
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				conn := connect(t, p, func(cc *pgx.ConnConfig) { cc.DefaultQueryExecMode = m.mode })
				wg.Go(func() {
					ctx := context.Background()
					for r := range rounds {
						var got int
						var s string
						if err := conn.QueryRow(ctx, "SELECT $1::int + $2::int, $3::text", i, r, m.name).Scan(&got, &s); err != nil {
							errs <- fmt.Errorf("client %d round %d: %w", i, r, err)
							return
						}
						if got != i+r || s != m.name {
							errs <- fmt.Errorf("client %d round %d: got %d %q", i, r, got, s)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
	st := p.State()
	if len(st.Pools) != 1 || st.Pools[0].Open > 2 {
		t.Errorf("pools = %+v, want one pool of at most 2 connections", st.Pools)
	}
}

// A transaction keeps its server connection from BEGIN to COMMIT; between
// transactions the connection goes back to the pool.
func TestTransactionHoldsServerConnection(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.Databases[0].PoolSize = 1
	p, _ := startProxy(t, pc)
	a := connect(t, p)
	b := connect(t, p)
	ctx := ctxT(t)
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pidA1, pidA2 int
	tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidA1)
	// b waits for the only connection while a's transaction is open.
	done := make(chan int, 1)
	go func() {
		var pid int
		if err := b.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			t.Error(err)
		}
		done <- pid
	}()
	eventually(t, "b waiting", func() bool { return p.State().Pools[0].Waiting == 1 })
	tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pidA2)
	if pidA1 != pidA2 {
		t.Errorf("one transaction ran on two backends: %d, %d", pidA1, pidA2)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case pidB := <-done:
		if pidB != pidA1 {
			t.Errorf("b ran on backend %d, want the released %d", pidB, pidA1)
		}
	case <-time.After(time.Minute):
		t.Fatalf("b still waiting a minute after a's commit: %+v", p.State().Pools)
	}
}

// A full pool makes a client wait, and after query_wait it gets an
// ErrorResponse with SQLSTATE 53300; the session is still usable.
func TestWaitQueueTimeout(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.Databases[0].PoolSize = 1
	pc.Timeouts.QueryWait = config.Duration(300e6)
	p, _ := startProxy(t, pc)
	a := connect(t, p)
	b := connect(t, p)
	ctx := ctxT(t)
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx.Exec(ctx, "SELECT 1")
	_, err = b.Exec(ctx, "SELECT 1")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Fatalf("err = %v, want SQLSTATE 53300", err)
	}
	tx.Commit(ctx)
	if _, err := b.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("after the timeout the session should work: %v", err)
	}
	if got := p.State().Pools[0].WaitTimeouts; got != 1 {
		t.Errorf("wait timeouts = %d, want 1", got)
	}
}

// Clients log in with SCRAM-SHA-256, md5 or trust; a wrong password is
// refused with 28P01.
func TestClientAuth(t *testing.T) {
	c := needCluster(t)
	for _, tc := range []struct {
		name, authType, password, stored string
		ok                               bool
	}{
		{"scram plain", config.PostgresAuthSCRAM, testPass, testPass, true},
		{"scram wrong", config.PostgresAuthSCRAM, "nope", testPass, false},
		{"md5 plain", config.PostgresAuthMD5, testPass, testPass, true},
		{"md5 stored hash", config.PostgresAuthMD5, testPass, md5Hash(testPass, testUser), true},
		{"md5 wrong", config.PostgresAuthMD5, "nope", testPass, false},
		{"trust", config.PostgresAuthTrust, "anything", testPass, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := testConfig(c, false)
			pc.AuthType = tc.authType
			pc.Users[0].Password = tc.stored
			if tc.stored != testPass {
				pc.Databases[0].User, pc.Databases[0].Password = testUser, testPass
			}
			p, _ := startProxy(t, pc)
			conn, err := pgx.Connect(ctxT(t), dsn(p, testUser, tc.password, testDB))
			if tc.ok {
				if err != nil {
					t.Fatalf("login: %v", err)
				}
				defer conn.Close(context.Background())
				var one int
				if err := conn.QueryRow(ctxT(t), "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Fatalf("query: %v", err)
				}
				return
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
				t.Fatalf("err = %v, want SQLSTATE 28P01", err)
			}
		})
	}
}

// An unknown database gets 3D000.
func TestUnknownDatabase(t *testing.T) {
	c := needCluster(t)
	p, _ := startProxy(t, testConfig(c, false))
	_, err := pgx.Connect(ctxT(t), dsn(p, testUser, testPass, "nosuchdb"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "3D000" {
		t.Fatalf("err = %v, want SQLSTATE 3D000", err)
	}
}

// max_client_conn bounds the clients logged in at once: the next one gets
// FATAL 53300, and a place frees when a client leaves.
func TestMaxClientConn(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.MaxClientConn = 1
	p, _ := startProxy(t, pc)
	first := connect(t, p)
	_, err := pgx.Connect(ctxT(t), dsn(p, testUser, testPass, testDB))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Fatalf("second client: err = %v, want SQLSTATE 53300", err)
	}
	first.Close(context.Background())
	eventually(t, "a place freed", func() bool {
		conn, err := pgx.Connect(ctxT(t), dsn(p, testUser, testPass, testDB))
		if err == nil {
			conn.Close(context.Background())
		}
		return err == nil
	})
}

// With busy_poll, concurrent clients get their answers as without it,
// windows run (every answer wakes a reader with its statement in flight),
// and the count of statements in flight returns to zero once the clients
// are done; without it no window runs.
func TestBusyPoll(t *testing.T) {
	c := needCluster(t)
	for _, window := range []time.Duration{50 * time.Microsecond, 0} {
		t.Run(fmt.Sprint(window), func(t *testing.T) {
			pc := testConfig(c, false)
			pc.BusyPoll = config.Duration(window)
			pc.Databases[0].PoolSize = 8
			p, reg := startProxy(t, pc)
			ctx := ctxT(t)
			const clients, queries = 12, 60
			var wg sync.WaitGroup
			errs := make(chan error, clients)
			for i := range clients {
				conn := connect(t, p)
				wg.Go(func() {
					for j := range queries {
						var got int
						if err := conn.QueryRow(ctx, "SELECT $1::int + 1", i*1000+j).Scan(&got); err != nil {
							errs <- err
							return
						}
						if got != i*1000+j+1 {
							errs <- fmt.Errorf("client %d query %d: got %d", i, j, got)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			eventually(t, "no request in flight", func() bool { return p.busy.inflight.Load() == 0 })
			n := testutil.ToFloat64(counterWith(t, reg, "penstock_pg_busy_poll_windows_total", nil))
			if (n > 0) != (window > 0) {
				t.Errorf("penstock_pg_busy_poll_windows_total = %v with busy_poll %v", n, window)
			}
		})
	}
}

// A wake-up starts a busy_poll window only with busy_poll on and enough
// statements in flight.
func TestBusyPollWindows(t *testing.T) {
	c := needCluster(t)
	for _, tc := range []struct {
		name     string
		window   time.Duration
		inflight int64
		want     bool
	}{
		{"on and busy", 50 * time.Microsecond, config.PostgresBusyPollMinInFlight, true},
		{"on, nothing in flight", 50 * time.Microsecond, 0, false},
		{"off", 0, 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := testConfig(c, false)
			pc.BusyPoll = config.Duration(tc.window)
			p, reg := startProxy(t, pc)
			p.busy.inflight.Store(tc.inflight)
			defer p.busy.inflight.Store(0)
			p.busy.woke()
			windows := func() float64 {
				return testutil.ToFloat64(counterWith(t, reg, "penstock_pg_busy_poll_windows_total", nil))
			}
			if tc.want {
				eventually(t, "a busy_poll window", func() bool { return windows() == 1 })
				return
			}
			time.Sleep(50 * time.Millisecond)
			if n := windows(); n != 0 {
				t.Errorf("%v windows ran", n)
			}
		})
	}
	t.Run("turned on by a reload", func(t *testing.T) {
		pc := testConfig(c, false)
		p, reg := startProxy(t, pc)
		p.busy.inflight.Store(1)
		defer p.busy.inflight.Store(0)
		p.busy.woke()
		on := *pc
		on.BusyPoll = config.Duration(50 * time.Microsecond)
		if err := p.Reload(&on); err != nil {
			t.Fatal(err)
		}
		p.busy.woke()
		eventually(t, "a busy_poll window after the reload", func() bool {
			return testutil.ToFloat64(counterWith(t, reg, "penstock_pg_busy_poll_windows_total", nil)) == 1
		})
	})
}
