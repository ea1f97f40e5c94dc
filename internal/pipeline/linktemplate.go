package pipeline

import (
	"errors"
	"fmt"
	"strings"
)

// linkPart is one piece of a parsed early hint (EarlyHintsSettings.EarlyHints): literal
// text, or, when Param is set, the value of the route parameter Param.
type linkPart struct {
	// Literal is copied as is.
	Literal string
	// Param names a route parameter (without ":") whose value replaces it.
	Param string
}

// parseLinkTemplate parses an early_hints value: a Link field value (RFC
// 8288 §3) such as "</v1/models/:model/config.json>; rel=preload", whose
// target is enclosed in "<" and ">". A path segment of the target that
// starts with ":" (the route pattern syntax) is a parameter running to the
// next "/", "?", "#" or ">". Adjacent literal text is merged into one part.
func parseLinkTemplate(v string) ([]linkPart, error) {
	if v == "" {
		return nil, errors.New("is empty")
	}
	for i := 0; i < len(v); i++ {
		// A field value may hold visible ASCII, spaces and tabs (RFC 9110
		// §5.5); anything else could split or corrupt the 103 response.
		if c := v[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return nil, fmt.Errorf("contains control character %#02x", c)
		}
	}
	if v[0] != '<' {
		return nil, errors.New(`must start with "<" (a Link value: "</path>; rel=preload")`)
	}
	end := strings.IndexByte(v, '>')
	if end < 0 {
		return nil, errors.New(`has no ">" closing the link target`)
	}
	target := v[1:end]
	if target == "" {
		return nil, errors.New("has an empty link target")
	}
	var parts []linkPart
	lit := func(s string) {
		if s == "" {
			return
		}
		if n := len(parts); n > 0 && parts[n-1].Param == "" {
			parts[n-1].Literal += s
			return
		}
		parts = append(parts, linkPart{Literal: s})
	}
	lit("<")
	start := 0
	for i := 0; i < len(target); i++ {
		if target[i] != ':' || i == 0 || target[i-1] != '/' {
			continue
		}
		j := i + 1
		for j < len(target) && strings.IndexByte("/?#", target[j]) < 0 {
			j++
		}
		if j == i+1 {
			return nil, fmt.Errorf("has an unnamed parameter at byte %d of the target", i)
		}
		lit(target[start:i])
		parts = append(parts, linkPart{Param: target[i+1 : j]})
		start, i = j, j-1
	}
	lit(target[start:])
	lit(v[end:])
	return parts, nil
}

// patternParams returns the parameter names (":name" and "*name" segments)
// of a route path pattern.
func patternParams(pattern string) []string {
	var names []string
	for _, seg := range strings.Split(pattern, "/") {
		if len(seg) > 1 && (seg[0] == ':' || seg[0] == '*') {
			names = append(names, seg[1:])
		}
	}
	return names
}
