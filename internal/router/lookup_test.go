package router

import (
	"net/http"
	"slices"
	"testing"
)

// headers is a HeaderSource over a map with lowercase keys.
type headers map[string]string

func (h headers) HeaderValue(name string) (string, bool) {
	v, ok := h[name]
	return v, ok
}

// lookupCase is one request and the outcome it must have.
type lookupCase struct {
	name         string
	host, method string // method defaults to GET
	path         string
	headers      HeaderSource
	want         string   // name of the route that must match; "" for none
	params       []string // expected parameters as key, value, key, value...
	allow        string   // if set, the lookup must be a 405 with this Allow
}

// build compiles specs whose Value is their Name, failing the test on error.
func build(t testing.TB, specs []Spec[string]) *Router[string] {
	t.Helper()
	var b Builder[string]
	for _, s := range specs {
		s.Value = s.Name
		if err := b.Add(s); err != nil {
			t.Fatalf("Add(%q): %v", s.Name, err)
		}
	}
	r, err := b.Build()
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return r
}

func runLookups(t *testing.T, specs []Spec[string], cases []lookupCase) {
	t.Helper()
	r := build(t, specs)
	patterns := map[string]string{}
	for _, s := range specs {
		patterns[s.Name] = s.Path
	}
	var ps Params
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			res := r.Lookup(tc.host, method, tc.path, tc.headers, &ps)
			switch {
			case tc.allow != "":
				if res.Found || !res.MethodNotAllowed || res.Allow != tc.allow {
					t.Fatalf("Lookup(%q, %s, %q) = found %v (%q), 405 %v, Allow %q; want 405 with Allow %q",
						tc.host, method, tc.path, res.Found, res.Name, res.MethodNotAllowed, res.Allow, tc.allow)
				}
				return
			case tc.want == "":
				if res.Found || res.MethodNotAllowed {
					t.Fatalf("Lookup(%q, %s, %q) = %q (405 %v); want no match", tc.host, method, tc.path, res.Name, res.MethodNotAllowed)
				}
				return
			}
			if !res.Found || res.Name != tc.want || res.Value != tc.want {
				t.Fatalf("Lookup(%q, %s, %q) = found %v, name %q, 405 %v; want route %q",
					tc.host, method, tc.path, res.Found, res.Name, res.MethodNotAllowed, tc.want)
			}
			if res.Pattern != patterns[tc.want] {
				t.Errorf("Pattern = %q; want %q", res.Pattern, patterns[tc.want])
			}
			var got []string
			for i := 0; i < ps.Len(); i++ {
				got = append(got, ps.Key(i), ps.Value(i))
				if v, ok := ps.Get(ps.Key(i)); !ok || v != ps.Value(i) {
					t.Errorf("Get(%q) = %q, %v; want %q", ps.Key(i), v, ok, ps.Value(i))
				}
			}
			if !slices.Equal(got, tc.params) {
				t.Errorf("params = %q; want %q", got, tc.params)
			}
		})
	}
}

func TestLookupStaticPaths(t *testing.T) {
	runLookups(t, []Spec[string]{
		{Name: "root", Path: "/"},
		{Name: "user", Path: "/user"},
		{Name: "users", Path: "/users"},
		{Name: "user-repos", Path: "/user/repos"},
		{Name: "dir", Path: "/docs/"},
		{Name: "file", Path: "/docs"},
		{Name: "encoded", Path: "/a%2Fb"},
	}, []lookupCase{
		{name: "root", path: "/", want: "root"},
		{name: "exact", path: "/user", want: "user"},
		{name: "longer sibling sharing a prefix", path: "/users", want: "users"},
		{name: "nested", path: "/user/repos", want: "user-repos"},
		{name: "no trailing slash redirect: /user/ is not /user", path: "/user/"},
		{name: "trailing slash route only matches with slash", path: "/docs/", want: "dir"},
		{name: "route without slash only matches without", path: "/docs", want: "file"},
		{name: "partial node is not a match", path: "/use"},
		{name: "longer than any route", path: "/user/repos/x"},
		{name: "raw path is matched without decoding", path: "/a%2Fb", want: "encoded"},
		{name: "decoded form does not match", path: "/a/b"},
		{name: "empty path", path: ""},
		{name: "path without leading slash", path: "user"},
		{name: "asterisk form", path: "*"},
	})
}

