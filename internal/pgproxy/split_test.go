package pgproxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/penstock-dev/penstock/internal/config"
)

// waitLag waits until the proxy has measured the replica's lag and found
// it within max_replica_lag, so reads may go there: an earlier test's
// writes (pgbench) or restart can leave the replica replaying for a while.
func waitLag(t testing.TB, p *Proxy) {
	t.Helper()
	maxLag := int64(p.rt.Load().cfg.Databases[0].ReadWriteSplit.MaxReplicaLag)
	eventually(t, "replica lag measured and within max_replica_lag", func() bool {
		for _, ps := range p.State().Pools {
			if ps.Role == "replica" && ps.LagBytes >= 0 && ps.LagBytes <= maxLag {
				return true
			}
		}
		return false
	})
}

// inRecovery reports where a statement ran: true on the replica.
func onReplica(t testing.TB, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, sql string) bool {
	t.Helper()
	var r bool
	if err := q.QueryRow(ctxT(t), sql).Scan(&r); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return r
}

// Read-only statements outside write transactions go to the replica; the
// traps go to the primary.
func TestReadWriteSplitRouting(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, true)
	zero := config.Duration(0)
	pc.Databases[0].ReadWriteSplit.ReadYourWrites = &zero
	pc.Databases[0].ReadWriteSplit.VolatileFunctions = []string{"bump"}
	p, reg := startProxy(t, pc)
	ctx := ctxT(t)
	setup := connect(t, p)
	for _, sql := range []string{
		"CREATE TABLE IF NOT EXISTS rw (id int PRIMARY KEY, v text)",
		"CREATE SEQUENCE IF NOT EXISTS rw_seq",
		"CREATE OR REPLACE FUNCTION bump() RETURNS bool LANGUAGE sql AS 'SELECT pg_is_in_recovery()'",
		"INSERT INTO rw VALUES (1, 'one') ON CONFLICT DO NOTHING",
	} {
		if _, err := setup.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	waitLag(t, p)
	direct, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable", c.replica.port, testUser, testPass, testDB))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	eventually(t, "replica replayed the setup", func() bool {
		var n int
		direct.QueryRow(ctx, "SELECT count(*) FROM rw WHERE id = 1").Scan(&n)
		return n == 1
	})
	conn := connect(t, p)
	for _, tc := range []struct {
		name    string
		sql     string
		replica bool
	}{
		{"select", "SELECT pg_is_in_recovery()", true},
		{"select from table", "SELECT pg_is_in_recovery() FROM rw WHERE id = 1", true},
		{"cte read", "WITH x AS (SELECT 1) SELECT pg_is_in_recovery() FROM x", true},
		{"for update", "SELECT pg_is_in_recovery() FROM rw WHERE id = 1 FOR UPDATE", false},
		{"nextval", "SELECT pg_is_in_recovery() FROM (SELECT nextval('rw_seq')) s", false},
		{"configured volatile function", "SELECT bump()", false},
		{"cte with insert", "WITH i AS (INSERT INTO rw VALUES (100 + (random()*1e6)::int, 'x') ON CONFLICT DO NOTHING RETURNING 1) SELECT pg_is_in_recovery() FROM (SELECT count(*) FROM i) s", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := onReplica(t, conn, tc.sql); got != tc.replica {
				t.Errorf("ran on replica = %v, want %v", got, tc.replica)
			}
		})
	}
	t.Run("explicit read-only transaction", func(t *testing.T) {
		tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if !onReplica(t, tx, "SELECT pg_is_in_recovery()") {
			t.Errorf("BEGIN READ ONLY ran on the primary (%s)", splitState(p, reg))
		}
	})
	t.Run("read in a write transaction", func(t *testing.T) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if onReplica(t, tx, "SELECT pg_is_in_recovery()") {
			t.Error("a read inside BEGIN ran on the replica")
		}
	})
	routed := testutil.ToFloat64(counterWith(t, reg, "penstock_pg_routed_statements_total", map[string]string{"kind": "select", "target": "replica"}))
	if routed < 3 {
		t.Errorf("routed select→replica = %v, want ≥ 3", routed)
	}
}

