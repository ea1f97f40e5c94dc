package pgproxy

import (
	"strings"
	"sync"
)

// Effect is what a statement leaves on its server connection beyond its
// transaction: state that must not be handed to another client.
type Effect uint8

const (
	// EffectSet is SET or RESET (not SET LOCAL, not SET TRANSACTION), or
	// set_config: a setting changed for the rest of the session.
	EffectSet Effect = 1 << iota
	// EffectListen is LISTEN or UNLISTEN.
	EffectListen
	// EffectAdvisoryLock is a session-level advisory lock taken or
	// released (pg_advisory_lock and friends; not the _xact_ ones).
	EffectAdvisoryLock
	// EffectTempTable is CREATE TEMP/TEMPORARY (table, view, sequence).
	EffectTempTable
	// EffectPrepare is SQL-level PREPARE, or a cursor WITH HOLD, or LOAD.
	EffectPrepare
	// EffectDiscard is DISCARD or DEALLOCATE: it drops prepared
	// statements the proxy tracks on that server connection.
	EffectDiscard
)

// String names the effects, for logs and errors.
func (e Effect) String() string {
	var parts []string
	for _, n := range []struct {
		e    Effect
		name string
	}{
		{EffectSet, "SET"}, {EffectListen, "LISTEN"}, {EffectAdvisoryLock, "advisory lock"},
		{EffectTempTable, "temporary table"}, {EffectPrepare, "PREPARE/WITH HOLD cursor/LOAD"}, {EffectDiscard, "DISCARD/DEALLOCATE"},
	} {
		if e&n.e != 0 {
			parts = append(parts, n.name)
		}
	}
	return strings.Join(parts, ", ")
}

// Class is what the proxy needs to know about one SQL text (which may hold
// several statements).
type Class struct {
	// Read is true when every statement is certainly read-only and safe on
	// a replica. Anything the classifier is unsure of is not Read.
	Read bool
	// Kind is the first statement's kind for metrics: select, insert,
	// update, delete, begin, commit, rollback, set, ddl, other.
	Kind string
	// Effects are the session effects of all statements.
	Effects Effect
	// Begin is true when the text opens a transaction block (BEGIN,
	// START TRANSACTION); ReadOnly when that block is READ ONLY.
	Begin, ReadOnly bool
}

// writes reports whether the statement counts as a write for
// read-your-writes: anything not certainly read-only except transaction
// control and settings.
func (c Class) writes() bool {
	if c.Read || c.Begin {
		return false
	}
	switch c.Kind {
	case "commit", "rollback", "set":
		return false
	}
	return c.Effects == 0 || c.Effects&EffectTempTable != 0
}

// builtinVolatile are functions that write or depend on session state: a
// SELECT calling one goes to the primary.
var builtinVolatile = map[string]bool{
	"nextval": true, "setval": true, "currval": true, "lastval": true,
	"set_config": true, "txid_current": true, "pg_current_xact_id": true,
	"pg_notify": true, "pg_switch_wal": true, "pg_create_restore_point": true,
	"pg_terminate_backend": true, "pg_cancel_backend": true, "pg_reload_conf": true,
	"pg_stat_reset": true, "pg_logical_emit_message": true, "pg_current_wal_lsn": true,
	"lo_create": true, "lo_creat": true, "lo_import": true, "lo_unlink": true, "lo_open": true,
	"lo_put": true, "lo_from_bytea": true, "dblink_exec": true,
	"pg_advisory_xact_lock": true, "pg_advisory_xact_lock_shared": true,
	"pg_try_advisory_xact_lock": true, "pg_try_advisory_xact_lock_shared": true,
}

// sessionLockFunctions take or release session-level advisory locks.
var sessionLockFunctions = map[string]bool{
	"pg_advisory_lock": true, "pg_advisory_lock_shared": true,
	"pg_try_advisory_lock": true, "pg_try_advisory_lock_shared": true,
	"pg_advisory_unlock": true, "pg_advisory_unlock_shared": true, "pg_advisory_unlock_all": true,
}

