package router

import (
	"slices"
	"strings"
)

// node is one node of a host tier's radix tree. The bytes of a request path
// are consumed by static prefixes; ":name" segments by the param child; the
// rest of the path by catch-all routes. Nodes carry no parameter names:
// those belong to routes, so "/a/:x" and "/a/:y/b" share a node.
type node struct {
	prefix string // literal bytes this node consumes; "" for param nodes and the root
	// indices holds the first byte of each static child, statics[i]
	// starting with indices[i]. Radix splitting keeps the bytes distinct.
	indices string
	statics []*node
	param   *node // child matching one non-empty segment, or nil

	// Route ids ending at this node, ordered for [matcher.pick].
	exact    []int32 // Path patterns ending here
	catchAll []int32 // "*name" patterns whose catch-all starts here
	prefixes []int32 // Prefix patterns ending here

	// table maps a first byte to 1 + its index in statics (0: none). It
	// is built by finish for wide nodes, such as the one after the root
	// "/", where scanning indices would cost more than the lookup.
	table *[256]uint8

	// branch is set by finish when a failed static descent can fall back
	// to a param, catch-all or prefix route at this node.
	branch bool
}

// finish sorts the routes of n so that more header matchers come first,
// keeping the order they were added otherwise, and sets n.branch.
func (n *node) finish(routes []route) {
	byHeaders := func(a, b int32) int { return len(routes[b].headers) - len(routes[a].headers) }
	slices.SortStableFunc(n.exact, byHeaders)
	slices.SortStableFunc(n.catchAll, byHeaders)
	slices.SortStableFunc(n.prefixes, byHeaders)
	n.branch = n.param != nil || n.catchAll != nil || n.prefixes != nil
	if len(n.indices) > wideNode {
		n.table = new([256]uint8)
		for k := 0; k < len(n.indices); k++ {
			n.table[n.indices[k]] = uint8(k + 1)
		}
	}
}

// wideNode is the number of static children above which a node gets a
// first-byte table. Patterns hold only printable ASCII, so a node has fewer
// than 95 children and 1 + index always fits in a uint8.
const wideNode = 4

// insert adds route id with pattern p below the root n.
func (n *node) insert(p pattern, id int32, prefix bool) {
	cur := n
	for _, t := range p.tokens {
		switch t.kind {
		case tokStatic:
			cur = cur.insertStatic(t.text)
		case tokParam:
			if cur.param == nil {
				cur.param = &node{}
			}
			cur = cur.param
		case tokCatchAll:
			// Catch-all is always the last token.
			cur.catchAll = append(cur.catchAll, id)
			return
		}
	}
	if prefix {
		cur.prefixes = append(cur.prefixes, id)
	} else {
		cur.exact = append(cur.exact, id)
	}
}

// insertStatic walks or creates the static path s below n, splitting nodes
// on common prefixes, and returns the node where s ends.
func (n *node) insertStatic(s string) *node {
	for s != "" {
		k := strings.IndexByte(n.indices, s[0])
		if k < 0 {
			child := &node{prefix: s}
			n.indices += s[:1]
			n.statics = append(n.statics, child)
			return child
		}
		child := n.statics[k]
		common := 0
		for common < len(s) && common < len(child.prefix) && s[common] == child.prefix[common] {
			common++
		}
		if common < len(child.prefix) {
			// Keep child (and everything hanging off it) intact and put a
			// new node for the shared bytes above it.
			mid := &node{prefix: child.prefix[:common], indices: child.prefix[common : common+1], statics: []*node{child}}
			child.prefix = child.prefix[common:]
			n.statics[k] = mid
			child = mid
		}
		n, s = child, s[common:]
	}
	return n
}

// walk calls f for every node below and including n.
func (n *node) walk(f func(*node)) {
	f(n)
	for _, c := range n.statics {
		c.walk(f)
	}
	if n.param != nil {
		n.param.walk(f)
	}
}

// collectStatic calls f with the path of every node below and including n
// that ends exact routes and is reached from the root through static
// prefixes only, path being what the root consumed before n (n.prefix
// included). These are the paths of the routes without parameters.
func (n *node) collectStatic(path string, f func(path string, n *node)) {
	path += n.prefix
	if n.exact != nil {
		f(path, n)
	}
	for _, c := range n.statics {
		c.collectStatic(path, f)
	}
}

// route is the part of a route the lookup needs, kept apart from the
// generic value so the tree code is not instantiated per value type.
type route struct {
	name, pattern string
	methods       uint64        // bit set from methodSet; anyMethod for all
	headers       []HeaderMatch // lowercase names
	params        []string
}

