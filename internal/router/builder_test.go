package router

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestBuildConflicts(t *testing.T) {
	get := []string{"GET"}
	tenantA := []HeaderMatch{{Name: "X-Tenant", Value: "a"}}
	cases := []struct {
		name     string
		a, b     Spec[string]
		conflict bool
	}{
		{"identical routes", Spec[string]{Path: "/a", Methods: get}, Spec[string]{Path: "/a", Methods: get}, true},
		{"param names are ignored", Spec[string]{Path: "/a/:x", Methods: get}, Spec[string]{Path: "/a/:y", Methods: get}, true},
		{"catch-all names are ignored", Spec[string]{Path: "/s/*f"}, Spec[string]{Path: "/s/*g"}, true},
		{"any method overlaps every method", Spec[string]{Path: "/a"}, Spec[string]{Path: "/a", Methods: get}, true},
		{"both any method", Spec[string]{Path: "/a"}, Spec[string]{Path: "/a"}, true},
		{"one shared method is enough", Spec[string]{Path: "/a", Methods: []string{"GET", "POST"}}, Spec[string]{Path: "/a", Methods: []string{"PUT", "POST"}}, true},
		{"disjoint methods", Spec[string]{Path: "/a", Methods: get}, Spec[string]{Path: "/a", Methods: []string{"POST"}}, false},
		{"same exact host", Spec[string]{Hosts: []string{"api.example.com"}, Path: "/a"}, Spec[string]{Hosts: []string{"API.example.com"}, Path: "/a"}, true},
		{"one shared host entry", Spec[string]{Hosts: []string{"a.test", "b.test"}, Path: "/a"}, Spec[string]{Hosts: []string{"b.test", "c.test"}, Path: "/a"}, true},
		{"same wildcard", Spec[string]{Hosts: []string{"*.example.com"}, Path: "/a"}, Spec[string]{Hosts: []string{"*.example.com"}, Path: "/a"}, true},
		{"empty host entry is any host", Spec[string]{Hosts: []string{""}, Path: "/a"}, Spec[string]{Path: "/a"}, true},
		{"different exact hosts", Spec[string]{Hosts: []string{"a.test"}, Path: "/a"}, Spec[string]{Hosts: []string{"b.test"}, Path: "/a"}, false},
		{"exact host and wildcard covering it", Spec[string]{Hosts: []string{"api.example.com"}, Path: "/a"}, Spec[string]{Hosts: []string{"*.example.com"}, Path: "/a"}, false},
		{"exact host and any host", Spec[string]{Hosts: []string{"api.example.com"}, Path: "/a"}, Spec[string]{Path: "/a"}, false},
		{"nested wildcards", Spec[string]{Hosts: []string{"*.eu.example.com"}, Path: "/a"}, Spec[string]{Hosts: []string{"*.example.com"}, Path: "/a"}, false},
		{"exact and prefix of the same path", Spec[string]{Path: "/a"}, Spec[string]{Path: "/a", Prefix: true}, false},
		{"two prefixes of the same path", Spec[string]{Path: "/a", Prefix: true}, Spec[string]{Path: "/a", Prefix: true}, true},
		{"prefixes of the same shape", Spec[string]{Path: "/t/:x", Prefix: true}, Spec[string]{Path: "/t/:y", Prefix: true}, true},
		{"same headers, names in another case", Spec[string]{Path: "/a", Headers: tenantA}, Spec[string]{Path: "/a", Headers: []HeaderMatch{{Name: "x-tenant", Value: "a"}}}, true},
		{"same headers in another order", Spec[string]{Path: "/a", Headers: []HeaderMatch{{"A", "1"}, {"B", "2"}}}, Spec[string]{Path: "/a", Headers: []HeaderMatch{{"B", "2"}, {"A", "1"}}}, true},
		{"different header values", Spec[string]{Path: "/a", Headers: tenantA}, Spec[string]{Path: "/a", Headers: []HeaderMatch{{Name: "X-Tenant", Value: "b"}}}, false},
		{"headers and no headers", Spec[string]{Path: "/a", Headers: tenantA}, Spec[string]{Path: "/a"}, false},
		{"param and catch-all", Spec[string]{Path: "/a/:x"}, Spec[string]{Path: "/a/*x"}, false},
		{"param and static", Spec[string]{Path: "/a/:x"}, Spec[string]{Path: "/a/b"}, false},
		{"trailing slash is a different path", Spec[string]{Path: "/a"}, Spec[string]{Path: "/a/"}, false},
		{"different param positions", Spec[string]{Path: "/:x/b"}, Spec[string]{Path: "/a/:y"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b Builder[string]
			tc.a.Name, tc.b.Name = "first", "second"
			for _, s := range []Spec[string]{tc.a, tc.b} {
				if err := b.Add(s); err != nil {
					t.Fatalf("Add(%q): %v", s.Name, err)
				}
			}
			r, err := b.Build()
			if !tc.conflict {
				if err != nil {
					t.Fatalf("Build: %v; want no conflict", err)
				}
				if r.Len() != 2 {
					t.Fatalf("Len() = %d; want 2", r.Len())
				}
				return
			}
			var ce *ConflictError
			if !errors.As(err, &ce) {
				t.Fatalf("Build error = %v; want a *ConflictError", err)
			}
			if ce.A != "first" || ce.B != "second" {
				t.Errorf("conflict names %q and %q; want \"first\" and \"second\"", ce.A, ce.B)
			}
			if msg := err.Error(); !strings.Contains(msg, `"first"`) || !strings.Contains(msg, `"second"`) {
				t.Errorf("error %q does not name both routes", msg)
			}
		})
	}
}

