// Package router matches requests to routes by host, path, method and
// headers, and reports the matched route's pattern for metrics and logs.
//
// It is written for penstock rather than taken from a router library
// because the gateway needs, together: host matching (exact and wildcard),
// method sets with 405 answers, header matchers, conflict detection when
// the configuration is loaded, and the route pattern as an output. No
// library offers all of these, and the lookup must not allocate.
//
// A [Builder] collects [Spec] values and compiles them into an immutable
// [Router]; [Router.Lookup] is then safe for concurrent use and does not
// allocate. Each host tier (each exact host, each wildcard suffix, and
// "any host") has its own radix tree, static children indexed by their
// first byte, and a hash table of the paths of its routes without
// parameters, which answers those paths without walking the tree.
//
// # Precedence
//
// Host tiers come first. A request tries the routes of its exact host, then
// of the matching wildcards, longer suffix first ("*.eu.example.com" before
// "*.example.com"), then the routes for any host. A tier where no route
// matches the request falls through to the next one.
//
// Within a tier the path decides, segment by segment from the left: a
// static segment beats ":param", which beats "*catchall". An exact Path
// beats a Prefix route for the same pattern, and a longer prefix beats a
// shorter one. When a more specific branch fails further down, the lookup
// backtracks, so "/a/:x/c" still matches "/a/b/c" next to "/a/b/d".
//
// Routes with the same pattern are tried with more header matchers first,
// then in the order they were added; the first whose headers and method
// both match wins. If no route matches at all but some route matched
// everything except the method, the result is MethodNotAllowed with an
// Allow value listing the methods that would have matched.
//
// # Paths
//
// Patterns are matched byte for byte against the raw request path. There is
// no cleaning and no trailing-slash redirect: "/a" and "/a/" are different
// exact paths, and a request for one does not match a route for the other
// (a Prefix route "/a" matches both).
//
// # Conflicts
//
// [Builder.Build] rejects two routes that would match the same requests:
// they share a host entry (the same exact host, the same wildcard, or both
// any host), have the same path shape (parameter names aside, so "/a/:x"
// and "/a/:y" conflict), the same Prefix flag, a method in common (no
// Methods meaning all) and identical header matchers. Routes that differ in
// any of these are allowed and ordered by the rules above.
package router
