package router

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Spec is one route to add to a [Builder].
type Spec[T any] struct {
	// Name identifies the route in conflict errors and in [Result.Name].
	// If empty, errors use Path instead.
	Name string
	// Hosts lists the hosts the route serves. A nil or empty slice, or an
	// "" entry, means any host. "api.example.com" matches that host
	// exactly; "*.example.com" matches one or more labels in front of
	// "example.com" but not "example.com" itself. Entries are compared
	// case-insensitively and must not carry a port; an IPv6 literal is
	// written bracketed, "[2001:db8::1]".
	Hosts []string
	// Path is the path pattern, matched against the raw (still
	// percent-encoded) request path, byte for byte. Segments are literal,
	// ":name" (one non-empty segment) or, as the last segment only,
	// "*name" (the rest of the path, possibly empty, without its leading
	// slash). "/a" and "/a/" are different patterns; no redirect between
	// them is ever made. At most [MaxPatternLen] bytes and [MaxParams]
	// parameters.
	Path string
	// Prefix, if true, makes Path match itself and every path below it on a
	// segment boundary: "/api" matches "/api", "/api/" and "/api/x" but not
	// "/apix". A prefix pattern may have ":name" segments but no catch-all.
	Prefix bool
	// Methods lists the request methods the route serves, as uppercase RFC
	// 9110 tokens ("GET", "POST"). Empty means any method. A route that
	// serves GET also serves HEAD (RFC 9110 section 9.3.2: HEAD is GET
	// without the response content, and the engines send none), unless
	// another route for the same host, path and headers names HEAD itself.
	Methods []string
	// Headers must all match for the route to match; see [HeaderMatch].
	Headers []HeaderMatch
	// Value is returned in [Result.Value] when the route matches.
	Value T
}

// ConflictError reports two routes that would match exactly the same
// requests, so one of them could never be chosen.
type ConflictError struct {
	A, B   string // the names of the two routes, in the order they were added
	Reason string // what they have in common
}

// Error formats the error as `routes "a" and "b" conflict: <reason>`.
func (e *ConflictError) Error() string {
	return fmt.Sprintf("routes %q and %q conflict: %s", e.A, e.B, e.Reason)
}

// Builder collects routes and compiles them into an immutable [Router]. The
// zero value is ready to use. A Builder is not safe for concurrent use.
type Builder[T any] struct {
	entries []entry[T]
}

// entry is a validated Spec.
type entry[T any] struct {
	spec      Spec[T]
	pat       pattern
	hosts     []string // normalized, deduplicated; "" is any host
	methods   []string // deduplicated
	headers   []HeaderMatch
	headerKey string // canonical text of headers, for conflict detection
}

func (e *entry[T]) name() string {
	if e.spec.Name != "" {
		return e.spec.Name
	}
	return e.spec.Path
}

// Add validates s and adds it. An invalid path is reported as a
// *[PatternError]; invalid hosts, methods and header matchers as errors
// naming the field ("host %q: ..."). Conflicts between routes are only
// detected by [Builder.Build].
func (b *Builder[T]) Add(s Spec[T]) error {
	pat, err := parsePattern(s.Path, s.Prefix)
	if err != nil {
		return err
	}
	e := entry[T]{spec: s, pat: pat}
	if len(s.Hosts) == 0 {
		e.hosts = []string{""}
	}
	for _, h := range s.Hosts {
		nh, err := normalizeHost(h)
		if err != nil {
			return err
		}
		if !slices.Contains(e.hosts, nh) {
			e.hosts = append(e.hosts, nh)
		}
	}
	if e.methods, err = validateMethods(s.Methods); err != nil {
		return err
	}
	for _, hm := range s.Headers {
		if !isToken(hm.Name) {
			return fmt.Errorf("header %q: name is not an RFC 9110 token", hm.Name)
		}
		// RFC 9110 section 5.5: field values never hold CR, LF or NUL, so
		// a matcher with them could never match.
		if strings.ContainsAny(hm.Value, "\r\n\x00") {
			return fmt.Errorf("header %q: value %q contains CR, LF or NUL", hm.Name, hm.Value)
		}
		name := strings.ToLower(hm.Name)
		for _, prev := range e.headers {
			if prev.Name == name {
				return fmt.Errorf("header %q: listed twice", hm.Name)
			}
		}
		e.headers = append(e.headers, HeaderMatch{Name: name, Value: hm.Value})
	}
	slices.SortFunc(e.headers, func(a, b HeaderMatch) int { return strings.Compare(a.Name, b.Name) })
	var key strings.Builder
	for _, hm := range e.headers {
		fmt.Fprintf(&key, "%q:%q;", hm.Name, hm.Value)
	}
	e.headerKey = key.String()
	b.entries = append(b.entries, e)
	return nil
}