func TestLookupParams(t *testing.T) {
	runLookups(t, []Spec[string]{
		{Name: "user", Path: "/users/:user"},
		{Name: "repo", Path: "/users/:owner/repos/:repo"},
		{Name: "predict", Path: "/v1/models/:model/predict"},
		{Name: "file", Path: "/files/:name"},
		{Name: "static", Path: "/static/*file"},
		{Name: "deep-catch-all", Path: "/r/:owner/raw/*path"},
	}, []lookupCase{
		{name: "one param", path: "/users/ada", want: "user", params: []string{"user", "ada"}},
		{name: "param names are per route", path: "/users/ada/repos/engine", want: "repo", params: []string{"owner", "ada", "repo", "engine"}},
		{name: "param between statics", path: "/v1/models/resnet/predict", want: "predict", params: []string{"model", "resnet"}},
		{name: "param keeps dots", path: "/files/a.tar.gz", want: "file", params: []string{"name", "a.tar.gz"}},
		{name: "param keeps percent-encoding", path: "/files/a%20b", want: "file", params: []string{"name", "a%20b"}},
		{name: "empty segment does not match a param", path: "/users/"},
		{name: "param does not span slashes", path: "/users/ada/x"},
		{name: "missing tail", path: "/v1/models/resnet"},
		{name: "catch-all takes the rest", path: "/static/css/site.css", want: "static", params: []string{"file", "css/site.css"}},
		{name: "catch-all may be empty", path: "/static/", want: "static", params: []string{"file", ""}},
		{name: "catch-all needs its slash", path: "/static"},
		{name: "catch-all after a param", path: "/r/ada/raw/a/b", want: "deep-catch-all", params: []string{"owner", "ada", "path", "a/b"}},
	})
}

func TestLookupPrefix(t *testing.T) {
	runLookups(t, []Spec[string]{
		{Name: "api", Path: "/api", Prefix: true},
		{Name: "api-v1", Path: "/api/v1", Prefix: true},
		{Name: "health", Path: "/api/v1/health"},
		{Name: "health-prefix", Path: "/api/v1/health", Prefix: true},
		{Name: "docs", Path: "/docs/", Prefix: true},
		{Name: "tenant", Path: "/t/:tenant", Prefix: true},
	}, []lookupCase{
		{name: "prefix matches itself", path: "/api", want: "api"},
		{name: "prefix matches with trailing slash", path: "/api/", want: "api"},
		{name: "prefix matches below", path: "/api/x/y", want: "api"},
		{name: "prefix stops at segment boundary", path: "/apix"},
		{name: "longer prefix wins", path: "/api/v1/models", want: "api-v1"},
		{name: "longer prefix on boundary only", path: "/api/v1x", want: "api"},
		{name: "exact beats prefix of the same pattern", path: "/api/v1/health", want: "health"},
		{name: "prefix of the same pattern takes what is below", path: "/api/v1/health/live", want: "health-prefix"},
		{name: "prefix ending in slash matches below", path: "/docs/a", want: "docs"},
		{name: "prefix ending in slash matches itself", path: "/docs/", want: "docs"},
		{name: "prefix ending in slash needs the slash", path: "/docs"},
		{name: "prefix with a param", path: "/t/acme/a/b", want: "tenant", params: []string{"tenant", "acme"}},
		{name: "prefix with a param, nothing below", path: "/t/acme", want: "tenant", params: []string{"tenant", "acme"}},
	})
	runLookups(t, []Spec[string]{
		{Name: "all", Path: "/", Prefix: true},
		{Name: "exact", Path: "/x"},
	}, []lookupCase{
		{name: "root prefix catches everything", path: "/a/b", want: "all"},
		{name: "root prefix yields to exact", path: "/x", want: "exact"},
		{name: "root prefix matches root", path: "/", want: "all"},
	})
}

