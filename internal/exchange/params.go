package exchange

// MaxParams is the most path parameters a Params holds: the most a route's
// path pattern may declare (internal/router).
const MaxParams = 16

// Params holds the path parameters of a matched route: the ":name" segments
// and the "*name" catch-all, in path order. The router fills it (Match,
// Add); values are substrings of the path it matched, so they stay valid as
// long as that string does. A Params is owned by the caller and reused
// across lookups; the zero value is empty and ready to use. It holds at
// most [MaxParams] entries.
type Params struct {
	n int
	// keys is the matched route's own list of parameter names, shared
	// rather than copied: assigning a slice costs less than copying
	// strings, and the router never changes it.
	keys []string
	vals [MaxParams]string
}

// Get returns the value of the parameter called name (without ":" or "*")
// and whether the matched route has such a parameter. A catch-all's value
// has no leading slash and may be empty.
func (p *Params) Get(name string) (string, bool) {
	for i := 0; i < p.n; i++ {
		if p.keys[i] == name {
			return p.vals[i], true
		}
	}
	return "", false
}

// Len returns the number of parameters.
func (p *Params) Len() int { return p.n }

// Key returns the name of parameter i, 0 <= i < Len().
func (p *Params) Key(i int) string { return p.keys[:p.n][i] }

// Value returns the value of parameter i, 0 <= i < Len().
func (p *Params) Value(i int) string { return p.vals[:p.n][i] }

// Match starts the parameters of a route whose parameter names are keys
// (shared, not copied: keys must not change), with no values yet.
func (p *Params) Match(keys []string) {
	p.n = 0
	p.keys = keys
}

// Add sets the value of the next parameter, in the order of Match's keys.
// It ignores values beyond len(keys) or MaxParams.
func (p *Params) Add(value string) {
	if p.n < len(p.keys) && p.n < MaxParams {
		p.vals[p.n] = value
		p.n++
	}
}

// Reset empties p. The router's Lookup calls it itself.
func (p *Params) Reset() {
	// Only the count: clearing all 32 strings would cost every lookup, and
	// stale entries are unreachable through the methods and overwritten by
	// the next match.
	p.n = 0
}
