package pgproxy

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"

	"github.com/jackc/pgx/v5/pgproto3"
)

// In transaction mode a client's named prepared statements outlive the
// server connection they were prepared on. The proxy keeps each client's
// Parse (statement), names it on the servers by a hash of its text and
// parameter types (the same statement from any client shares one server
// name), and prepares it on whichever server connection runs a Bind or
// Describe of it: PgBouncer 1.21's max_prepared_statements scheme. A
// server connection keeps at most prepared_statements of them, the least
// recently used closed first.

// stmt is one client's named prepared statement.
type stmt struct {
	serverName string
	query      string
	paramOIDs  []uint32
	class      Class
}

// newStmt copies a client's Parse (its buffers are reused by the next
// Receive).
func newStmt(m *pgproto3.Parse, class Class) *stmt {
	h := sha256.New()
	h.Write([]byte(m.Query))
	var b [4]byte
	for _, oid := range m.ParameterOIDs {
		binary.BigEndian.PutUint32(b[:], oid)
		h.Write(b[:])
	}
	sum := h.Sum(nil)
	return &stmt{
		serverName: "penstock_" + hex.EncodeToString(sum[:12]),
		query:      m.Query,
		paramOIDs:  append([]uint32(nil), m.ParameterOIDs...),
		class:      class,
	}
}

func (s *stmt) parse() *pgproto3.Parse {
	return &pgproto3.Parse{Name: s.serverName, Query: s.query, ParameterOIDs: s.paramOIDs}
}

// stmtCache is the set of statements prepared on one server connection,
// in least-recently-used order.
type stmtCache struct {
	max   int
	order list.List // of string, most recent at front
	byKey map[string]*list.Element
}

func newStmtCache(max int) *stmtCache {
	return &stmtCache{max: max, byKey: make(map[string]*list.Element)}
}

// has reports whether name is prepared, marking it used.
func (c *stmtCache) has(name string) bool {
	el, ok := c.byKey[name]
	if ok {
		c.order.MoveToFront(el)
	}
	return ok
}

// add records name as prepared and returns the name evicted to make room,
// or "".
func (c *stmtCache) add(name string) (evicted string) {
	if el, ok := c.byKey[name]; ok {
		c.order.MoveToFront(el)
		return ""
	}
	c.byKey[name] = c.order.PushFront(name)
	if c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		evicted = last.Value.(string)
		delete(c.byKey, evicted)
	}
	return evicted
}

func (c *stmtCache) remove(name string) {
	if el, ok := c.byKey[name]; ok {
		c.order.Remove(el)
		delete(c.byKey, name)
	}
}

func (c *stmtCache) clear() {
	c.order.Init()
	clear(c.byKey)
}

func (c *stmtCache) len() int { return c.order.Len() }

// completion says what to do with the server's answer (ParseComplete or
// CloseComplete) to one Parse or Close the proxy sent, in order.
type completion struct {
	// seq is the sync segment the message was sent in: the count of Sync
	// and Query messages sent before it.
	seq uint64
	// action is what reaches the client.
	action uint8
	// prepared is the server statement name a Parse adds, removed again
	// if the segment failed before its ParseComplete.
	prepared string
}

const (
	// forward the answer as is.
	actForward uint8 = iota
	// swallow it: the proxy sent the message itself (a statement prepared
	// again, or evicted).
	actSwallow
	// answer ParseComplete instead of the CloseComplete: the client's
	// Parse of a statement already prepared on the server was sent as a
	// Close of a name that does not exist, a no-op that keeps the answers
	// in order.
	actAsParse
)

// noSuchStatement is a statement name never prepared: closing it is not an
// error (protocol section 55.7, Close) and answers CloseComplete.
const noSuchStatement = "penstock_none"
