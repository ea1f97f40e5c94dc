package router

import (
	"fmt"
	"testing"
)

// walkOnly returns a copy of r without static tables, so that every lookup
// walks the trees: the reference the tables must agree with.
func walkOnly[T any](r *Router[T]) *Router[T] {
	c := *r
	strip := func(m map[string]*tier) map[string]*tier {
		if m == nil {
			return nil
		}
		out := map[string]*tier{}
		for k, t := range m {
			out[k] = &tier{root: t.root}
		}
		return out
	}
	c.exact, c.wild = strip(r.exact), strip(r.wild)
	if r.any != nil {
		c.any = &tier{root: r.any.root}
	}
	return &c
}

// sameLookup fails t unless r and ref give the same result and parameters.
func sameLookup[T comparable](t *testing.T, r, ref *Router[T], host, method, path string, h HeaderSource) {
	t.Helper()
	var ps, refPs Params
	got := r.Lookup(host, method, path, h, &ps)
	want := ref.Lookup(host, method, path, h, &refPs)
	if got != want {
		t.Fatalf("Lookup(%q, %s, %q) = %+v; the tree walk alone gives %+v", host, method, path, got, want)
	}
	if ps.Len() != refPs.Len() {
		t.Fatalf("Lookup(%q, %s, %q): %d params; the tree walk alone gives %d", host, method, path, ps.Len(), refPs.Len())
	}
	for i := 0; i < ps.Len(); i++ {
		if ps.Key(i) != refPs.Key(i) || ps.Value(i) != refPs.Value(i) {
			t.Fatalf("Lookup(%q, %s, %q): param %d = %s=%q; the tree walk alone gives %s=%q",
				host, method, path, i, ps.Key(i), ps.Value(i), refPs.Key(i), refPs.Value(i))
		}
	}
}

// TestStaticTableAgreesWithWalk checks that the static-path shortcut
// changes no outcome: static paths whose routes fail on method or headers,
// next to params, catch-alls and prefixes, in every kind of host tier.
func TestStaticTableAgreesWithWalk(t *testing.T) {
	specs := []Spec[string]{
		{Name: "ab-get", Path: "/a/b", Methods: []string{"GET"}},
		{Name: "ab-post-canary", Path: "/a/b", Methods: []string{"POST"}, Headers: []HeaderMatch{{Name: "X-Canary", Value: "1"}}},
		{Name: "ab-canary", Path: "/a/b", Headers: []HeaderMatch{{Name: "X-Canary", Value: "2"}}},
		{Name: "a-param", Path: "/a/:x", Methods: []string{"GET", "PUT"}},
		{Name: "a-catch-all", Path: "/a/*rest", Methods: []string{"PATCH"}},
		{Name: "ab-prefix", Path: "/a/b", Prefix: true, Methods: []string{"DELETE"}},
		{Name: "abc", Path: "/a/b/c"},
		{Name: "root", Path: "/", Methods: []string{"GET"}},
		{Name: "slash", Path: "/x/"},
		{Name: "x-param", Path: "/x/:id", Methods: []string{"POST"}},
		{Name: "host-ab", Hosts: []string{"h.example.com"}, Path: "/a/b", Methods: []string{"PUT"}},
		{Name: "host-param", Hosts: []string{"h.example.com"}, Path: "/a/:x", Methods: []string{"POST"}},
		{Name: "wild-ab", Hosts: []string{"*.example.com"}, Path: "/a/b", Methods: []string{"PATCH", "GET"}, Headers: []HeaderMatch{{Name: "X-Canary", Value: "1"}}},
		{Name: "wild-static", Hosts: []string{"*.example.com"}, Path: "/only-wild"},
	}
	for _, rt := range githubAPI {
		specs = append(specs, Spec[string]{Name: rt.method + " " + rt.path, Path: rt.path, Methods: []string{rt.method}})
	}
	// Routers without host tiers take the shortcut before setting up the
	// tree walk, so test one of each.
	var anyHost []Spec[string]
	for _, s := range specs {
		if s.Hosts == nil {
			anyHost = append(anyHost, s)
		}
	}
	paths := []string{"", "*", "/", "//", "/a", "/a/", "/a/b", "/a/b/", "/a/b/c", "/a/b/c/d", "/a/bc", "/a/c",
		"/x", "/x/", "/x/1", "/only-wild", "/user/repos", "/user/keys/1", "/users", "/user/repo"}
	for _, s := range specs {
		paths = append(paths, s.Path, s.Path+"/", s.Path+"x")
	}
	for _, set := range [][]Spec[string]{specs, anyHost} {
		r := build(t, set)
		ref := walkOnly(r)
		for _, host := range []string{"", "h.example.com", "H.Example.COM:8080", "w.example.com", "other.org"} {
			for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "BREW"} {
				for _, h := range []HeaderSource{nil, headers{"x-canary": "1"}, headers{"x-canary": "2"}} {
					for _, p := range paths {
						sameLookup(t, r, ref, host, method, p, h)
					}
				}
			}
		}
	}
}

func TestStaticTable(t *testing.T) {
	for _, n := range []int{1, 7, 100, 5000} {
		var (
			paths []string
			nodes []*node
		)
		for i := range n {
			// Many paths of the same length and ending, which the filter
			// cannot tell apart.
			paths = append(paths, fmt.Sprintf("/api/v1/items/%05d/x", i))
			nodes = append(nodes, &node{exact: []int32{int32(i)}})
		}
		tb := newStaticTable(paths, nodes)
		if run := tb.longestRun(); run > maxRun && len(tb.slots) < 8*n {
			t.Errorf("%d paths: longest run %d in %d slots", n, run, len(tb.slots))
		}
		for i, p := range paths {
			if !tb.mayHave(p) {
				t.Fatalf("%d paths: filter rejects %q", n, p)
			}
			if got := tb.get(p); got != nodes[i] {
				t.Fatalf("%d paths: get(%q) = %p; want %p", n, p, got, nodes[i])
			}
		}
		for _, p := range []string{"/api/v1/items/99999/x", "/api/v1/items/00000/y", "/api/v1/items/00000/", "/"} {
			if got := tb.get(p); got != nil {
				t.Fatalf("%d paths: get(%q) = %p; want nil", n, p, got)
			}
		}
	}
	if newStaticTable(nil, nil) != nil {
		t.Error("newStaticTable(nil, nil) != nil")
	}
}

func TestHashPath(t *testing.T) {
	// Every length up to three words, so each branch and the overlapping
	// last word are used; changing any byte must change the hash.
	base := "/abcdefghijklmnopqrstuvwxyz0123456789"
	for n := 0; n <= 24; n++ {
		p := base[:n]
		h := hashPath(p)
		for i := 0; i < n; i++ {
			q := p[:i] + "!" + p[i+1:]
			if hashPath(q) == h {
				t.Errorf("hashPath(%q) == hashPath(%q)", p, q)
			}
		}
		if n > 0 && hashPath(p[:n-1]) == h {
			t.Errorf("hashPath(%q) == hashPath(%q)", p, p[:n-1])
		}
	}
}
