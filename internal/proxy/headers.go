package proxy

import (
	"net/http"
	"net/netip"
	"strings"
	"unsafe"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// hopByHop lists the connection-specific fields a proxy must not forward
// (RFC 9110 §7.6.1), plus the de facto ones that predate it: Keep-Alive,
// Proxy-Connection and the proxy authentication pair, which belong to the hop
// between client and penstock.
var hopByHop = [...]string{
	"Connection",
	"Keep-Alive",
	"Proxy-Connection",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"TE",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

func isHopByHop(name string) bool {
	for _, h := range hopByHop {
		if exchange.EqualFold(h, name) {
			return true
		}
	}
	return false
}

// listedInConnection reports whether name is one of the options of the
// Connection fields in h; those fields are hop-by-hop too (RFC 9110 §7.6.1).
func listedInConnection(h *exchange.Header, name string) bool {
	found := false
	h.Values("Connection", func(v string) bool {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if exchange.EqualFold(strings.TrimSpace(tok), name) {
				found = true
				return false
			}
		}
		return true
	})
	return found
}

// isForwardingHeader reports the fields that speak for a proxy in front:
// penstock rewrites the first four itself, and drops X-Real-IP and
// X-Forwarded-Port from a client that is not a trusted proxy, since any
// client can forge them (an upstream would take a forged X-Real-IP for the
// client's address).
func isForwardingHeader(name string) bool {
	return exchange.EqualFold(name, "X-Forwarded-For") ||
		exchange.EqualFold(name, "X-Forwarded-Proto") ||
		exchange.EqualFold(name, "X-Forwarded-Host") ||
		exchange.EqualFold(name, "Forwarded") ||
		exchange.EqualFold(name, "X-Real-Ip") ||
		exchange.EqualFold(name, "X-Forwarded-Port")
}

// upgradeToken returns the protocol an HTTP/1.1 upgrade request asks to
// switch to when penstock tunnels it: "websocket" (RFC 6455), and nothing
// else. For any other token the request goes upstream as a plain one
// (Upgrade is hop-by-hop and dropped): in particular h2c (RFC 7540 §3.2,
// deprecated by RFC 9113), which would let a client speak HTTP/2 straight
// to the upstream past the route's match, as any unvetted protocol would.
func (f *Forwarder) upgradeToken(x *exchange.Exchange) string {
	if f.NoWebSocket {
		return ""
	}
	return upgradeToken(x)
}

// upgradeToken is Forwarder.upgradeToken on a route that allows WebSocket.
func upgradeToken(x *exchange.Exchange) string {
	if x.Req.Proto != exchange.HTTP11 {
		return ""
	}
	up, ok := x.Req.Header.Get("Upgrade")
	if !ok || !listedInConnection(&x.Req.Header, "Upgrade") {
		return ""
	}
	// A list of protocols in order of preference (RFC 9110 §7.8), each
	// with an optional "/version".
	for up != "" {
		var tok string
		tok, up, _ = strings.Cut(up, ",")
		name, _, _ := strings.Cut(strings.TrimSpace(tok), "/")
		if exchange.EqualFold(name, "websocket") {
			return "websocket"
		}
	}
	return ""
}

// outgoingHeader fills out with the upstream request's header: end-to-end
// fields of the client request, then the forwarding fields. When the client
// is a trusted proxy its X-Forwarded-* and Forwarded values are kept and
// appended to, and its X-Real-IP kept; otherwise they are dropped, since any
// client can forge them.
// out is reset first; with a warm out nothing is allocated.
func outgoingHeader(x *exchange.Exchange, out *exchange.Header, trusted bool, upgrade string) {
	out.Reset()
	in := &x.Req.Header
	in.Range(func(name, value string) bool {
		if isHopByHop(name) || listedInConnection(in, name) {
			return true
		}
		if !trusted && isForwardingHeader(name) {
			return true
		}
		out.Add(name, value)
		return true
	})
	// "TE: trailers" is the one TE value a proxy passes on: gRPC and other
	// trailer users require it end to end (RFC 9110 §10.1.4).
	if te, ok := in.Get("Te"); ok && containsFold(te, "trailers") {
		out.Add("Te", "trailers")
	}
	if upgrade != "" {
		out.Add("Connection", "Upgrade")
		out.Add("Upgrade", upgrade)
	}

	client := x.Req.RemoteAddr.Addr().Unmap()
	proto := x.Req.Scheme
	var stack [256]byte
	b := stack[:0]

	prior := false
	if trusted {
		b, prior = joinValues(b, out, "X-Forwarded-For")
	}
	switch {
	case !client.IsValid():
		// No socket address to add (never for TCP peers): keep what a
		// trusted proxy sent, add no empty element.
		if !trusted {
			out.Del("X-Forwarded-For")
		}
	case prior:
		b = append(b, ", "...)
		b = client.AppendTo(b)
		out.Del("X-Forwarded-For")
		out.Add("X-Forwarded-For", bytesString(b))
	default:
		b = client.AppendTo(b[:0])
		out.Del("X-Forwarded-For")
		out.Add("X-Forwarded-For", bytesString(b))
	}
	if v, _ := out.Get("X-Forwarded-Proto"); !trusted || v == "" {
		out.Set("X-Forwarded-Proto", proto)
	}
	if v, _ := out.Get("X-Forwarded-Host"); !trusted || v == "" {
		out.Set("X-Forwarded-Host", x.Req.Host)
	}
	b, prior = b[:0], false
	if trusted {
		b, prior = joinValues(b, out, "Forwarded")
	}
	if prior {
		b = append(b, ", "...)
	}
	b = appendForwardedElement(b, client, proto, x.Req.Host)
	out.Del("Forwarded")
	out.Add("Forwarded", bytesString(b))
}

// bytesString views b as a string for a call that copies it (Header.Add).
func bytesString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// joinValues appends the values of the fields named name, joined by ", ",
// and reports whether there were any.
func joinValues(b []byte, h *exchange.Header, name string) ([]byte, bool) {
	found := false
	h.Values(name, func(v string) bool {
		if found {
			b = append(b, ", "...)
		}
		b = append(b, v...)
		found = true
		return true
	})
	return b, found
}

// containsFold reports whether s contains sub, ignoring ASCII case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if exchange.EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// appendForwardedElement appends one RFC 7239 forwarded-element. IPv6
// addresses are bracketed and quoted (§6).
func appendForwardedElement(b []byte, client netip.Addr, proto, host string) []byte {
	b = append(b, "for="...)
	switch {
	case !client.IsValid():
		b = append(b, "unknown"...)
	case client.Is6():
		b = append(b, `"[`...)
		b = client.AppendTo(b)
		b = append(b, `]"`...)
	default:
		b = client.AppendTo(b)
	}
	if host != "" {
		b = append(b, ";host="...)
		b = appendQuotedIfNeeded(b, host)
	}
	b = append(b, ";proto="...)
	return append(b, proto...)
}

func appendQuotedIfNeeded(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			b = append(b, '"')
			for j := 0; j < len(v); j++ {
				if v[j] == '\\' || v[j] == '"' {
					b = append(b, '\\')
				}
				b = append(b, v[j])
			}
			return append(b, '"')
		}
	}
	return append(b, v...)
}

// stdHeader converts h for net/http, canonicalizing the names. The strings
// are copied: h's buffer is reused, and net/http may hold the map longer
// than the exchange.
func stdHeader(h *exchange.Header) http.Header {
	out := make(http.Header, h.Len())
	h.Range(func(name, value string) bool {
		k := http.CanonicalHeaderKey(strings.Clone(name))
		out[k] = append(out[k], strings.Clone(value))
		return true
	})
	return out
}

// copyResponseFields copies the upstream response's end-to-end fields to the
// client response. An Alt-Svc already set (the listener advertising its own
// HTTP/3 endpoint) wins over the upstream's, which names the upstream's
// ports, not ones the client can reach.
func copyResponseFields(dst, src *exchange.Header) {
	ownAltSvc := dst.Has("Alt-Svc")
	src.Range(func(name, value string) bool {
		if isHopByHop(name) || listedInConnection(src, name) {
			return true
		}
		if ownAltSvc && exchange.EqualFold(name, "Alt-Svc") {
			return true
		}
		dst.Add(name, value)
		return true
	})
}