func TestBuildReportsEveryConflict(t *testing.T) {
	var b Builder[string]
	for _, name := range []string{"one", "two", "three"} {
		if err := b.Add(Spec[string]{Name: name, Path: "/x", Methods: []string{"GET"}}); err != nil {
			t.Fatal(err)
		}
	}
	// A route on two shared hosts is still one conflicting pair.
	_ = b.Add(Spec[string]{Name: "h1", Hosts: []string{"a.test", "b.test"}, Path: "/y"})
	_ = b.Add(Spec[string]{Name: "h2", Hosts: []string{"a.test", "b.test"}, Path: "/y"})
	_, err := b.Build()
	var pairs []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ce *ConflictError
		if !errors.As(e, &ce) {
			t.Fatalf("joined error %v is not a *ConflictError", e)
		}
		pairs = append(pairs, ce.A+"+"+ce.B)
	}
	// Pairs come in the order the second route of each was added.
	if got, want := strings.Join(pairs, " "), "one+two one+three two+three h1+h2"; got != want {
		t.Errorf("conflicts %q; want %q", got, want)
	}
}

func TestConflictErrorMessage(t *testing.T) {
	var b Builder[string]
	_ = b.Add(Spec[string]{Name: "models", Hosts: []string{"api.example.com"}, Path: "/v1/models/:model", Methods: []string{"GET", "POST"}})
	_ = b.Add(Spec[string]{Name: "models-v2", Hosts: []string{"api.example.com"}, Path: "/v1/models/:id", Methods: []string{"POST"}})
	_, err := b.Build()
	want := `routes "models" and "models-v2" conflict: both match host "api.example.com", paths "/v1/models/:model" and "/v1/models/:id" (same shape), method POST`
	if err == nil || err.Error() != want {
		t.Errorf("Build error:\n got %v\nwant %s", err, want)
	}
}

func TestPatternErrors(t *testing.T) {
	long := "/" + strings.Repeat("a", MaxPatternLen)
	many := manyParams(MaxParams) + "/:extra"
	cases := []struct {
		name    string
		pattern string
		prefix  bool
		offset  int
		reason  string // substring of PatternError.Reason
	}{
		{"empty", "", false, 0, `must start with "/"`},
		{"relative", "a/b", false, 0, `must start with "/"`},
		{"empty param name", "/a/:", false, 4, "empty parameter name"},
		{"empty param name mid-path", "/a/:/b", false, 4, "empty parameter name"},
		{"param inside a segment", "/a:b", false, 2, "whole segment"},
		{"two params in a segment", "/:a:b", false, 3, "whole segment"},
		{"catch-all inside a segment", "/a*b", false, 2, "whole segment"},
		{"catch-all not last", "/*a/b", false, 1, "last segment"},
		{"unnamed catch-all", "/a/*", false, 4, "empty catch-all name"},
		{"catch-all in a prefix", "/a/*rest", true, 3, "prefix"},
		{"double slash", "/a//b", false, 3, `"//"`},
		{"leading double slash", "//a", false, 1, `"//"`},
		{"dot segment", "/a/./b", false, 3, "dot segment"},
		{"dot-dot segment", "/a/..", false, 3, "dot segment"},
		{"query", "/a?b=1", false, 2, `'?'`},
		{"fragment", "/a#top", false, 2, `'#'`},
		{"space", "/a b", false, 2, "whitespace"},
		{"tab", "/a\tb", false, 2, "control"},
		{"DEL", "/a\x7f", false, 2, "control"},
		{"non-ASCII", "/café", false, 4, "percent-encoded"},
		{"too long", long, false, MaxPatternLen, "longer than"},
		{"too many params", many, false, len(manyParams(MaxParams)) + 1, "more than 16 parameters"},
		{"duplicate param", "/:a/:a", false, 5, "duplicate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b Builder[int]
			err := b.Add(Spec[int]{Path: tc.pattern, Prefix: tc.prefix})
			var pe *PatternError
			if !errors.As(err, &pe) {
				t.Fatalf("Add(%q) = %v; want a *PatternError", tc.pattern, err)
			}
			if pe.Pattern != tc.pattern || pe.Offset != tc.offset || !strings.Contains(pe.Reason, tc.reason) {
				t.Errorf("got offset %d, reason %q; want offset %d, reason containing %q", pe.Offset, pe.Reason, tc.offset, tc.reason)
			}
		})
	}
	t.Run("message format", func(t *testing.T) {
		_, err := parsePattern("/a/:", false)
		if want := `pattern "/a/:": offset 4: empty parameter name`; err == nil || err.Error() != want {
			t.Errorf("got %v; want %s", err, want)
		}
	})
}