func TestLookupHosts(t *testing.T) {
	runLookups(t, []Spec[string]{
		{Name: "exact", Hosts: []string{"api.example.com"}, Path: "/x"},
		{Name: "wild", Hosts: []string{"*.example.com"}, Path: "/x"},
		{Name: "wild-eu", Hosts: []string{"*.eu.example.com"}, Path: "/x"},
		{Name: "any", Path: "/x"},
		{Name: "ipv6", Hosts: []string{"[::1]"}, Path: "/x"},
		{Name: "ipv4", Hosts: []string{"127.0.0.1"}, Path: "/x"},
		{Name: "upper-config", Hosts: []string{"Admin.Example.ORG"}, Path: "/x"},
		{Name: "two-hosts", Hosts: []string{"a.test", "b.test"}, Path: "/x"},
	}, []lookupCase{
		{name: "exact host", host: "api.example.com", path: "/x", want: "exact"},
		{name: "exact beats wildcard", host: "api.example.com", path: "/x", want: "exact"},
		{name: "host case is ignored", host: "API.Example.COM", path: "/x", want: "exact"},
		{name: "port is ignored", host: "api.example.com:8443", path: "/x", want: "exact"},
		{name: "trailing dot is ignored", host: "api.example.com.", path: "/x", want: "exact"},
		{name: "wildcard one label", host: "www.example.com", path: "/x", want: "wild"},
		{name: "wildcard several labels", host: "a.b.example.com:80", path: "/x", want: "wild"},
		{name: "longer wildcard suffix first", host: "paris.eu.example.com", path: "/x", want: "wild-eu"},
		{name: "wildcard does not match its apex", host: "example.com", path: "/x", want: "any"},
		{name: "wildcard needs a label", host: ".example.com", path: "/x", want: "any"},
		{name: "suffix without dot boundary", host: "badexample.com", path: "/x", want: "any"},
		{name: "unknown host", host: "other.org", path: "/x", want: "any"},
		{name: "empty host", host: "", path: "/x", want: "any"},
		{name: "IPv6 literal with port", host: "[::1]:8080", path: "/x", want: "ipv6"},
		{name: "IPv6 literal without port", host: "[::1]", path: "/x", want: "ipv6"},
		{name: "IPv4 with port", host: "127.0.0.1:9000", path: "/x", want: "ipv4"},
		{name: "configured host is lowercased", host: "admin.example.org", path: "/x", want: "upper-config"},
		{name: "second host of a route", host: "b.test", path: "/x", want: "two-hosts"},
		{name: "very long host uses any tier", host: string(make([]byte, 300)), path: "/x", want: "any"},
	})
}

func TestLookupTierFallThrough(t *testing.T) {
	runLookups(t, []Spec[string]{
		{Name: "exact-only", Hosts: []string{"api.example.com"}, Path: "/only-exact"},
		{Name: "exact-post", Hosts: []string{"api.example.com"}, Path: "/items", Methods: []string{"POST"}},
		{Name: "wild-items", Hosts: []string{"*.example.com"}, Path: "/items/:id"},
		{Name: "any-items", Path: "/items", Methods: []string{"GET"}},
		{Name: "any-fallback", Path: "/fallback"},
	}, []lookupCase{
		{name: "path only in exact tier", host: "api.example.com", path: "/only-exact", want: "exact-only"},
		{name: "exact tier without the path falls to any", host: "api.example.com", path: "/fallback", want: "any-fallback"},
		{name: "exact tier falls to wildcard tier", host: "api.example.com", path: "/items/7", want: "wild-items", params: []string{"id", "7"}},
		{name: "method mismatch in exact tier falls through", host: "api.example.com", path: "/items", want: "any-items"},
		{name: "method match in exact tier", host: "api.example.com", method: "POST", path: "/items", want: "exact-post"},
		{name: "405 lists methods of every tier", host: "api.example.com", method: "DELETE", path: "/items", allow: "GET, HEAD, POST"},
		{name: "405 from any tier only", host: "other.org", method: "DELETE", path: "/items", allow: "GET, HEAD"},
		{name: "other host does not see exact tier", host: "other.org", path: "/only-exact"},
	})
}

func TestLookupMethods(t *testing.T) {
	runLookups(t, []Spec[string]{
		{Name: "list", Path: "/items", Methods: []string{"GET"}},
		{Name: "create", Path: "/items", Methods: []string{"POST"}},
		{Name: "delete", Path: "/items/:id", Methods: []string{"DELETE", "PURGE"}},
		{Name: "any", Path: "/any"},
		{Name: "webdav", Path: "/dav", Methods: []string{"PROPFIND", "OPTIONS"}},
	}, []lookupCase{
		{name: "GET", path: "/items", want: "list"},
		{name: "POST", method: "POST", path: "/items", want: "create"},
		{name: "405 with Allow in canonical order", method: "PUT", path: "/items", allow: "GET, HEAD, POST"},
		{name: "HEAD is served by the GET route", method: "HEAD", path: "/items", want: "list"},
		{name: "method unknown to the router", method: "BREW", path: "/items", allow: "GET, HEAD, POST"},
		{name: "405 on a param route", path: "/items/42", allow: "DELETE, PURGE"},
		{name: "extension method", method: "PURGE", path: "/items/42", want: "delete", params: []string{"id", "42"}},
		{name: "methods are case-sensitive", method: "purge", path: "/items/42", allow: "DELETE, PURGE"},
		{name: "no methods means any", method: "PATCH", path: "/any", want: "any"},
		{name: "no methods matches unknown methods", method: "BREW", path: "/any", want: "any"},
		{name: "standard methods before extensions", method: "GET", path: "/dav", allow: "OPTIONS, PROPFIND"},
		{name: "no path match is 404 not 405", method: "PUT", path: "/nothing"},
	})
}