func (rt *route) headersMatch(h HeaderSource) bool {
	if h == nil {
		return false
	}
	for _, hm := range rt.headers {
		if v, ok := h.HeaderValue(hm.Name); !ok || v != hm.Value {
			return false
		}
	}
	return true
}

// matcher carries one lookup's inputs through the recursive tree walk.
type matcher struct {
	routes []route
	path   string
	mbit   uint64 // the request method's bit
	h      HeaderSource
	// tried is the node whose exact routes the static table gave and
	// pick rejected, so the walk does not try them again; or nil.
	tried *node
	// Parameter values captured on the way down, as byte offsets into
	// path. Offsets hold no pointers, so the matcher stays on the stack and
	// costs little to zero; Lookup turns them into strings on a match.
	n   int
	off [MaxParams][2]uint32
	// allow collects the methods of routes that matched everything but
	// the method, for a 405 answer.
	allow uint64
}

// match finds a route below n for m.path[i:], n having consumed
// m.path[:i]. It returns the route id or -1. The order of the attempts is
// the precedence: static, param, catch-all, and a prefix route only when
// nothing deeper matched, so longer prefixes win. Failing attempts fall
// back to the next, which is what lets "/a/:x/c" match "/a/b/c" next to
// "/a/b/d".
func (m *matcher) match(n *node, i int) int32 {
	path := m.path
	for {
		if i == len(path) {
			if n.exact != nil && n != m.tried {
				if id := m.pick(n.exact); id >= 0 {
					return id
				}
			}
			break
		}
		// At most one static child can match: their first bytes differ.
		var next *node
		k := -1
		if n.table != nil {
			k = int(n.table[path[i]]) - 1
		} else {
			for j := 0; j < len(n.indices); j++ {
				if n.indices[j] == path[i] {
					k = j
					break
				}
			}
		}
		if k >= 0 {
			if child := n.statics[k]; hasPrefixAfterFirst(path[i:], child.prefix) {
				next = child
			}
		}
		if !n.branch {
			// Nothing to fall back to here, so descend without recursion;
			// this is the common case for static paths.
			if next == nil {
				return -1
			}
			n, i = next, i+len(next.prefix)
			continue
		}
		if next != nil {
			if id := m.match(next, i+len(next.prefix)); id >= 0 {
				return id
			}
		}
		if n.param != nil {
			end := strings.IndexByte(path[i:], '/')
			if end < 0 {
				end = len(path)
			} else {
				end += i
			}
			// A parameter never matches an empty segment.
			if end > i {
				m.off[m.n] = [2]uint32{uint32(i), uint32(end)}
				m.n++
				if id := m.match(n.param, end); id >= 0 {
					return id
				}
				m.n--
			}
		}
		break
	}
	if n.catchAll != nil {
		m.off[m.n] = [2]uint32{uint32(i), uint32(len(path))}
		m.n++
		if id := m.pick(n.catchAll); id >= 0 {
			return id
		}
		m.n--
	}
	// A prefix ends on a segment boundary: at the end of the path, before
	// a '/', or after a pattern that itself ends in '/'.
	if n.prefixes != nil && (i == len(path) || path[i] == '/' || path[i-1] == '/') {
		if id := m.pick(n.prefixes); id >= 0 {
			return id
		}
	}
	return -1
}

// hasPrefixAfterFirst reports whether s starts with p, given that their
// first bytes are already known to be equal. Node prefixes are mostly a few
// bytes ("/", "repos"), where a byte loop is cheaper than the call behind
// string ==.
func hasPrefixAfterFirst(s, p string) bool {
	if len(s) < len(p) {
		return false
	}
	if len(p) > 16 {
		return s[1:len(p)] == p[1:]
	}
	for j := 1; j < len(p); j++ {
		if s[j] != p[j] {
			return false
		}
	}
	return true
}

// pick returns the first route of ids whose headers and method match, and
// adds the methods of routes that matched all but the method to m.allow.
// ids are ordered by number of header matchers, most first.
func (m *matcher) pick(ids []int32) int32 {
	id, allow := pick(m.routes, ids, m.mbit, m.h)
	m.allow |= allow
	return id
}

// pick returns the first of ids whose headers and method match, or -1 and
// the methods of the routes whose headers matched. It takes its inputs
// separately rather than a matcher so the static-path shortcut can use it
// before one is set up.
func pick(routes []route, ids []int32, mbit uint64, h HeaderSource) (int32, uint64) {
	var allow uint64
	for _, id := range ids {
		rt := &routes[id]
		// Testing for no headers here saves a call on the common path.
		if len(rt.headers) != 0 && !rt.headersMatch(h) {
			continue
		}
		if rt.methods&mbit != 0 {
			return id, 0
		}
		allow |= rt.methods
	}
	return -1, allow
}
