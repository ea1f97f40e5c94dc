package pgproxy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/config"
)

// testConfig is a postgres section for the test cluster: transaction
// pooling, SCRAM, one database with the primary (and, with replica, the
// replica and read/write splitting).
func testConfig(c *pgCluster, replica bool) *config.Postgres {
	pc := &config.Postgres{
		Listen:   "127.0.0.1:0",
		AuthType: config.PostgresAuthSCRAM,
		Users:    []config.PostgresUser{{Name: testUser, Password: testPass}},
		Databases: []config.PostgresDatabase{{
			Name: testDB, Primary: c.primary.addr(), PoolSize: 4,
		}},
	}
	if replica {
		pc.Databases[0].Replicas = []string{c.replica.addr()}
		pc.Databases[0].ReadWriteSplit = &config.PostgresSplit{}
	}
	cfg := &config.Config{Postgres: pc}
	cfg.SetDefaults()
	pc.Timeouts.QueryWait = config.Duration(10 * time.Second)
	pc.Breaker.ProbeInterval = config.Duration(200 * time.Millisecond)
	if replica {
		pc.Databases[0].ReadWriteSplit.LagCheckInterval = config.Duration(100 * time.Millisecond)
	}
	return pc
}

// startProxy starts a proxy for pc on a fresh registry and stops it at the
// test's end.
func startProxy(t testing.TB, pc *config.Postgres) (*Proxy, *prometheus.Registry) {
	t.Helper()
	cfg := &config.Config{Postgres: pc, Listeners: []config.Listener{{Name: "x", Address: "127.0.0.1:0"}}}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	reg := prometheus.NewRegistry()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := New(pc, log, reg)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, reg
}

// dsn is a libpq connection string for user/password to db through p.
func dsn(p *Proxy, user, password, db string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", user, password, p.Addr().String(), db)
}

// connect opens a pgx connection through p as the test user.
func connect(t testing.TB, p *Proxy, opts ...func(*pgx.ConnConfig)) *pgx.Conn {
	t.Helper()
	cc, err := pgx.ParseConfig(dsn(p, testUser, testPass, testDB))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range opts {
		o(cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatalf("connect through the proxy: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or 20 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
