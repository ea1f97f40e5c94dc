package pgproxy

import (
	"testing"
)

// The statements read/write splitting must get right, traps included:
// where each goes (replica only when certainly read-only) and what session
// state it leaves.
func TestClassify(t *testing.T) {
	volatile := map[string]bool{"audit_log": true}
	for _, tc := range []struct {
		name    string
		sql     string
		read    bool
		kind    string
		effects Effect
		begin   bool
		ro      bool
	}{
		{"plain select", "SELECT abalance FROM pgbench_accounts WHERE aid = $1", true, "select", 0, false, false},
		{"lowercase with comment", "/* hi */ select 1 -- trailing", true, "select", 0, false, false},
		{"nested comment", "/* a /* b */ c */ SELECT 1", true, "select", 0, false, false},
		{"select for update", "SELECT * FROM t WHERE id = 1 FOR UPDATE", false, "select", 0, false, false},
		{"select for share", "SELECT * FROM t FOR SHARE", false, "select", 0, false, false},
		{"select for no key update", "select * from t for no key update skip locked", false, "select", 0, false, false},
		{"select for key share", "SELECT 1 FROM t FOR KEY SHARE", false, "select", 0, false, false},
		{"select into", "SELECT * INTO new_t FROM t", false, "select", 0, false, false},
		{"cte with insert", "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x", false, "select", 0, false, false},
		{"cte with delete", "WITH d AS (DELETE FROM t RETURNING id) SELECT count(*) FROM d", false, "select", 0, false, false},
		{"cte with update", "with u as (update t set a = 1 returning a) select * from u", false, "select", 0, false, false},
		{"read-only cte", "WITH x AS (SELECT 1 AS a) SELECT a FROM x", true, "select", 0, false, false},
		{"nextval", "SELECT nextval('seq')", false, "select", 0, false, false},
		{"schema-qualified nextval", "SELECT pg_catalog.nextval('seq')", false, "select", 0, false, false},
		{"configured volatile function", "SELECT audit_log($1)", false, "select", 0, false, false},
		{"configured name case-insensitive", "SELECT Audit_Log(1)", false, "select", 0, false, false},
		{"safe function", "SELECT count(*), now(), lower(name) FROM t", true, "select", 0, false, false},
		{"advisory lock", "SELECT pg_advisory_lock(42)", false, "select", EffectAdvisoryLock, false, false},
		{"try advisory lock", "select pg_try_advisory_lock(1, 2)", false, "select", EffectAdvisoryLock, false, false},
		{"xact advisory lock", "SELECT pg_advisory_xact_lock(42)", false, "select", 0, false, false},
		{"set_config", "SELECT set_config('search_path', 'x', false)", false, "select", EffectSet, false, false},
		{"keyword in string", "SELECT 'insert into t; for update' AS s", true, "select", 0, false, false},
		{"keyword in dollar quote", "SELECT $q$ delete from t $q$", true, "select", 0, false, false},
		{"keyword in E string", `SELECT E'it\'s an update'`, true, "select", 0, false, false},
		{"quoted identifier named update", `SELECT "update" FROM t`, true, "select", 0, false, false},
		{"values", "VALUES (1), (2)", true, "select", 0, false, false},
		{"table", "TABLE t", true, "select", 0, false, false},
		{"insert", "INSERT INTO t VALUES ($1)", false, "insert", 0, false, false},
		{"update", "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2", false, "update", 0, false, false},
		{"delete", "DELETE FROM t", false, "delete", 0, false, false},
		{"merge", "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE", false, "update", 0, false, false},
		{"ddl", "CREATE TABLE t (id int)", false, "ddl", 0, false, false},
		{"begin", "BEGIN", false, "begin", 0, true, false},
		{"begin read only", "BEGIN READ ONLY", false, "begin", 0, true, true},
		{"start transaction read only", "START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", false, "begin", 0, true, true},
		{"begin read write", "BEGIN READ WRITE", false, "begin", 0, true, false},
		{"commit", "COMMIT", false, "commit", 0, false, false},
		{"set", "SET search_path TO x", false, "set", EffectSet, false, false},
		{"set session", "SET SESSION statement_timeout = 5", false, "set", EffectSet, false, false},
		{"set local", "SET LOCAL statement_timeout = 5", false, "set", 0, false, false},
		{"set transaction", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", false, "set", 0, false, false},
		{"reset", "RESET ALL", false, "set", EffectSet, false, false},
		{"listen", "LISTEN chan", false, "other", EffectListen, false, false},
		{"unlisten", "UNLISTEN *", false, "other", EffectListen, false, false},
		{"temp table", "CREATE TEMP TABLE x (a int)", false, "ddl", EffectTempTable, false, false},
		{"temporary table", "create temporary table x as select 1", false, "ddl", EffectTempTable, false, false},
		{"sql prepare", "PREPARE p AS SELECT 1", false, "other", EffectPrepare, false, false},
		{"prepare transaction", "PREPARE TRANSACTION 'x'", false, "other", 0, false, false},
		{"cursor with hold", "DECLARE c CURSOR WITH HOLD FOR SELECT 1", false, "other", EffectPrepare, false, false},
		{"cursor", "DECLARE c CURSOR FOR SELECT 1", false, "other", 0, false, false},
		{"discard all", "DISCARD ALL", false, "other", EffectDiscard, false, false},
		{"deallocate", "DEALLOCATE ALL", false, "other", EffectDiscard, false, false},
		{"explain select", "EXPLAIN SELECT * FROM t", true, "other", 0, false, false},
		{"explain analyze insert", "EXPLAIN ANALYZE INSERT INTO t VALUES (1)", false, "other", 0, false, false},
		{"explain options", "EXPLAIN (ANALYZE, BUFFERS) SELECT 1", true, "other", 0, false, false},
		{"show", "SHOW search_path", false, "other", 0, false, false},
		{"two reads", "SELECT 1; SELECT 2", true, "select", 0, false, false},
		{"read then write", "SELECT 1; DELETE FROM t", false, "select", 0, false, false},
		{"begin in multi", "BEGIN; SELECT 1; COMMIT", false, "begin", 0, false, false},
		{"empty", "", false, "other", 0, false, false},
		{"only semicolons", " ; ; ", false, "other", 0, false, false},
		{"unterminated string", "SELECT 'abc", true, "select", 0, false, false},
		{"unterminated comment", "SELECT 1 /* and then", true, "select", 0, false, false},
		{"parameter", "SELECT $1", true, "select", 0, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Classify(tc.sql, volatile)
			if got.Read != tc.read || got.Kind != tc.kind || got.Effects != tc.effects || got.Begin != tc.begin || got.ReadOnly != tc.ro {
				t.Errorf("Classify(%q) = %+v, want read=%v kind=%s effects=%v begin=%v read_only=%v",
					tc.sql, got, tc.read, tc.kind, tc.effects, tc.begin, tc.ro)
			}
		})
	}
}

