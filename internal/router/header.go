package router

import "net/http"

// HeaderSource gives request header values to header matchers. Name is
// always lowercase. Implementations must not allocate if lookups are to stay
// allocation-free; [Header] adapts an [http.Header].
type HeaderSource interface {
	// HeaderValue returns the first value of the named header and whether
	// the header is present.
	HeaderValue(name string) (string, bool)
}

// HeaderMatch requires a request header to be present with exactly Value.
// Name is compared case-insensitively and must be an RFC 9110 token; Value
// is compared byte for byte, with the first value of the header when the
// request repeats it. An empty Value matches a header that is present but
// empty.
type HeaderMatch struct {
	Name, Value string
}

// Header adapts an [http.Header] (as filled in by net/http, with canonical
// keys) to [HeaderSource] without allocating for names up to 128 bytes.
type Header http.Header

// HeaderValue implements [HeaderSource].
func (h Header) HeaderValue(name string) (string, bool) {
	var buf [128]byte
	if len(name) > len(buf) {
		vs := http.Header(h).Values(name)
		if len(vs) == 0 {
			return "", false
		}
		return vs[0], true
	}
	// Canonical MIME form of a lowercase token: upper-case the first
	// letter and each letter after '-', as textproto does.
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if upper && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		buf[i] = c
		upper = c == '-'
	}
	vs := h[string(buf[:len(name)])]
	if len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}
