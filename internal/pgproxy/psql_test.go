package pgproxy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// psql works through the proxy unchanged: it asks for TLS first (answered
// no), logs in with SCRAM, and runs a script with a transaction, a COPY
// from stdin and meta-commands.
func TestPsql(t *testing.T) {
	c := needCluster(t)
	p, _ := startProxy(t, testConfig(c, false))
	host, port := splitAddr(t, p.Addr().String())
	script := `CREATE TABLE IF NOT EXISTS psql_t (id int, name text);
TRUNCATE psql_t;
BEGIN;
INSERT INTO psql_t VALUES (1, 'one');
COMMIT;
COPY psql_t FROM STDIN;
2	two
3	three
\.
SELECT count(*) || ' rows' FROM psql_t;
\dt psql_t
`
	cmd := exec.Command(filepath.Join(c.bin, "psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", port, "-U", testUser, "-d", testDB, "-f", "-")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+testPass, "PGSSLMODE=prefer")
	cmd.Stdin = strings.NewReader(script)
	out, err := boundedOutput(t, cmd, 2*time.Minute)
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "3 rows") || !strings.Contains(string(out), "psql_t") {
		t.Fatalf("psql output:\n%s", out)
	}
}
