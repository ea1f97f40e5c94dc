package pipeline

import (
	"strings"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// cacheControl is what the asset cache reads of Cache-Control fields (RFC
// 9111 §5.2). Durations are in seconds; -1 means absent.
type cacheControl struct {
	noStore, noCache, private, public bool
	mustRevalidate                    bool
	maxAge, sMaxAge                   int64
}

// parseCacheControl reads every Cache-Control field of h. Unknown
// directives are ignored (RFC 9111 §5.2.3). A directive given twice with
// different values, or a malformed delta-seconds, makes the response
// uncacheable the safe way: max-age then counts as 0 (stale), as RFC 9111
// §4.2.1 asks of invalid freshness information. It allocates nothing.
func parseCacheControl(h *exchange.Header) cacheControl {
	cc := cacheControl{maxAge: -1, sMaxAge: -1}
	h.Values("Cache-Control", func(v string) bool {
		cc.parse(v)
		return true
	})
	return cc
}

// parse adds the directives of one field value.
func (cc *cacheControl) parse(v string) {
	for v != "" {
		var d string
		d, v, _ = strings.Cut(v, ",")
		d = strings.TrimSpace(d)
		name, arg, hasArg := strings.Cut(d, "=")
		name = strings.TrimSpace(name)
		arg = strings.Trim(strings.TrimSpace(arg), `"`)
		switch {
		case exchange.EqualFold(name, "no-store"):
			cc.noStore = true
		case exchange.EqualFold(name, "no-cache"):
			// The qualified form (no-cache="Set-Cookie") only restricts
			// fields; penstock treats it as the unqualified one, which is
			// stricter.
			cc.noCache = true
		case exchange.EqualFold(name, "private"):
			cc.private = true
		case exchange.EqualFold(name, "public"):
			cc.public = true
		case exchange.EqualFold(name, "must-revalidate"), exchange.EqualFold(name, "proxy-revalidate"):
			cc.mustRevalidate = true
		case exchange.EqualFold(name, "max-age"):
			cc.maxAge = mergeSeconds(cc.maxAge, arg, hasArg)
		case exchange.EqualFold(name, "s-maxage"):
			cc.sMaxAge = mergeSeconds(cc.sMaxAge, arg, hasArg)
		}
	}
}

// mergeSeconds parses a delta-seconds argument (RFC 9111 §1.2.2) and
// combines it with an earlier value of the same directive: a conflict or an
// invalid value yields 0.
func mergeSeconds(prev int64, arg string, hasArg bool) int64 {
	n, ok := parseDeltaSeconds(arg)
	if !hasArg || !ok {
		return 0
	}
	if prev >= 0 && prev != n {
		return 0
	}
	return n
}

// maxDeltaSeconds caps delta-seconds as RFC 9111 §1.2.2 allows (2^31).
const maxDeltaSeconds = 1 << 31

// parseDeltaSeconds parses a non-negative decimal integer, saturating at
// maxDeltaSeconds.
func parseDeltaSeconds(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		if n < maxDeltaSeconds {
			n = n*10 + int64(c-'0')
		}
	}
	return min(n, maxDeltaSeconds), true
}

// etagMatches reports whether an If-None-Match field value matches etag by
// the weak comparison RFC 9110 §13.1.2 prescribes: W/ prefixes are
// ignored, "*" matches any current representation.
func etagMatches(inm, etag string) bool {
	if etag == "" {
		return false
	}
	etag = strings.TrimPrefix(etag, "W/")
	for inm != "" {
		var tag string
		tag, inm, _ = strings.Cut(inm, ",")
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return true
		}
		if strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}