func TestValidPatterns(t *testing.T) {
	for _, p := range []string{
		"/", "/a", "/a/", "/:x", "/*all", "/a/:b/c/*d", "/v1/models/:model/predict",
		"/a.b/c-d_e~f", "/%2F", "/...", "/.well-known/acme", "/:a/:b/:c",
		manyParams(MaxParams),
	} {
		t.Run(p, func(t *testing.T) {
			if _, err := parsePattern(p, false); err != nil {
				t.Errorf("parsePattern(%q): %v", p, err)
			}
		})
	}
}

func TestFieldErrors(t *testing.T) {
	cases := []struct {
		name string
		spec Spec[int]
		want string // exact error text
	}{
		{"host with port", Spec[int]{Path: "/", Hosts: []string{"api.example.com:8080"}}, `host "api.example.com:8080": must not contain a port`},
		{"wildcard in the middle", Spec[int]{Path: "/", Hosts: []string{"api.*.com"}}, `host "api.*.com": wildcard allowed only as a leading "*."`},
		{"bare wildcard", Spec[int]{Path: "/", Hosts: []string{"*"}}, `host "*": wildcard allowed only as a leading "*."`},
		{"empty label", Spec[int]{Path: "/", Hosts: []string{"a..b"}}, `host "a..b": empty label`},
		{"trailing dot", Spec[int]{Path: "/", Hosts: []string{"a.b."}}, `host "a.b.": trailing dot not allowed (request hosts are compared without it)`},
		{"invalid character", Spec[int]{Path: "/", Hosts: []string{"a b"}}, `host "a b": invalid character ' '`},
		{"unbracketed IPv6", Spec[int]{Path: "/", Hosts: []string{"::1"}}, `host "::1": must not contain a port`},
		{"IPv6 with port", Spec[int]{Path: "/", Hosts: []string{"[::1]:80"}}, `host "[::1]:80": IPv6 literal must be bracketed and must not contain a port`},
		{"non-canonical IPv6", Spec[int]{Path: "/", Hosts: []string{"[0:0::1]"}}, `host "[0:0::1]": write the IPv6 literal in canonical form "[::1]"`},
		{"lowercase method", Spec[int]{Path: "/", Methods: []string{"get"}}, `method "get": must be uppercase`},
		{"method with space", Spec[int]{Path: "/", Methods: []string{"GET POST"}}, `method "GET POST": not an RFC 9110 token`},
		{"empty method", Spec[int]{Path: "/", Methods: []string{""}}, `method "": not an RFC 9110 token`},
		{"header name with colon", Spec[int]{Path: "/", Headers: []HeaderMatch{{Name: "X:Y", Value: "1"}}}, `header "X:Y": name is not an RFC 9110 token`},
		{"header value with newline", Spec[int]{Path: "/", Headers: []HeaderMatch{{Name: "X", Value: "a\nb"}}}, `header "X": value "a\nb" contains CR, LF or NUL`},
		{"header listed twice", Spec[int]{Path: "/", Headers: []HeaderMatch{{"X", "1"}, {"x", "2"}}}, `header "x": listed twice`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b Builder[int]
			err := b.Add(tc.spec)
			if err == nil || err.Error() != tc.want {
				t.Errorf("Add error:\n got %v\nwant %s", err, tc.want)
			}
			var pe *PatternError
			if errors.As(err, &pe) {
				t.Errorf("field error is a *PatternError")
			}
		})
	}
}

// manyParams returns a pattern of n parameter segments "/:p0/:p1/...".
func manyParams(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "/:p%d", i)
	}
	return b.String()
}