// Build checks the routes for conflicts and compiles them into a Router.
// Every conflicting pair is reported as a *[ConflictError]; several are
// joined with [errors.Join]. Build does not change the Builder, so more
// routes may be added and Build called again.
func (b *Builder[T]) Build() (*Router[T], error) {
	if err := b.conflicts(); err != nil {
		return nil, err
	}
	var used []string
	for _, e := range b.entries {
		used = append(used, e.methods...)
	}
	if slices.Contains(used, "GET") {
		used = append(used, "HEAD")
	}
	ms, err := newMethodSet(used)
	if err != nil {
		return nil, err
	}
	impliedHead := b.impliedHead(ms)
	r := &Router[T]{
		routes:  make([]route, len(b.entries)),
		results: make([]Result[T], len(b.entries)),
		methods: ms,
	}
	for i, e := range b.entries {
		r.routes[i] = route{
			name:    e.spec.Name,
			pattern: e.spec.Path,
			methods: ms.mask(e.methods) | impliedHead[i],
			headers: e.headers,
			params:  e.pat.params,
		}
		r.results[i] = Result[T]{Value: e.spec.Value, Pattern: e.spec.Path, Name: e.spec.Name, Found: true}
		for _, h := range e.hosts {
			var t *tier
			switch {
			case h == "":
				if r.any == nil {
					r.any = &tier{root: &node{}}
				}
				t = r.any
			case strings.HasPrefix(h, "*."):
				if r.wild == nil {
					r.wild = map[string]*tier{}
				}
				// Keyed by ".example.com", the form the lookup slices out
				// of the request host.
				if t = r.wild[h[1:]]; t == nil {
					t = &tier{root: &node{}}
					r.wild[h[1:]] = t
				}
			default:
				if r.exact == nil {
					r.exact = map[string]*tier{}
				}
				if t = r.exact[h]; t == nil {
					t = &tier{root: &node{}}
					r.exact[h] = t
				}
			}
			t.root.insert(e.pat, int32(i), e.spec.Prefix)
		}
	}
	for _, t := range r.tiers() {
		t.root.walk(func(n *node) { n.finish(r.routes) })
		var paths []string
		var nodes []*node
		t.root.collectStatic("", func(path string, n *node) {
			paths, nodes = append(paths, path), append(nodes, n)
		})
		t.static = newStaticTable(paths, nodes)
	}
	return r, nil
}

// conflicts reports every pair of routes that share a host entry, path
// shape, prefix flag and header matcher set and have a method in common.
func (b *Builder[T]) conflicts() error {
	type key struct {
		host, shape, headers string
		prefix               bool
	}
	var (
		errs     []error
		groups   = map[key][]int{}
		reported = map[[2]int]bool{}
	)
	for i := range b.entries {
		e := &b.entries[i]
		for _, h := range e.hosts {
			k := key{host: h, shape: e.pat.shape, headers: e.headerKey, prefix: e.spec.Prefix}
			for _, j := range groups[k] {
				o := &b.entries[j]
				common, ok := commonMethods(o.methods, e.methods)
				if !ok || reported[[2]int{j, i}] {
					continue
				}
				reported[[2]int{j, i}] = true
				errs = append(errs, &ConflictError{A: o.name(), B: e.name(), Reason: conflictReason(h, o, e, common)})
			}
			groups[k] = append(groups[k], i)
		}
	}
	return errors.Join(errs...)
}

// impliedHead returns, per route, the HEAD bit to add to its method mask:
// set for routes that name GET but not HEAD, unless a route with the same
// host entry, path shape, prefix flag and header matchers names HEAD (then
// that route answers HEAD requests).
func (b *Builder[T]) impliedHead(ms *methodSet) []uint64 {
	type key struct {
		host, shape, headers string
		prefix               bool
	}
	explicit := map[key]bool{}
	for i := range b.entries {
		e := &b.entries[i]
		if slices.Contains(e.methods, "HEAD") {
			for _, h := range e.hosts {
				explicit[key{host: h, shape: e.pat.shape, headers: e.headerKey, prefix: e.spec.Prefix}] = true
			}
		}
	}
	out := make([]uint64, len(b.entries))
	for i := range b.entries {
		e := &b.entries[i]
		if !slices.Contains(e.methods, "GET") || slices.Contains(e.methods, "HEAD") {
			continue
		}
		out[i] = ms.bit("HEAD")
		for _, h := range e.hosts {
			if explicit[key{host: h, shape: e.pat.shape, headers: e.headerKey, prefix: e.spec.Prefix}] {
				out[i] = 0
			}
		}
	}
	return out
}

func conflictReason[T any](host string, a, b *entry[T], methods string) string {
	var s strings.Builder
	if host == "" {
		s.WriteString("both match any host")
	} else {
		fmt.Fprintf(&s, "both match host %q", host)
	}
	kind := "paths"
	if a.spec.Prefix {
		kind = "prefix paths"
	}
	fmt.Fprintf(&s, ", %s %q and %q", kind, a.spec.Path, b.spec.Path)
	if a.spec.Path != b.spec.Path {
		s.WriteString(" (same shape)")
	}
	s.WriteString(", ")
	s.WriteString(methods)
	if len(a.headers) > 0 {
		s.WriteString(", identical header matchers")
	}
	return s.String()
}

// commonMethods describes the methods two method lists share (empty meaning
// any method) and reports whether there is one.
func commonMethods(a, b []string) (string, bool) {
	switch {
	case len(a) == 0 && len(b) == 0:
		return "any method", true
	case len(a) == 0:
		return "method " + strings.Join(b, ", "), true
	case len(b) == 0:
		return "method " + strings.Join(a, ", "), true
	}
	var both []string
	for _, m := range a {
		if slices.Contains(b, m) {
			both = append(both, m)
		}
	}
	return "method " + strings.Join(both, ", "), len(both) > 0
}