// writeWords make a SELECT or WITH a write wherever they appear outside
// literals: data-modifying CTEs, SELECT INTO, locking clauses.
var writeWords = map[string]bool{
	"insert": true, "update": true, "delete": true, "merge": true, "into": true,
	"truncate": true, "copy": true, "share": true, "lock": true,
}

// Classify reads sql with a lexer (comments, quoted identifiers, string
// and dollar-quoted literals are understood; nothing is parsed beyond
// keywords and function calls) and says whether it is certainly read-only,
// and which session state it leaves. volatile adds lowercase function names
// to the built-in list of writing functions. It never panics and is
// conservative: what it does not recognise is a write.
func Classify(sql string, volatile map[string]bool) Class {
	var c Class
	c.Read = true
	sc := lexPool.Get().(*lexScratch)
	defer sc.done()
	stmts := sc.split(sql)
	if len(stmts) == 0 {
		// An empty query: harmless anywhere, but nothing to gain.
		return Class{Kind: "other"}
	}
	for i, toks := range stmts {
		s := classifyOne(toks, volatile)
		if i == 0 {
			c.Kind, c.Begin, c.ReadOnly = s.Kind, s.Begin, s.ReadOnly
		}
		c.Read = c.Read && s.Read
		c.Effects |= s.Effects
	}
	if len(stmts) > 1 {
		// A multi-statement text is one implicit transaction whose parts
		// may depend on each other; only all-read texts may leave.
		c.Begin = false
	}
	return c
}

type token struct {
	word  string // lowercase keyword or identifier; "" for punctuation and literals
	punct byte   // '(' ')' ',' '.' ';' or 0
	quote bool   // a quoted identifier (never a keyword)
}

// lexScratch holds a classification's tokens; pooled, so that Classify,
// which runs on every simple query and Parse, allocates nothing once warm.
type lexScratch struct {
	toks   []token
	bounds []int // start, end of each statement in toks
	stmts  [][]token
}

var lexPool = sync.Pool{New: func() any { return new(lexScratch) }}

// maxPooledTokens bounds what a pooled scratch keeps: one huge statement
// does not pin its token array for good.
const maxPooledTokens = 4096

// done forgets the statement (its tokens point into the query text) and
// returns the scratch to the pool.
func (sc *lexScratch) done() {
	if cap(sc.toks) > maxPooledTokens {
		return
	}
	clear(sc.toks)
	clear(sc.stmts)
	lexPool.Put(sc)
}

// split tokenises sql and splits it at top-level semicolons, dropping
// empty statements. The result lives until done.
func (sc *lexScratch) split(sql string) [][]token {
	sc.toks, sc.bounds, sc.stmts = sc.toks[:0], sc.bounds[:0], sc.stmts[:0]
	start := 0
	lex(sql, func(t token) {
		if t.punct == ';' {
			if len(sc.toks) > start {
				sc.bounds = append(sc.bounds, start, len(sc.toks))
			}
			start = len(sc.toks)
			return
		}
		sc.toks = append(sc.toks, t)
	})
	if len(sc.toks) > start {
		sc.bounds = append(sc.bounds, start, len(sc.toks))
	}
	for i := 0; i < len(sc.bounds); i += 2 {
		sc.stmts = append(sc.stmts, sc.toks[sc.bounds[i]:sc.bounds[i+1]])
	}
	return sc.stmts
}