// splitState tells why a read may have gone to the primary: the replicas'
// measured lag and breaker, and the fallbacks counted.
func splitState(p *Proxy, reg *prometheus.Registry) string {
	var b strings.Builder
	for _, ps := range p.State().Pools {
		if ps.Role == "replica" {
			fmt.Fprintf(&b, "replica %s: lag %d bytes, down %v; ", ps.Server, ps.LagBytes, ps.Down)
		}
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "penstock_pg_replica_fallbacks_total" {
			for _, m := range mf.GetMetric() {
				fmt.Fprintf(&b, "fallbacks %v", m.GetCounter().GetValue())
			}
		}
	}
	return b.String()
}

// counterWith finds one series of a counter family by some of its labels.
func counterWith(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
	g.Set(sum)
	return g
}

// A client reads its own writes: within the read-your-writes window after
// a write, its reads stay on the primary; a client that wrote nothing reads
// from the replica.
func TestReadYourWrites(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, true)
	window := config.Duration(30 * time.Second)
	pc.Databases[0].ReadWriteSplit.ReadYourWrites = &window
	p, _ := startProxy(t, pc)
	ctx := ctxT(t)
	writer := connect(t, p)
	if _, err := writer.Exec(ctx, "CREATE TABLE IF NOT EXISTS ryw (id bigint PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	waitLag(t, p)
	for i := range 50 {
		id := time.Now().UnixNano() + int64(i)
		if _, err := writer.Exec(ctx, "INSERT INTO ryw VALUES ($1)", id); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := writer.QueryRow(ctx, "SELECT count(*) FROM ryw WHERE id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Fatalf("write %d not read back", i)
		}
	}
	if onReplica(t, writer, "SELECT pg_is_in_recovery()") {
		t.Error("a read inside the window went to the replica")
	}
	reader := connect(t, p)
	if !onReplica(t, reader, "SELECT pg_is_in_recovery()") {
		t.Error("a client that never wrote read from the primary")
	}
	_ = strings.TrimSpace
}

// A replica whose lag is above max_replica_lag, or not yet measured, gets
// no reads; they go to the primary.
func TestLaggingReplicaSkipped(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, true)
	zero := config.Duration(0)
	split := pc.Databases[0].ReadWriteSplit
	split.ReadYourWrites = &zero
	split.MaxReplicaLag = 1 << 20
	// The monitor never ticks in this test: the lag is what it sets.
	split.LagCheckInterval = config.Duration(time.Hour)
	pc.Breaker.ProbeInterval = config.Duration(time.Hour)
	p, _ := startProxy(t, pc)
	conn := connect(t, p)
	replica := p.rt.Load().dbs[testDB].replicas[0]
	for _, tc := range []struct {
		name    string
		lag     int64
		replica bool
	}{
		{"not measured yet", -1, false},
		{"in sync", 0, true},
		{"just under the limit", 1 << 20, true},
		{"over the limit", 1<<20 + 1, false},
		{"caught up again", 100, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			replica.lag.Store(tc.lag)
			if got := onReplica(t, conn, "SELECT pg_is_in_recovery()"); got != tc.replica {
				t.Errorf("lag %d: ran on replica = %v, want %v", tc.lag, got, tc.replica)
			}
		})
	}
}

// With fallback_to_primary: false, a read that no replica can take is
// refused with 57P03 rather than sent to the primary; writes are not
// affected.
func TestNoFallbackRefusesReads(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, true)
	zero := config.Duration(0)
	off := false
	split := pc.Databases[0].ReadWriteSplit
	split.ReadYourWrites = &zero
	split.FallbackToPrimary = &off
	split.LagCheckInterval = config.Duration(time.Hour)
	pc.Breaker.ProbeInterval = config.Duration(time.Hour)
	p, _ := startProxy(t, pc)
	conn := connect(t, p)
	p.rt.Load().dbs[testDB].replicas[0].lag.Store(-1) // never measured
	_, err := conn.Exec(ctxT(t), "SELECT 1")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57P03" {
		t.Fatalf("read with no usable replica: err = %v, want SQLSTATE 57P03", err)
	}
	if _, err := conn.Exec(ctxT(t), "CREATE TABLE IF NOT EXISTS nofallback (a int)"); err != nil {
		t.Fatalf("write: %v", err)
	}
}
