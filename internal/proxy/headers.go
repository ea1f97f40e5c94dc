package proxy

import (
	"net/http"
	"net/netip"
	"strings"

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

// isForwardingHeader reports the fields penstock rewrites itself.
func isForwardingHeader(name string) bool {
	return exchange.EqualFold(name, "X-Forwarded-For") ||
		exchange.EqualFold(name, "X-Forwarded-Proto") ||
		exchange.EqualFold(name, "X-Forwarded-Host") ||
		exchange.EqualFold(name, "Forwarded")
}

// upgradeToken returns the protocol the client asks to switch to (for
// example "websocket") when the request is an HTTP/1.1 upgrade.
func upgradeToken(x *exchange.Exchange) string {
	if x.Req.Proto != exchange.HTTP11 {
		return ""
	}
	up, ok := x.Req.Header.Get("Upgrade")
	if !ok || !listedInConnection(&x.Req.Header, "Upgrade") {
		return ""
	}
	return up
}

// outgoingHeader builds the upstream request's header: end-to-end fields of
// the client request, then the forwarding fields. When the client is a
// trusted proxy its X-Forwarded-* and Forwarded values are kept and appended
// to; otherwise they are dropped, since any client can forge them.
func outgoingHeader(x *exchange.Exchange, trusted bool, upgrade string) http.Header {
	in := &x.Req.Header
	out := make(http.Header, in.Len()+4)
	in.Range(func(name, value string) bool {
		if isHopByHop(name) || listedInConnection(in, name) {
			return true
		}
		if !trusted && isForwardingHeader(name) {
			return true
		}
		k := http.CanonicalHeaderKey(name)
		out[k] = append(out[k], value)
		return true
	})
	// "TE: trailers" is the one TE value a proxy passes on: gRPC and other
	// trailer users require it end to end (RFC 9110 §10.1.4).
	if te, ok := in.Get("Te"); ok && strings.Contains(strings.ToLower(te), "trailers") {
		out["Te"] = []string{"trailers"}
	}
	if upgrade != "" {
		out["Connection"] = []string{"Upgrade"}
		out["Upgrade"] = []string{upgrade}
	}

	client := x.Req.RemoteAddr.Addr().Unmap()
	clientIP := ""
	if client.IsValid() {
		clientIP = client.String()
	}
	proto := x.Req.Scheme

	switch prior := out.Values("X-Forwarded-For"); {
	case clientIP == "":
		// No socket address to add (never for TCP peers): keep what a
		// trusted proxy sent, add no empty element.
		if !trusted {
			out.Del("X-Forwarded-For")
		}
	case trusted && len(prior) > 0:
		out.Set("X-Forwarded-For", strings.Join(prior, ", ")+", "+clientIP)
	default:
		out.Set("X-Forwarded-For", clientIP)
	}
	if !trusted || out.Get("X-Forwarded-Proto") == "" {
		out.Set("X-Forwarded-Proto", proto)
	}
	if !trusted || out.Get("X-Forwarded-Host") == "" {
		out.Set("X-Forwarded-Host", x.Req.Host)
	}
	fwd := forwardedElement(client, proto, x.Req.Host)
	if prior := out.Values("Forwarded"); trusted && len(prior) > 0 {
		out.Set("Forwarded", strings.Join(prior, ", ")+", "+fwd)
	} else {
		out.Set("Forwarded", fwd)
	}
	return out
}

// forwardedElement renders one RFC 7239 forwarded-element. IPv6 addresses
// are bracketed and quoted (§6).
func forwardedElement(client netip.Addr, proto, host string) string {
	var b strings.Builder
	b.WriteString("for=")
	switch {
	case !client.IsValid():
		b.WriteString("unknown")
	case client.Is6():
		b.WriteString(`"[` + client.String() + `]"`)
	default:
		b.WriteString(client.String())
	}
	if host != "" {
		b.WriteString(";host=")
		b.WriteString(quoteIfNeeded(host))
	}
	b.WriteString(";proto=")
	b.WriteString(proto)
	return b.String()
}

// quoteIfNeeded quotes a Forwarded value that is not a token (a host with a
// port contains ':', which is not a token character).
func quoteIfNeeded(v string) string {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return `"` + strings.ReplaceAll(strings.ReplaceAll(v, `\`, `\\`), `"`, `\"`) + `"`
		}
	}
	return v
}

// copyResponseHeader copies the upstream response's end-to-end fields to the
// client response. An Alt-Svc already set (the listener advertising its own
// HTTP/3 endpoint) wins over the upstream's, which names the upstream's
// ports, not ones the client can reach.
func copyResponseHeader(dst *exchange.Header, src http.Header) {
	conn := src.Values("Connection")
	for name, values := range src {
		if isHopByHop(name) || inTokens(conn, name) {
			continue
		}
		if name == "Alt-Svc" && dst.Has(name) {
			continue
		}
		for _, v := range values {
			dst.Add(name, v)
		}
	}
}

func inTokens(lists []string, name string) bool {
	for _, v := range lists {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if exchange.EqualFold(strings.TrimSpace(tok), name) {
				return true
			}
		}
	}
	return false
}
