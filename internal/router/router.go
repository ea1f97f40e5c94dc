package router

// Router is an immutable route table built by [Builder.Build]. It is safe
// for concurrent use by any number of goroutines.
type Router[T any] struct {
	routes []route
	// results holds the Result of a match on each route, built once so
	// that a lookup returns it with one copy instead of assembling it
	// field by field.
	results []Result[T]
	methods *methodSet
	exact   map[string]*tier // lowercase host → routes
	wild    map[string]*tier // ".example.com" (from "*.example.com") → routes
	any     *tier            // routes for any host, or nil
}

// tier holds the routes of one host entry: an exact host, a wildcard, or
// any host.
type tier struct {
	root *node
	// static holds the paths of the routes without parameters, or is
	// nil. Such a route is the first thing the tree walk would try for its
	// path, because static beats param and catch-all at every segment and
	// an exact path beats prefixes, so a hit that picks a route gives the
	// walk's answer at a fraction of its cost.
	static *staticTable
}

// Result is the outcome of [Router.Lookup].
type Result[T any] struct {
	// Value is the matched route's Spec.Value, or the zero value.
	Value T
	// Pattern is the matched route's Spec.Path as configured, such as
	// "/v1/models/:model/predict" (for a prefix route, its prefix
	// pattern). Use it, not the raw path, to label metrics and logs.
	Pattern string
	// Name is the matched route's Spec.Name.
	Name string
	// Found reports whether a route matched.
	Found bool
	// MethodNotAllowed reports that no route matched but at least one
	// matched everything except the method; the answer is 405 (RFC 9110
	// section 15.5.6).
	MethodNotAllowed bool
	// Allow, when MethodNotAllowed, lists the methods that would have
	// matched, as the Allow header value ("GET, POST").
	Allow string
}

// Len returns the number of routes.
func (r *Router[T]) Len() int { return len(r.routes) }

// Lookup finds the route for a request. host is the request's Host (or
// :authority), possibly with a port and in any case; method is the request
// method; path is the raw request path without query; h supplies headers
// for header matchers and may be nil (then routes with header matchers do
// not match). ps receives the path parameters; it is reset first and may be
// nil if the caller does not need them.
//
// Lookup does not allocate.
func (r *Router[T]) Lookup(host, method, path string, h HeaderSource, ps *Params) Result[T] {
	if ps != nil {
		ps.Reset()
	}
	mbit := r.methods.bit(method)
	hosts := r.exact != nil || r.wild != nil
	var (
		tried *node
		allow uint64
	)
	if !hosts && r.any != nil {
		// Only any-host routes, the usual configuration: no host to
		// normalise, and a path with no parameters is answered before the
		// matcher for the tree walk is even set up.
		if st := r.any.static; st != nil && st.mayHave(path) {
			if n := st.get(path); n != nil {
				id, a := pick(r.routes, n.exact, mbit, h)
				if id >= 0 {
					return r.results[id]
				}
				tried, allow = n, a
			}
		}
	}
	// Field by field: a composite literal builds a temporary and copies
	// the whole matcher, which shows in the benchmarks.
	var m matcher
	m.routes, m.path, m.mbit, m.h = r.routes, path, mbit, h
	m.tried, m.allow = tried, allow
	id := int32(-1)
	if hosts {
		id = m.hosts(r.exact, r.wild, host)
		if id < 0 && r.any != nil {
			id = m.tier(r.any)
		}
	} else if r.any != nil {
		// The static table was tried above.
		id = m.match(r.any.root, 0)
	}
	if id < 0 {
		if m.allow != 0 {
			return Result[T]{MethodNotAllowed: true, Allow: r.methods.allow(m.allow)}
		}
		return Result[T]{}
	}
	if ps != nil && m.n > 0 {
		// The values were captured in path order, which is the order of
		// the route's own parameter names.
		ps.Match(r.routes[id].params)
		for _, o := range m.off[:m.n] {
			ps.Add(path[o[0]:o[1]])
		}
	}
	return r.results[id]
}

// hosts tries the tiers of the request host: its exact host, then the
// wildcards that cover it, longer suffix first. It returns the route id or
// -1. It is a function of its own so that its host buffer is not part of
// Lookup's stack frame when the router has only any-host routes.
func (m *matcher) hosts(exact, wild map[string]*tier, host string) int32 {
	var buf [maxHostLen]byte
	n := requestHost(host, &buf)
	if n <= 0 {
		return -1
	}
	// string(buf[...]) in a map index does not allocate.
	if t := exact[string(buf[:n])]; t != nil {
		if id := m.tier(t); id >= 0 {
			return id
		}
	}
	if wild == nil {
		return -1
	}
	// Each dot starts a shorter suffix, so walking the host from the left
	// tries longer wildcard suffixes first. Starting at 1 keeps at least
	// one label in front of the suffix.
	for i := 1; i < n; i++ {
		if buf[i] != '.' {
			continue
		}
		if t := wild[string(buf[i:n])]; t != nil {
			if id := m.tier(t); id >= 0 {
				return id
			}
		}
	}
	return -1
}

// tier finds the route for m.path among the routes of t, or returns -1.
func (m *matcher) tier(t *tier) int32 {
	if st := t.static; st != nil && st.mayHave(m.path) {
		if n := st.get(m.path); n != nil {
			if id := m.pick(n.exact); id >= 0 {
				return id
			}
			// The exact routes failed on method or headers (their
			// methods are in m.allow for a 405); the walk goes on to the
			// param, catch-all and prefix routes behind them.
			m.tried = n
		}
	}
	return m.match(t.root, 0)
}

// tiers returns every host tier.
func (r *Router[T]) tiers() []*tier {
	var out []*tier
	for _, t := range r.exact {
		out = append(out, t)
	}
	for _, t := range r.wild {
		out = append(out, t)
	}
	if r.any != nil {
		out = append(out, r.any)
	}
	return out
}
