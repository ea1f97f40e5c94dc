package router

// Router is an immutable route table built by [Builder.Build]. It is safe
// for concurrent use by any number of goroutines.
type Router[T any] struct {
	routes  []route
	values  []T
	methods *methodSet
	exact   map[string]*node // lowercase host → tree
	wild    map[string]*node // ".example.com" (from "*.example.com") → tree
	any     *node            // routes for any host, or nil
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
	// Field by field: a composite literal builds a temporary and copies
	// the whole matcher, which shows in the static-path benchmark.
	var m matcher
	m.routes, m.path, m.mbit, m.h = r.routes, path, r.methods.bit(method), h
	id := int32(-1)
	if r.exact != nil || r.wild != nil {
		var buf [maxHostLen]byte
		if n := requestHost(host, &buf); n > 0 {
			// string(buf[...]) in a map index does not allocate.
			if t := r.exact[string(buf[:n])]; t != nil {
				id = m.match(t, 0)
			}
			// Each dot starts a shorter suffix, so walking the host from
			// the left tries longer wildcard suffixes first. Starting at 1
			// keeps at least one label in front of the suffix.
			for i := 1; id < 0 && i < n && r.wild != nil; i++ {
				if buf[i] != '.' {
					continue
				}
				if t := r.wild[string(buf[i:n])]; t != nil {
					id = m.match(t, 0)
				}
			}
		}
	}
	if id < 0 && r.any != nil {
		id = m.match(r.any, 0)
	}
	if id < 0 {
		if m.allow != 0 {
			return Result[T]{MethodNotAllowed: true, Allow: r.methods.allow(m.allow)}
		}
		return Result[T]{}
	}
	rt := &r.routes[id]
	if ps != nil {
		// The values were captured in path order, which is the order of
		// the route's own parameter names.
		ps.n = m.n
		copy(ps.keys[:], rt.params)
		for i, o := range m.off[:m.n] {
			ps.vals[i] = path[o[0]:o[1]]
		}
	}
	return Result[T]{Value: r.values[id], Pattern: rt.pattern, Name: rt.name, Found: true}
}

// roots returns every host tier's tree.
func (r *Router[T]) roots() []*node {
	var out []*node
	for _, n := range r.exact {
		out = append(out, n)
	}
	for _, n := range r.wild {
		out = append(out, n)
	}
	if r.any != nil {
		out = append(out, r.any)
	}
	return out
}
