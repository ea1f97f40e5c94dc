package router

import (
	"fmt"
	"strings"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// MaxPatternLen is the longest path pattern accepted, in bytes.
const MaxPatternLen = 1024

// MaxParams is the most parameters (":name" and "*name" segments together)
// one path pattern may declare; it is also the capacity of [Params].
const MaxParams = exchange.MaxParams

// PatternError reports an invalid path pattern. Offset is the byte offset in
// Pattern where the problem was found.
type PatternError struct {
	Pattern string // the pattern as given to [Builder.Add]
	Offset  int    // byte offset of the problem in Pattern
	Reason  string // what is wrong, lowercase, without the pattern
}

// Error formats the error as `pattern "/a/:": offset 4: empty parameter name`.
func (e *PatternError) Error() string {
	return fmt.Sprintf("pattern %q: offset %d: %s", e.Pattern, e.Offset, e.Reason)
}

// tokenKind says how a piece of a parsed pattern matches the request path.
type tokenKind uint8

const (
	tokStatic   tokenKind = iota // literal bytes, slashes included
	tokParam                     // ":name": one non-empty segment
	tokCatchAll                  // "*name": the rest of the path, possibly empty
)

type token struct {
	kind tokenKind
	text string // literal bytes for tokStatic, the name otherwise
}

// pattern is a validated path pattern split into tokens.
type pattern struct {
	raw    string
	tokens []token
	params []string // parameter names in path order
	// shape is raw with every parameter written as ":" and the catch-all as
	// "*", so "/a/:x" and "/a/:y" have the same shape.
	shape string
}

// parsePattern validates p and splits it into tokens. prefix tells whether
// the pattern is used as a prefix route, where a catch-all makes no sense.
func parsePattern(p string, prefix bool) (pattern, error) {
	fail := func(off int, format string, args ...any) (pattern, error) {
		return pattern{}, &PatternError{Pattern: p, Offset: off, Reason: fmt.Sprintf(format, args...)}
	}
	if len(p) > MaxPatternLen {
		return fail(MaxPatternLen, "longer than %d bytes", MaxPatternLen)
	}
	if p == "" || p[0] != '/' {
		return fail(0, "must start with \"/\"")
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c <= ' ' || c == 0x7f:
			return fail(i, "whitespace or control character %q", c)
		case c >= 0x80:
			// Patterns are compared with the raw request path, where
			// non-ASCII bytes are percent-encoded (RFC 3986 section 2.1),
			// so a raw non-ASCII pattern could never match a valid request.
			return fail(i, "non-ASCII byte 0x%02x; write it percent-encoded", c)
		case c == '?' || c == '#':
			return fail(i, "%q not allowed; patterns match the path only", c)
		}
	}

	var (
		pat         = pattern{raw: p}
		shape       strings.Builder
		staticStart = 0 // start of the literal run not yet emitted
	)
	shape.Grow(len(p))
	for start := 1; start <= len(p); {
		end := strings.IndexByte(p[start:], '/')
		if end < 0 {
			end = len(p)
		} else {
			end += start
		}
		seg, last := p[start:end], end == len(p)
		switch {
		case seg == "" && !last:
			return fail(start, "empty segment (\"//\")")
		case seg == "." || seg == "..":
			return fail(start, "dot segment %q", seg)
		case seg != "" && (seg[0] == ':' || seg[0] == '*'):
			name := seg[1:]
			if name == "" {
				if seg[0] == ':' {
					return fail(start+1, "empty parameter name")
				}
				return fail(start+1, "empty catch-all name")
			}
			if i := strings.IndexAny(name, ":*"); i >= 0 {
				return fail(start+1+i, "%q inside a parameter name; a parameter must be a whole segment", name[i])
			}
			kind := tokParam
			if seg[0] == '*' {
				kind = tokCatchAll
				if !last {
					return fail(start, "catch-all must be the last segment")
				}
				if prefix {
					return fail(start, "catch-all not allowed in a prefix pattern")
				}
			}
			for _, prev := range pat.params {
				if prev == name {
					return fail(start+1, "duplicate parameter name %q", name)
				}
			}
			if len(pat.params) == MaxParams {
				return fail(start, "more than %d parameters", MaxParams)
			}
			pat.params = append(pat.params, name)
			pat.tokens = append(pat.tokens, token{kind: tokStatic, text: p[staticStart:start]}, token{kind: kind, text: name})
			shape.WriteString(p[staticStart:start])
			shape.WriteByte(seg[0])
			staticStart = end
		default:
			if i := strings.IndexAny(seg, ":*"); i >= 0 {
				return fail(start+i, "%q inside a segment; a parameter must be a whole segment", seg[i])
			}
		}
		start = end + 1
	}
	if staticStart < len(p) {
		pat.tokens = append(pat.tokens, token{kind: tokStatic, text: p[staticStart:]})
		shape.WriteString(p[staticStart:])
	}
	pat.shape = shape.String()
	return pat, nil
}
