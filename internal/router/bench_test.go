package router

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/julienschmidt/httprouter"
)

// The GitHub benchmarks compare Router.Lookup with httprouter v1.3.0 on the
// route set of go-http-routing-benchmark, with the same requests:
//
//   - static: GET /user/repos (that suite's GithubStatic)
//   - param:  GET /repos/julienschmidt/httprouter/stargazers, two parameters
//     (that suite's GithubParam)
//   - param1: GET /user/keys/42, one parameter
//   - all:    every one of the 203 routes once per iteration, requesting the
//     pattern text itself, as that suite's GithubAll does
//
// httprouter is measured twice: "httprouter-lookup" calls Router.Lookup
// (method, path), the closest equivalent of ours; "httprouter-serve" calls
// ServeHTTP with a no-op handler and response writer, which is how that
// suite measures it. Only the first is a like-for-like comparison.

func githubRouter(tb testing.TB) *Router[int] {
	tb.Helper()
	var b Builder[int]
	for i, rt := range githubAPI {
		if err := b.Add(Spec[int]{Name: rt.method + " " + rt.path, Path: rt.path, Methods: []string{rt.method}, Value: i}); err != nil {
			tb.Fatal(err)
		}
	}
	r, err := b.Build()
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

func githubHTTPRouter() *httprouter.Router {
	hr := httprouter.New()
	noop := func(http.ResponseWriter, *http.Request, httprouter.Params) {}
	for _, rt := range githubAPI {
		hr.Handle(rt.method, rt.path, noop)
	}
	return hr
}

// nopWriter is a ResponseWriter that discards everything.
type nopWriter struct{ h http.Header }

func (w nopWriter) Header() http.Header       { return w.h }
func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
func (nopWriter) WriteHeader(int)             {}

// TestGitHubAPI checks that every benchmark route resolves to itself, so
// the benchmarks measure successful lookups.
func TestGitHubAPI(t *testing.T) {
	r := githubRouter(t)
	if r.Len() != 203 {
		t.Fatalf("Len() = %d; want 203", r.Len())
	}
	var ps Params
	for i, rt := range githubAPI {
		res := r.Lookup("", rt.method, rt.path, nil, &ps)
		if !res.Found || res.Value != i || res.Pattern != rt.path {
			t.Errorf("Lookup(%s %s) = %+v; want route %d", rt.method, rt.path, res, i)
		}
	}
	res := r.Lookup("", "GET", "/repos/julienschmidt/httprouter/stargazers", nil, &ps)
	if owner, _ := ps.Get("owner"); !res.Found || owner != "julienschmidt" {
		t.Errorf("stargazers: found %v, owner %q", res.Found, owner)
	}
}

var (
	sinkResult Result[int]
	sinkHandle httprouter.Handle
)

func BenchmarkGitHub(b *testing.B) {
	r := githubRouter(b)
	hr := githubHTTPRouter()
	single := []struct{ name, method, path string }{
		{"static", "GET", "/user/repos"},
		{"param", "GET", "/repos/julienschmidt/httprouter/stargazers"},
		{"param1", "GET", "/user/keys/42"},
	}
	for _, s := range single {
		b.Run(s.name+"/penstock", func(b *testing.B) {
			var ps Params
			b.ReportAllocs()
			for b.Loop() {
				sinkResult = r.Lookup("", s.method, s.path, nil, &ps)
			}
		})
		b.Run(s.name+"/httprouter-lookup", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sinkHandle, _, _ = hr.Lookup(s.method, s.path)
			}
		})
		b.Run(s.name+"/httprouter-serve", func(b *testing.B) {
			req := httptest.NewRequest(s.method, s.path, nil)
			w := nopWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				hr.ServeHTTP(w, req)
			}
		})
	}

	b.Run("all/penstock", func(b *testing.B) {
		var ps Params
		b.ReportAllocs()
		for b.Loop() {
			for _, rt := range githubAPI {
				sinkResult = r.Lookup("", rt.method, rt.path, nil, &ps)
			}
		}
	})
	b.Run("all/httprouter-lookup", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, rt := range githubAPI {
				sinkHandle, _, _ = hr.Lookup(rt.method, rt.path)
			}
		}
	})
	b.Run("all/httprouter-serve", func(b *testing.B) {
		reqs := make([]*http.Request, len(githubAPI))
		for i, rt := range githubAPI {
			reqs[i] = httptest.NewRequest(rt.method, rt.path, nil)
		}
		w := nopWriter{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			for _, req := range reqs {
				hr.ServeHTTP(w, req)
			}
		}
	})
}

// BenchmarkLookupFeatures measures the features httprouter does not have,
// on top of the GitHub route set.
func BenchmarkLookupFeatures(b *testing.B) {
	var bld Builder[int]
	for i, rt := range githubAPI {
		_ = bld.Add(Spec[int]{Name: rt.method + " " + rt.path, Path: rt.path, Methods: []string{rt.method}, Value: i})
		_ = bld.Add(Spec[int]{Name: "api " + rt.method + " " + rt.path, Hosts: []string{"api.example.com"}, Path: rt.path, Methods: []string{rt.method}, Value: i})
	}
	_ = bld.Add(Spec[int]{Name: "wild", Hosts: []string{"*.example.com"}, Path: "/w/:x"})
	_ = bld.Add(Spec[int]{Name: "canary", Path: "/user/repos", Methods: []string{"GET"}, Headers: []HeaderMatch{{Name: "X-Canary", Value: "1"}}})
	r, err := bld.Build()
	if err != nil {
		b.Fatal(err)
	}
	hdr := Header(http.Header{"X-Canary": {"1"}})
	cases := []struct {
		name, host, method, path string
		h                        HeaderSource
	}{
		{"exact-host", "API.example.com:443", "GET", "/repos/julienschmidt/httprouter/stargazers", nil},
		{"wildcard-host", "a.b.example.com", "GET", "/w/1", nil},
		{"header-match", "", "GET", "/user/repos", hdr},
		{"405", "", "PATCH", "/user/repos", nil},
		{"404", "", "GET", "/nope/nope/nope", nil},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var ps Params
			b.ReportAllocs()
			for b.Loop() {
				sinkResult = r.Lookup(tc.host, tc.method, tc.path, tc.h, &ps)
			}
		})
	}
}