// A GET route serves HEAD (RFC 9110 section 9.3.2) unless a route of the
// same host, path and headers names HEAD itself.
func TestLookupHeadFollowsGet(t *testing.T) {
	runLookups(t, []Spec[string]{
		{Name: "models", Path: "/v1/models", Methods: []string{"GET"}},
		{Name: "model", Path: "/v1/models/:id", Methods: []string{"GET", "DELETE"}},
		{Name: "probe-get", Path: "/probe", Methods: []string{"GET"}},
		{Name: "probe-head", Path: "/probe", Methods: []string{"HEAD"}},
		{Name: "post-only", Path: "/submit", Methods: []string{"POST"}},
		{Name: "get-head", Path: "/both", Methods: []string{"HEAD", "GET"}},
		{Name: "tenant-get", Path: "/t", Methods: []string{"GET"}, Headers: []HeaderMatch{{Name: "X-Tenant", Value: "a"}}},
		{Name: "plain-head", Path: "/t", Methods: []string{"HEAD"}},
	}, []lookupCase{
		{name: "HEAD on a GET route", method: "HEAD", path: "/v1/models", want: "models"},
		{name: "HEAD on a GET route with params", method: "HEAD", path: "/v1/models/m1", want: "model", params: []string{"id", "m1"}},
		{name: "Allow names the implied HEAD", method: "PUT", path: "/v1/models/m1", allow: "GET, HEAD, DELETE"},
		{name: "an explicit HEAD route wins", method: "HEAD", path: "/probe", want: "probe-head"},
		{name: "GET still reaches the GET route", path: "/probe", want: "probe-get"},
		{name: "no HEAD without GET", method: "HEAD", path: "/submit", allow: "POST"},
		{name: "HEAD and GET named together", method: "HEAD", path: "/both", want: "get-head"},
		{name: "HEAD with the headers of the GET route", method: "HEAD", path: "/t", headers: headers{"x-tenant": "a"}, want: "tenant-get"},
		{name: "HEAD without them", method: "HEAD", path: "/t", headers: headers{}, want: "plain-head"},
	})
}

func TestLookupHeaders(t *testing.T) {
	runLookups(t, []Spec[string]{
		{Name: "plain", Path: "/h"},
		{Name: "tenant", Path: "/h", Headers: []HeaderMatch{{Name: "X-Tenant", Value: "a"}}},
		{Name: "tenant-prod", Path: "/h", Headers: []HeaderMatch{{Name: "x-tenant", Value: "a"}, {Name: "X-Env", Value: "prod"}}},
		{Name: "canary-get", Path: "/c", Methods: []string{"GET"}, Headers: []HeaderMatch{{Name: "X-Canary", Value: "1"}}},
	}, []lookupCase{
		{name: "no headers", path: "/h", headers: headers{}, want: "plain"},
		{name: "nil header source", path: "/h", want: "plain"},
		{name: "one matcher", path: "/h", headers: headers{"x-tenant": "a"}, want: "tenant"},
		{name: "more matchers tried first", path: "/h", headers: headers{"x-tenant": "a", "x-env": "prod"}, want: "tenant-prod"},
		{name: "values are exact", path: "/h", headers: headers{"x-tenant": "A"}, want: "plain"},
		{name: "partial match falls back", path: "/h", headers: headers{"x-tenant": "a", "x-env": "dev"}, want: "tenant"},
		{name: "http.Header adapter", path: "/h", headers: Header(http.Header{"X-Tenant": {"a"}, "X-Env": {"prod"}}), want: "tenant-prod"},
		{name: "http.Header first value counts", path: "/h", headers: Header(http.Header{"X-Tenant": {"b", "a"}}), want: "plain"},
		{name: "headers match, method does not: 405", method: "POST", path: "/c", headers: headers{"x-canary": "1"}, allow: "GET, HEAD"},
		{name: "headers do not match: 404", method: "POST", path: "/c", headers: headers{"x-canary": "0"}},
		{name: "headers missing: 404", path: "/c"},
	})
}

