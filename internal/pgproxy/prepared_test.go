package pgproxy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgbench -M prepared and -M extended, in transaction mode, with more
// clients than server connections and five clients per pgbench thread: no
// errors, and the TPC-B invariant holds afterwards (the balances add up to
// the history's deltas).
func TestPgbenchPreparedTransactionMode(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.Databases[0].PoolSize = 3
	p, _ := startProxy(t, pc)
	pgbench := filepath.Join(c.bin, "pgbench")
	host, port := splitAddr(t, p.Addr().String())
	env := append(os.Environ(), "PGPASSWORD="+testPass)
	init := exec.Command(pgbench, "-i", "-q", "-s", "1", "-h", host, "-p", port, "-U", testUser, testDB)
	init.Env = env
	if out, err := boundedOutput(t, init, 2*time.Minute); err != nil {
		t.Fatalf("pgbench -i through the proxy: %v\n%s", err, out)
	}
	for _, mode := range []string{"prepared", "extended", "simple"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(pgbench, "-n", "-M", mode, "-c", "10", "-j", "2", "-t", "25", "-h", host, "-p", port, "-U", testUser, testDB)
			cmd.Env = env
			out, err := boundedOutput(t, cmd, 2*time.Minute)
			if err != nil {
				t.Fatalf("pgbench -M %s: %v\n%s", mode, err, out)
			}
			m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindSubmatch(out)
			if m == nil || string(m[1]) != "250" {
				t.Fatalf("pgbench -M %s did not process 250 transactions:\n%s", mode, out)
			}
			if f := regexp.MustCompile(`number of failed transactions: (\d+)`).FindSubmatch(out); f != nil && string(f[1]) != "0" {
				t.Fatalf("pgbench -M %s: failed transactions:\n%s", mode, out)
			}
		})
	}
	conn := connect(t, p)
	var balances, deltas int64
	if err := conn.QueryRow(ctxT(t), "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)").Scan(&balances, &deltas); err != nil {
		t.Fatal(err)
	}
	if balances != deltas {
		t.Errorf("sum(abalance) = %d, sum(delta) = %d: a transaction was lost or doubled", balances, deltas)
	}
	if st := p.State(); st.Pools[0].Open > 3 {
		t.Errorf("pool opened %d connections, max 3", st.Pools[0].Open)
	}
}

func splitAddr(t testing.TB, addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

// A statement prepared by one client runs on whichever server connection
// the client gets next; more statements than the cap per connection evict
// the least recently used, which is prepared again when needed.
func TestPreparedStatementsAcrossConnectionsAndCap(t *testing.T) {
	c := needCluster(t)
	pc := testConfig(c, false)
	pc.Databases[0].PoolSize = 2
	pc.PreparedStatements = 3
	p, _ := startProxy(t, pc)
	conn := connect(t, p)
	other := connect(t, p)
	ctx := ctxT(t)
	const n = 7
	for i := range n {
		if _, err := conn.Prepare(ctx, "s"+strconv.Itoa(i), fmt.Sprintf("SELECT %d + $1::int", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Keep the other connection busy now and then, so conn moves between
	// the two server connections.
	for round := range 3 {
		tx, err := other.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			var got int
			if err := conn.QueryRow(ctx, "s"+strconv.Itoa(i), round).Scan(&got); err != nil {
				t.Fatalf("round %d statement s%d: %v", round, i, err)
			}
			if got != i+round {
				t.Fatalf("s%d(%d) = %d", i, round, got)
			}
		}
		tx.Rollback(ctx)
	}
	// Deallocate forgets the client's name; the name can be prepared again
	// with another text.
	if err := conn.Deallocate(ctx, "s0"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Prepare(ctx, "s0", "SELECT 100 + $1::int"); err != nil {
		t.Fatal(err)
	}
	var got int
	if err := conn.QueryRow(ctx, "s0", 1).Scan(&got); err != nil || got != 101 {
		t.Fatalf("re-prepared s0 = %d, %v; want 101", got, err)
	}
	// An unknown name gets the server's own error.
	if _, err := conn.PgConn().ExecPrepared(ctx, "nope", nil, nil, nil).Close(); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("unknown statement: %v", err)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatalf("session after an error: %v", err)
	}
	_ = pgx.ErrNoRows
}
