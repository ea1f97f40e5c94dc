package router

import (
	"errors"
	"strings"
	"testing"
)

// expand writes pattern p with its parameters replaced by values, in path
// order. The catch-all's value is written as is.
func expand(p pattern, values []string) string {
	var b strings.Builder
	k := 0
	for _, t := range p.tokens {
		if t.kind == tokStatic {
			b.WriteString(t.text)
			continue
		}
		b.WriteString(values[k])
		k++
	}
	return b.String()
}

// FuzzParsePattern checks that every pattern either parses into tokens that
// give it back, or fails with a *PatternError pointing inside it, and that
// a path made from a valid pattern finds that pattern's route.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"/", "/a/:b/c", "/static/*file", "/a:b", "/a//b", "/./", "/:a/:a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePattern(s, false)
		if err != nil {
			var pe *PatternError
			if !errors.As(err, &pe) || pe.Offset < 0 || pe.Offset > len(s) || pe.Pattern != s {
				t.Fatalf("parsePattern(%q) = %#v; want a *PatternError with an offset inside the pattern", s, err)
			}
			return
		}
		if len(p.params) > MaxParams {
			t.Fatalf("%d params accepted", len(p.params))
		}
		names := make([]string, len(p.params))
		for i, n := range p.params {
			names[i] = ":" + n
			if p.tokens[len(p.tokens)-1].kind == tokCatchAll && i == len(p.params)-1 {
				names[i] = "*" + n
			}
		}
		if got := expand(p, names); got != s {
			t.Fatalf("tokens of %q give back %q", s, got)
		}
		// Build a path by giving every parameter a value, and look it up.
		values := make([]string, len(p.params))
		for i := range values {
			values[i] = "v" + string(rune('a'+i))
		}
		if len(p.tokens) > 0 && p.tokens[len(p.tokens)-1].kind == tokCatchAll {
			values[len(values)-1] = "x/y"
		}
		path := expand(p, values)
		var b Builder[int]
		if err := b.Add(Spec[int]{Name: "r", Path: s}); err != nil {
			t.Fatal(err)
		}
		r, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		var ps Params
		res := r.Lookup("", "GET", path, nil, &ps)
		if !res.Found || res.Pattern != s {
			t.Fatalf("pattern %q: Lookup(%q) = %+v", s, path, res)
		}
		for i, want := range values {
			if ps.Key(i) != p.params[i] || ps.Value(i) != want {
				t.Fatalf("pattern %q, path %q: param %d = %q=%q; want %q=%q", s, path, i, ps.Key(i), ps.Value(i), p.params[i], want)
			}
		}
	})
}

// FuzzLookup builds a router from fuzzed patterns and looks up a fuzzed
// path. It must never panic, any match must be explained by its pattern
// (with its parameter values put back, an exact pattern gives the path and a
// prefix pattern gives a prefix of it on a segment boundary), and the
// outcome must be the same without the static-path tables.
func FuzzLookup(f *testing.F) {
	f.Add("/a/:x/c", "/a", "/a/b/c")
	f.Add("/static/*f", "/static", "/static/")
	f.Add("/:a/:b", "/:a", "/x/y/z")
	f.Fuzz(func(t *testing.T, exact, prefix, path string) {
		// b has a host tier; anyHost does not, so its lookups take the
		// static-path shortcut before the walk is set up.
		var b, anyHost Builder[int]
		pats := map[string]pattern{}
		for _, s := range []Spec[int]{
			{Name: "exact", Path: exact, Methods: []string{"GET"}},
			{Name: "prefix", Path: prefix, Prefix: true, Methods: []string{"GET"}},
			{Name: "exact-post", Path: exact, Methods: []string{"POST"}, Headers: []HeaderMatch{{Name: "X-A", Value: "1"}}},
			{Name: "wildcard-catch-all", Hosts: []string{"*.example.com"}, Path: "/*rest"},
		} {
			if b.Add(s) == nil {
				pats[s.Name], _ = parsePattern(s.Path, s.Prefix)
				if s.Hosts == nil {
					_ = anyHost.Add(s)
				}
			}
		}
		r, err := b.Build()
		if err != nil {
			return
		}
		ra, err := anyHost.Build()
		if err != nil {
			t.Fatalf("routes without hosts: %v", err)
		}
		var ps Params
		for _, host := range []string{"", "a.example.com"} {
			for _, method := range []string{"GET", "POST"} {
				// The static tables must not change any outcome.
				for _, h := range []HeaderSource{nil, headers{"x-a": "1"}} {
					sameLookup(t, r, walkOnly(r), host, method, path, h)
					sameLookup(t, ra, walkOnly(ra), host, method, path, h)
				}
				res := r.Lookup(host, method, path, headers{"x-a": "1"}, &ps)
				if res.MethodNotAllowed && res.Allow == "" {
					t.Fatalf("405 without Allow for %q", path)
				}
				if !res.Found {
					continue
				}
				p := pats[res.Name]
				if ps.Len() != len(p.params) {
					t.Fatalf("route %q has %d params, Params has %d", res.Name, len(p.params), ps.Len())
				}
				values := make([]string, ps.Len())
				for i := range values {
					values[i] = ps.Value(i)
				}
				got := expand(p, values)
				if res.Name == "prefix" {
					rest, ok := strings.CutPrefix(path, got)
					if !ok || (rest != "" && rest[0] != '/' && !strings.HasSuffix(got, "/")) {
						t.Fatalf("prefix %q matched %q as %q", prefix, path, got)
					}
				} else if got != path {
					t.Fatalf("route %q (%q) matched %q but expands to %q", res.Name, p.raw, path, got)
				}
			}
		}
	})
}
