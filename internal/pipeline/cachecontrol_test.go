package pipeline

import (
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
)

func TestParseCacheControl(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		want   cacheControl
	}{
		{"absent", nil, cacheControl{maxAge: -1, sMaxAge: -1}},
		{"public max-age", []string{"public, max-age=300"}, cacheControl{public: true, maxAge: 300, sMaxAge: -1}},
		{"case and spaces", []string{" Max-Age = 60 ,NO-CACHE"}, cacheControl{noCache: true, maxAge: 60, sMaxAge: -1}},
		{"quoted argument", []string{`max-age="30"`}, cacheControl{maxAge: 30, sMaxAge: -1}},
		{"several fields", []string{"private", "s-maxage=5", "must-revalidate"}, cacheControl{private: true, mustRevalidate: true, maxAge: -1, sMaxAge: 5}},
		{"no-store", []string{"no-store"}, cacheControl{noStore: true, maxAge: -1, sMaxAge: -1}},
		{"qualified no-cache counts as no-cache", []string{`no-cache="Set-Cookie"`}, cacheControl{noCache: true, maxAge: -1, sMaxAge: -1}},
		{"invalid max-age is stale", []string{"max-age=abc"}, cacheControl{maxAge: 0, sMaxAge: -1}},
		{"max-age without a value is stale", []string{"max-age"}, cacheControl{maxAge: 0, sMaxAge: -1}},
		{"conflicting max-age is stale", []string{"max-age=10", "max-age=20"}, cacheControl{maxAge: 0, sMaxAge: -1}},
		{"huge max-age saturates", []string{"max-age=99999999999999999999"}, cacheControl{maxAge: maxDeltaSeconds, sMaxAge: -1}},
		{"unknown directives are ignored", []string{"immutable, stale-while-revalidate=30, max-age=5"}, cacheControl{maxAge: 5, sMaxAge: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h exchange.Header
			for _, f := range tt.fields {
				h.Add("Cache-Control", f)
			}
			if got := parseCacheControl(&h); got != tt.want {
				t.Errorf("parseCacheControl(%q) = %+v, want %+v", tt.fields, got, tt.want)
			}
		})
	}
}

func TestETagMatches(t *testing.T) {
	tests := []struct {
		name, inm, etag string
		want            bool
	}{
		{"same strong tag", `"a"`, `"a"`, true},
		{"weak comparison ignores W/", `W/"a"`, `"a"`, true},
		{"stored weak tag", `"a"`, `W/"a"`, true},
		{"one of a list", `"x", "a"`, `"a"`, true},
		{"star", `*`, `"a"`, true},
		{"different tag", `"b"`, `"a"`, false},
		{"no stored tag", `*`, "", false},
		{"prefix is not a match", `"ab"`, `"a"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := etagMatches(tt.inm, tt.etag); got != tt.want {
				t.Errorf("etagMatches(%q, %q) = %v, want %v", tt.inm, tt.etag, got, tt.want)
			}
		})
	}
}

// FuzzParseCacheControl checks that no field value makes the parser panic
// and that durations are never below -1 or above the RFC's cap.
func FuzzParseCacheControl(f *testing.F) {
	f.Fuzz(func(t *testing.T, v string) {
		var h exchange.Header
		h.Add("Cache-Control", v)
		cc := parseCacheControl(&h)
		for _, d := range []int64{cc.maxAge, cc.sMaxAge} {
			if d < -1 || d > maxDeltaSeconds {
				t.Errorf("parseCacheControl(%q) = %+v: duration out of range", v, cc)
			}
		}
		etagMatches(v, `"a"`)
	})
}
