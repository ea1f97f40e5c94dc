package router

import "net/http"

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