// lowerWord returns word in lower case. Keywords come back as one shared
// string without allocating (lexWords); other words allocate only when
// they have upper-case letters.
func lowerWord(word string) string {
	upper := false
	for i := 0; i < len(word); i++ {
		c := word[i]
		if c >= 0x80 {
			return strings.ToLower(word)
		}
		upper = upper || c >= 'A' && c <= 'Z'
	}
	if !upper {
		return word
	}
	var buf [24]byte
	if len(word) <= len(buf) {
		for i := 0; i < len(word); i++ {
			c := word[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		if kw, ok := lexWords[string(buf[:len(word)])]; ok {
			return kw
		}
	}
	return strings.ToLower(word)
}

// lexWords are the words lowerWord shares: SQL keywords, the ones the
// classifier looks for first.
var lexWords = func() map[string]string {
	m := make(map[string]string)
	for _, w := range strings.Fields(`
		select from where and or not in is null as on join left right inner outer full cross
		natural using group by order having limit offset fetch first next rows row only with
		recursive union all intersect except distinct values table insert into update set
		delete returning merge matched then when else case end begin start transaction commit
		rollback abort savepoint release work isolation level read write serializable
		repeatable committed uncommitted deferrable for share key no lock nowait skip locked
		of create alter drop truncate comment grant revoke temp temporary view sequence
		function index reset discard plans listen unlisten notify prepare execute deallocate
		declare cursor close move explain analyze analyse verbose copy vacuum do call show
		local session default to true false between like ilike exists any some array cast
		asc desc nulls last over partition window filter within interval current_timestamp
		now current_user current_date lateral conflict nothing`) {
		m[w] = w
	}
	return m
}()

// lex calls emit for each token of sql. Literals are emitted as empty
// tokens; comments and whitespace are skipped. An unterminated literal or
// comment ends the input.
func lex(sql string, emit func(token)) {
	n := len(sql)
	for i := 0; i < n; {
		ch := sql[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v':
			i++
		case ch == '-' && i+1 < n && sql[i+1] == '-':
			for i < n && sql[i] != '\n' {
				i++
			}
		case ch == '/' && i+1 < n && sql[i+1] == '*':
			// Block comments nest in PostgreSQL.
			depth := 0
			for i < n {
				if i+1 < n && sql[i] == '/' && sql[i+1] == '*' {
					depth++
					i += 2
				} else if i+1 < n && sql[i] == '*' && sql[i+1] == '/' {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		case ch == '\'':
			i = skipString(sql, i+1, false)
			emit(token{})
		case (ch == 'e' || ch == 'E') && i+1 < n && sql[i+1] == '\'':
			i = skipString(sql, i+2, true)
			emit(token{})
		case ch == '"':
			j := i + 1
			var b strings.Builder
			for j < n {
				if sql[j] == '"' {
					if j+1 < n && sql[j+1] == '"' {
						b.WriteByte('"')
						j += 2
						continue
					}
					break
				}
				b.WriteByte(sql[j])
				j++
			}
			emit(token{word: b.String(), quote: true})
			i = j + 1
		case ch == '$':
			// $1 is a parameter; $tag$ ... $tag$ a dollar-quoted literal.
			j := i + 1
			for j < n && (isIdentStart(sql[j]) || j > i+1 && sql[j] >= '0' && sql[j] <= '9') {
				j++
			}
			if j < n && sql[j] == '$' {
				tag := sql[i : j+1]
				end := strings.Index(sql[j+1:], tag)
				if end < 0 {
					i = n
				} else {
					i = j + 1 + end + len(tag)
				}
				emit(token{})
				continue
			}
			for j < n && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			emit(token{})
			i = max(j, i+1)
		case ch == '(' || ch == ')' || ch == ',' || ch == '.' || ch == ';':
			emit(token{punct: ch})
			i++
		case isIdentStart(ch):
			j := i
			for j < n && isIdent(sql[j]) {
				j++
			}
			emit(token{word: lowerWord(sql[i:j])})
			i = j
		case ch >= '0' && ch <= '9':
			j := i
			for j < n && (isIdent(sql[j]) || sql[j] == '.') {
				j++
			}
			emit(token{})
			i = j
		default:
			// Operators and other punctuation carry nothing we route by.
			i++
		}
	}
}

// skipString returns the index after the string literal whose body starts
// at i; backslash escapes count in E” strings.
func skipString(sql string, i int, backslash bool) int {
	n := len(sql)
	for i < n {
		switch sql[i] {
		case '\\':
			if backslash {
				i += 2
				continue
			}
		case '\'':
			if i+1 < n && sql[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return n
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

// kinds maps a statement's first keyword to its metrics kind.
var kinds = map[string]string{
	"select": "select", "with": "select", "values": "select", "table": "select",
	"insert": "insert", "update": "update", "delete": "delete", "merge": "update",
	"begin": "begin", "start": "begin", "commit": "commit", "end": "commit",
	"rollback": "rollback", "abort": "rollback", "set": "set", "reset": "set",
	"create": "ddl", "alter": "ddl", "drop": "ddl", "truncate": "ddl", "comment": "ddl", "grant": "ddl", "revoke": "ddl",
}

func classifyOne(toks []token, volatile map[string]bool) Class {
	first := toks[0].word
	if toks[0].quote {
		first = ""
	}
	c := Class{Kind: kinds[first]}
	if c.Kind == "" {
		c.Kind = "other"
	}
	word := func(i int) string {
		if i < len(toks) && !toks[i].quote {
			return toks[i].word
		}
		return ""
	}
	switch first {
	case "select", "with", "values", "table":
		c.Read = true
		for i, t := range toks {
			if t.quote || t.word == "" {
				continue
			}
			if writeWords[t.word] {
				c.Read = false
			}
			if t.word == "for" && isLockStrength(word(i+1)) {
				c.Read = false
			}
			if i+1 < len(toks) && toks[i+1].punct == '(' {
				switch {
				case sessionLockFunctions[t.word]:
					c.Read = false
					c.Effects |= EffectAdvisoryLock
				case t.word == "set_config":
					c.Read = false
					c.Effects |= EffectSet
				case builtinVolatile[t.word] || volatile[t.word]:
					c.Read = false
				}
			}
		}
	case "begin", "start":
		c.Begin = true
		c.ReadOnly = containsPair(toks, "read", "only")
	case "set":
		switch word(1) {
		case "local", "transaction", "constraints":
		default:
			c.Effects |= EffectSet
		}
	case "reset":
		c.Effects |= EffectSet
	case "listen", "unlisten":
		c.Effects |= EffectListen
	case "create":
		for _, t := range toks[1:] {
			if t.word == "temp" || t.word == "temporary" {
				c.Effects |= EffectTempTable
				break
			}
			if t.word == "table" || t.word == "view" || t.word == "sequence" || t.word == "function" || t.word == "index" {
				break
			}
		}
	case "prepare":
		if word(1) != "transaction" {
			c.Effects |= EffectPrepare
		}
	case "load":
		c.Effects |= EffectPrepare
	case "declare":
		if containsPair(toks, "with", "hold") {
			c.Effects |= EffectPrepare
		}
	case "discard", "deallocate":
		c.Effects |= EffectDiscard
		if first == "discard" && (word(1) == "all" || word(1) == "temp" || word(1) == "temporary") {
			// What it discards was state; it leaves none.
			break
		}
	case "explain":
		// EXPLAIN without ANALYZE plans but does not run; with ANALYZE it
		// runs the statement, which then decides.
		rest := toks[1:]
		for len(rest) > 0 && !rest[0].quote && (rest[0].word == "verbose" || rest[0].word == "analyze" || rest[0].word == "analyse") {
			rest = rest[1:]
		}
		if len(rest) > 0 && rest[0].punct == '(' {
			for len(rest) > 0 && rest[0].punct != ')' {
				rest = rest[1:]
			}
			if len(rest) > 0 {
				rest = rest[1:]
			}
		}
		if len(rest) > 0 {
			inner := classifyOne(rest, volatile)
			c.Read = inner.Read
			c.Effects = inner.Effects
		}
	}
	return c
}

func isLockStrength(w string) bool {
	return w == "update" || w == "share" || w == "no" || w == "key"
}

func containsPair(toks []token, a, b string) bool {
	for i := 0; i+1 < len(toks); i++ {
		if !toks[i].quote && toks[i].word == a && !toks[i+1].quote && toks[i+1].word == b {
			return true
		}
	}
	return false
}
