package router

// HeaderSource gives request header values to header matchers. Name is
// always lowercase. Implementations must not allocate if lookups are to stay
// allocation-free (exchange.Header is the one requests use).
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
