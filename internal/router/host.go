package router

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxHostLen is the longest host name that can match an exact or wildcard
// host entry: 253 bytes of DNS name (RFC 1035 section 2.3.4) plus room for
// a bracketed IPv6 literal. Longer request hosts only match any-host routes.
const maxHostLen = 255

// normalizeHost validates one Spec.Hosts entry and returns it lowercased.
// The result is "" (any host), an exact name or IP literal, or "*.suffix".
func normalizeHost(h string) (string, error) {
	if h == "" {
		return "", nil
	}
	orig := h
	h = strings.ToLower(h)
	if strings.HasPrefix(h, "[") {
		if !strings.HasSuffix(h, "]") {
			return "", fmt.Errorf("host %q: IPv6 literal must be bracketed and must not contain a port", orig)
		}
		a, err := netip.ParseAddr(h[1 : len(h)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("host %q: invalid IPv6 literal", orig)
		}
		// Match the textual form a client sends only if it is the
		// canonical one; say so rather than silently never matching.
		if "["+a.String()+"]" != h {
			return "", fmt.Errorf("host %q: write the IPv6 literal in canonical form %q", orig, "["+a.String()+"]")
		}
		return h, nil
	}
	name := h
	if strings.HasPrefix(h, "*.") {
		name = h[2:]
	}
	if len(name) > 253 {
		return "", fmt.Errorf("host %q: longer than 253 bytes", orig)
	}
	if strings.HasSuffix(name, ".") {
		return "", fmt.Errorf("host %q: trailing dot not allowed (request hosts are compared without it)", orig)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return "", fmt.Errorf("host %q: empty label", orig)
		}
		if len(label) > 63 {
			return "", fmt.Errorf("host %q: label longer than 63 bytes", orig)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			case c == '*':
				return "", fmt.Errorf("host %q: wildcard allowed only as a leading \"*.\"", orig)
			case c == ':':
				return "", fmt.Errorf("host %q: must not contain a port", orig)
			default:
				return "", fmt.Errorf("host %q: invalid character %q", orig, c)
			}
		}
	}
	return h, nil
}

// requestHost writes the lowercased host of a request, without port and
// trailing dot, into buf and returns its length, or -1 when it is too long
// to match any exact or wildcard entry. It does not allocate.
func requestHost(host string, buf *[maxHostLen]byte) int {
	if host != "" && host[0] == '[' {
		// IPv6 literal, RFC 3986 section 3.2.2: the port follows "]".
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[:i+1]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = host[:i]
	}
	// A fully qualified "example.com." names the same host (RFC 1034
	// section 3.1).
	if n := len(host); n > 1 && host[n-1] == '.' {
		host = host[:n-1]
	}
	if len(host) > len(buf) {
		return -1
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return len(host)
}