func TestLookupPrecedence(t *testing.T) {
	runLookups(t, []Spec[string]{
		{Name: "static", Path: "/a/b/d"},
		{Name: "param", Path: "/a/:x/c"},
		{Name: "catch-all", Path: "/a/*rest"},
		{Name: "ab", Path: "/ab"},
		{Name: "top-param", Path: "/:x"},
		{Name: "post-static", Path: "/m/static", Methods: []string{"POST"}},
		{Name: "get-param", Path: "/m/:x", Methods: []string{"GET"}},
		{Name: "prefix-static", Path: "/p", Prefix: true},
		{Name: "param-below", Path: "/:x/y"},
	}, []lookupCase{
		{name: "static wins", path: "/a/b/d", want: "static"},
		{name: "backtrack from static into param", path: "/a/b/c", want: "param", params: []string{"x", "b"}},
		{name: "backtrack into catch-all", path: "/a/b/e", want: "catch-all", params: []string{"rest", "b/e"}},
		{name: "param before catch-all", path: "/a/zz/c", want: "param", params: []string{"x", "zz"}},
		{name: "catch-all last", path: "/a/zz", want: "catch-all", params: []string{"rest", "zz"}},
		{name: "static node partly matching a segment", path: "/abc", want: "top-param", params: []string{"x", "abc"}},
		{name: "static segment", path: "/ab", want: "ab"},
		{name: "method mismatch backtracks to param", path: "/m/static", want: "get-param", params: []string{"x", "static"}},
		{name: "static prefix beats param segment", path: "/p/y", want: "prefix-static"},
		{name: "param route for other first segments", path: "/q/y", want: "param-below", params: []string{"x", "q"}},
		{name: "params are cleared after backtracking", path: "/m/static", want: "get-param", params: []string{"x", "static"}},
	})
}

// TestLookupDoesNotAllocate checks the promise in Router.Lookup's doc
// comment for every kind of outcome.
func TestLookupDoesNotAllocate(t *testing.T) {
	r := build(t, []Spec[string]{
		{Name: "static", Path: "/user/repos", Methods: []string{"GET"}},
		{Name: "params", Path: "/repos/:owner/:repo/pulls/:number", Methods: []string{"GET", "POST"}},
		{Name: "catch-all", Path: "/static/*file"},
		{Name: "prefix", Path: "/api", Prefix: true},
		{Name: "exact-host", Hosts: []string{"api.example.com"}, Path: "/h"},
		{Name: "wild-host", Hosts: []string{"*.example.com"}, Path: "/w/:x"},
		{Name: "ipv6", Hosts: []string{"[::1]"}, Path: "/six"},
		{Name: "headers", Path: "/hdr", Headers: []HeaderMatch{{Name: "X-Tenant", Value: "a"}}},
	})
	hdr := Header(http.Header{"X-Tenant": {"a"}})
	cases := []struct {
		name, host, method, path string
		h                        HeaderSource
	}{
		{"static", "", "GET", "/user/repos", nil},
		{"params", "", "POST", "/repos/julienschmidt/httprouter/pulls/42", nil},
		{"catch-all", "", "GET", "/static/css/a.css", nil},
		{"prefix", "", "GET", "/api/v1/x", nil},
		{"exact host with case and port", "API.Example.com:8443", "GET", "/h", nil},
		{"wildcard host", "Deep.Sub.example.com", "GET", "/w/1", nil},
		{"IPv6 host", "[::1]:8080", "GET", "/six", nil},
		{"header matcher via http.Header", "", "GET", "/hdr", hdr},
		{"405", "", "DELETE", "/user/repos", nil},
		{"404", "other.example.org", "GET", "/nope/nope", nil},
		{"nil params", "", "GET", "/repos/a/b/pulls/1", nil},
	}
	var ps Params
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &ps
			if tc.name == "nil params" {
				p = nil
			}
			allocs := testing.AllocsPerRun(100, func() {
				r.Lookup(tc.host, tc.method, tc.path, tc.h, p)
			})
			if allocs != 0 {
				t.Errorf("Lookup allocates %v times per call; want 0", allocs)
			}
		})
	}
}