// FuzzClassify checks that no input panics, and that the answer does not
// depend on trailing whitespace or a trailing semicolon.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"SELECT 1", "select * from t for update", "WITH x AS (INSERT INTO t VALUES (1)) SELECT 1",
		"SELECT $a$ x $a$", "SELECT E'\\''", `SELECT "a""b"`, "/* /* */ */ SELECT 1", "BEGIN READ ONLY",
		"SET LOCAL x = 1", "SELECT pg_advisory_lock(1)", "$1", "$$", "'", "\"", "/*", "--",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		a := Classify(sql, nil)
		if again := Classify(sql, nil); again != a {
			// The pooled token scratch must keep nothing of a call.
			t.Fatalf("Classify(%q) = %+v, then %+v", sql, a, again)
		}
		b := Classify(sql+" ;\n", nil)
		if a != b {
			// A trailing line comment or open literal swallows what follows.
			if hasOpenTail(sql) {
				return
			}
			t.Errorf("Classify(%q) = %+v but with a trailing ';' %+v", sql, a, b)
		}
	})
}

// hasOpenTail reports whether sql ends inside a comment or literal, where
// appended text changes meaning.
func hasOpenTail(sql string) bool {
	// Lex with a sentinel: if the sentinel word is not seen, the tail was
	// swallowed.
	seen := false
	lex(sql+"\n zzsentinel", func(t token) {
		if t.word == "zzsentinel" {
			seen = true
		}
	})
	return !seen
}

// Classify runs on every simple query and Parse: the pgbench statements,
// as sent, one per transaction kind.
func BenchmarkClassify(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{
		{"select", "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;"},
		{"update", "UPDATE pgbench_accounts SET abalance = abalance + -3212 WHERE aid = 48213;"},
		{"begin", "BEGIN;"},
		{"multi", "SELECT 1; SELECT now(), current_user FROM pg_stat_activity WHERE pid = 12"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				Classify(bc.sql, nil)
			}
		})
	}
}
