package proxy

import (
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// field is one client header field, in the order it was sent.
type field struct{ name, value string }

// clientExchange builds an exchange as an engine would hand it over.
func clientExchange(t testing.TB, proto exchange.Proto, remote, host string, fields ...field) *exchange.Exchange {
	t.Helper()
	x := exchange.Acquire()
	t.Cleanup(func() { exchange.Release(x) })
	x.Req.Proto = proto
	x.Req.Method = "GET"
	x.Req.Scheme = "http"
	x.Req.Host = host
	x.Req.Path = "/"
	if remote != "" {
		x.Req.RemoteAddr = netip.MustParseAddrPort(remote)
	}
	for _, f := range fields {
		x.Req.Header.Add(f.name, f.value)
	}
	return x
}

func TestIsHopByHop(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"Connection", true},
		{"connection", true},
		{"Keep-Alive", true},
		{"Proxy-Connection", true},
		{"Proxy-Authenticate", true},
		{"PROXY-AUTHORIZATION", true},
		{"TE", true},
		{"te", true},
		{"Trailer", true},
		{"Transfer-Encoding", true},
		{"upgrade", true},
		{"Content-Type", false},
		{"Content-Length", false},
		{"Authorization", false},
		{"Trailers", false},
		{"X-Connection", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isHopByHop(tt.name); got != tt.want {
				t.Errorf("isHopByHop(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
}

func TestListedInConnection(t *testing.T) {
	tests := []struct {
		name       string
		connection []string // one entry per Connection field
		lookup     string
		want       bool
	}{
		{name: "single option", connection: []string{"X-Trace"}, lookup: "X-Trace", want: true},
		{name: "case-insensitive", connection: []string{"x-trace"}, lookup: "X-TRACE", want: true},
		{name: "second of a list", connection: []string{"keep-alive, X-Trace"}, lookup: "X-Trace", want: true},
		{name: "spaces and tabs around tokens", connection: []string{" keep-alive ,\tX-Trace\t, close "}, lookup: "x-trace", want: true},
		{name: "in the second Connection field", connection: []string{"keep-alive", "X-Trace"}, lookup: "X-Trace", want: true},
		{name: "empty list elements", connection: []string{", ,X-Trace,,"}, lookup: "X-Trace", want: true},
		{name: "prefix is not a match", connection: []string{"X-Trace"}, lookup: "X-Tr", want: false},
		{name: "longer name is not a match", connection: []string{"X-Trace"}, lookup: "X-Trace-Id", want: false},
		{name: "not listed", connection: []string{"close"}, lookup: "X-Trace", want: false},
		{name: "no Connection field", connection: nil, lookup: "X-Trace", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h exchange.Header
			h.Add("X-Trace", "1")
			for _, v := range tt.connection {
				h.Add("Connection", v)
			}
			if got := listedInConnection(&h, tt.lookup); got != tt.want {
				t.Errorf("listedInConnection(%q, %q) = %v, want %v", tt.connection, tt.lookup, got, tt.want)
			}
		})
	}
}

func TestUpgradeToken(t *testing.T) {
	tests := []struct {
		name   string
		proto  exchange.Proto
		fields []field
		want   string
	}{
		{
			name:   "websocket over HTTP/1.1",
			proto:  exchange.HTTP11,
			fields: []field{{"Connection", "Upgrade"}, {"Upgrade", "websocket"}},
			want:   "websocket",
		},
		{
			name:   "upgrade among other Connection options, any case",
			proto:  exchange.HTTP11,
			fields: []field{{"connection", "keep-alive, upgrade"}, {"upgrade", "websocket"}},
			want:   "websocket",
		},
		{
			name:   "Upgrade without Connection: upgrade is not a request to switch",
			proto:  exchange.HTTP11,
			fields: []field{{"Upgrade", "websocket"}},
			want:   "",
		},
		{
			name:   "Connection: upgrade without Upgrade",
			proto:  exchange.HTTP11,
			fields: []field{{"Connection", "upgrade"}},
			want:   "",
		},
		{
			// Issue 13, finding 5: an h2c upgrade would let the client
			// speak HTTP/2 to the upstream past the route's match.
			name:   "h2c is never tunnelled",
			proto:  exchange.HTTP11,
			fields: []field{{"Connection", "Upgrade, HTTP2-Settings"}, {"Upgrade", "h2c"}, {"HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"}},
			want:   "",
		},
		{
			name:   "other tokens are not tunnelled",
			proto:  exchange.HTTP11,
			fields: []field{{"Connection", "Upgrade"}, {"Upgrade", "TLS/1.2"}},
			want:   "",
		},
		{
			name:   "websocket in any case, with a version, in a list",
			proto:  exchange.HTTP11,
			fields: []field{{"Connection", "Upgrade"}, {"Upgrade", "h2c, WebSocket/13"}},
			want:   "websocket",
		},
		{
			name:   "Connection lists something else",
			proto:  exchange.HTTP11,
			fields: []field{{"Connection", "close"}, {"Upgrade", "websocket"}},
			want:   "",
		},
		{
			name:   "HTTP/1.0 has no upgrade",
			proto:  exchange.HTTP10,
			fields: []field{{"Connection", "Upgrade"}, {"Upgrade", "websocket"}},
			want:   "",
		},
		{
			// RFC 9113 §8.6: HTTP/2 forbids the Upgrade mechanism.
			name:   "HTTP/2 has no upgrade",
			proto:  exchange.HTTP2,
			fields: []field{{"Connection", "Upgrade"}, {"Upgrade", "websocket"}},
			want:   "",
		},
		{
			name:   "HTTP/3 has no upgrade",
			proto:  exchange.HTTP3,
			fields: []field{{"Connection", "Upgrade"}, {"Upgrade", "websocket"}},
			want:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := clientExchange(t, tt.proto, "192.0.2.1:5000", "example.com", tt.fields...)
			if got := upgradeToken(x); got != tt.want {
				t.Errorf("upgradeToken = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOutgoingHeader(t *testing.T) {
	tests := []struct {
		name    string
		remote  string
		host    string
		scheme  string
		trusted bool
		upgrade string
		fields  []field
		want    http.Header
	}{
		{
			name:   "IPv4 client, nothing forwarded yet",
			remote: "192.0.2.10:50000", host: "example.com", scheme: "http",
			fields: []field{{"Accept", "application/json"}, {"user-agent", "curl/8"}},
			want: http.Header{
				"Accept":            {"application/json"},
				"User-Agent":        {"curl/8"},
				"X-Forwarded-For":   {"192.0.2.10"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {"for=192.0.2.10;host=example.com;proto=http"},
			},
		},
		{
			name:   "repeated fields keep their order",
			remote: "192.0.2.10:50000", host: "example.com", scheme: "http",
			fields: []field{{"Accept", "text/html"}, {"Cookie", "a=1"}, {"accept", "application/json"}},
			want: http.Header{
				"Accept":            {"text/html", "application/json"},
				"Cookie":            {"a=1"},
				"X-Forwarded-For":   {"192.0.2.10"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {"for=192.0.2.10;host=example.com;proto=http"},
			},
		},
		{
			name:   "untrusted client's forwarding headers are replaced",
			remote: "192.0.2.10:50000", host: "example.com", scheme: "https",
			fields: []field{
				{"X-Forwarded-For", "10.9.9.9"},
				{"X-Forwarded-Proto", "http"},
				{"X-Forwarded-Host", "evil.example"},
				{"Forwarded", "for=10.9.9.9"},
			},
			want: http.Header{
				"X-Forwarded-For":   {"192.0.2.10"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {"for=192.0.2.10;host=example.com;proto=https"},
			},
		},
		{
			name:   "trusted proxy's forwarding headers are kept and appended to",
			remote: "10.0.0.2:40000", host: "example.com", scheme: "http", trusted: true,
			fields: []field{
				{"X-Forwarded-For", "203.0.113.7"},
				{"X-Forwarded-Proto", "https"},
				{"X-Forwarded-Host", "public.example.com"},
				{"Forwarded", "for=203.0.113.7;proto=https"},
			},
			want: http.Header{
				"X-Forwarded-For":   {"203.0.113.7, 10.0.0.2"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"public.example.com"},
				"Forwarded":         {"for=203.0.113.7;proto=https, for=10.0.0.2;host=example.com;proto=http"},
			},
		},
		{
			name:   "trusted proxy's repeated X-Forwarded-For fields are joined in order",
			remote: "10.0.0.2:40000", host: "example.com", scheme: "http", trusted: true,
			fields: []field{
				{"X-Forwarded-For", "203.0.113.7, 198.51.100.1"},
				{"x-forwarded-for", "10.0.0.1"},
			},
			want: http.Header{
				"X-Forwarded-For":   {"203.0.113.7, 198.51.100.1, 10.0.0.1, 10.0.0.2"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {"for=10.0.0.2;host=example.com;proto=http"},
			},
		},
		{
			name:   "trusted proxy without forwarding headers",
			remote: "10.0.0.2:40000", host: "example.com", scheme: "http", trusted: true,
			want: http.Header{
				"X-Forwarded-For":   {"10.0.0.2"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {"for=10.0.0.2;host=example.com;proto=http"},
			},
		},
		{
			name:   "IPv6 client is bracketed and quoted in Forwarded",
			remote: "[::1]:50000", host: "example.com", scheme: "http",
			want: http.Header{
				"X-Forwarded-For":   {"::1"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {`for="[::1]";host=example.com;proto=http`},
			},
		},
		{
			name:   "IPv4-mapped IPv6 client is reported as IPv4",
			remote: "[::ffff:192.0.2.10]:50000", host: "example.com", scheme: "http",
			want: http.Header{
				"X-Forwarded-For":   {"192.0.2.10"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {"for=192.0.2.10;host=example.com;proto=http"},
			},
		},
		{
			name:   "host with a port is quoted in Forwarded",
			remote: "192.0.2.10:50000", host: "example.com:8443", scheme: "https",
			want: http.Header{
				"X-Forwarded-For":   {"192.0.2.10"},
				"X-Forwarded-Proto": {"https"},
				"X-Forwarded-Host":  {"example.com:8443"},
				"Forwarded":         {`for=192.0.2.10;host="example.com:8443";proto=https`},
			},
		},
		{
			name:   "hop-by-hop fields and the ones Connection lists are dropped",
			remote: "192.0.2.10:50000", host: "example.com", scheme: "http",
			fields: []field{
				{"Connection", "keep-alive, X-Hop"},
				{"connection", "x-other-hop"},
				{"Keep-Alive", "timeout=5"},
				{"Proxy-Connection", "keep-alive"},
				{"Proxy-Authorization", "Basic Zm9vOmJhcg=="},
				{"Transfer-Encoding", "chunked"},
				{"Trailer", "X-Checksum"},
				{"Upgrade", "websocket"},
				{"X-Hop", "1"},
				{"X-Other-Hop", "2"},
				{"Authorization", "Bearer end-to-end"},
			},
			want: http.Header{
				"Authorization":     {"Bearer end-to-end"},
				"X-Forwarded-For":   {"192.0.2.10"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {"for=192.0.2.10;host=example.com;proto=http"},
			},
		},
		{
			name:   "TE: trailers is passed on, other codings are not",
			remote: "192.0.2.10:50000", host: "example.com", scheme: "http",
			fields: []field{{"TE", "gzip, Trailers"}},
			want: http.Header{
				"Te":                {"trailers"},
				"X-Forwarded-For":   {"192.0.2.10"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {"for=192.0.2.10;host=example.com;proto=http"},
			},
		},
		{
			name:   "TE without trailers is dropped",
			remote: "192.0.2.10:50000", host: "example.com", scheme: "http",
			fields: []field{{"te", "gzip"}},
			want: http.Header{
				"X-Forwarded-For":   {"192.0.2.10"},
				"X-Forwarded-Proto": {"http"},
				"X-Forwarded-Host":  {"example.com"},
				"Forwarded":         {"for=192.0.2.10;host=example.com;proto=http"},
			},
		},
		{
			name:   "an upgrade keeps Connection and Upgrade, and only those",
			remote: "192.0.2.10:50000", host: "example.com", scheme: "http", upgrade: "websocket",
			fields: []field{
				{"Connection", "Upgrade, X-Hop"},
				{"Upgrade", "websocket"},
				{"X-Hop", "1"},
				{"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
				{"Sec-WebSocket-Version", "13"},
			},
			want: http.Header{
				"Connection":            {"Upgrade"},
				"Upgrade":               {"websocket"},
				"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
				"Sec-Websocket-Version": {"13"},
				"X-Forwarded-For":       {"192.0.2.10"},
				"X-Forwarded-Proto":     {"http"},
				"X-Forwarded-Host":      {"example.com"},
				"Forwarded":             {"for=192.0.2.10;host=example.com;proto=http"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := clientExchange(t, exchange.HTTP11, tt.remote, tt.host, tt.fields...)
			x.Req.Scheme = tt.scheme
			var h exchange.Header
			outgoingHeader(x, &h, tt.trusted, tt.upgrade)
			got := stdHeader(&h)
			if !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("outgoing header:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestOutgoingHeaderLeavesTheClientHeaderAlone(t *testing.T) {
	// A retry builds the outgoing header again from the same exchange.
	x := clientExchange(t, exchange.HTTP11, "192.0.2.10:1", "example.com",
		field{"Connection", "X-Hop"}, field{"X-Hop", "1"}, field{"X-Forwarded-For", "10.0.0.1"})
	before := x.Req.Header.Len()
	var h exchange.Header
	outgoingHeader(x, &h, false, "")
	if x.Req.Header.Len() != before {
		t.Errorf("client header has %d fields after building the outgoing one, want %d", x.Req.Header.Len(), before)
	}
}

func TestForwardedElement(t *testing.T) {
	tests := []struct {
		name   string
		client netip.Addr
		proto  string
		host   string
		want   string
	}{
		{name: "IPv4", client: netip.MustParseAddr("192.0.2.1"), proto: "http", host: "example.com", want: "for=192.0.2.1;host=example.com;proto=http"},
		{name: "IPv6 is bracketed and quoted", client: netip.MustParseAddr("2001:db8::1"), proto: "https", host: "example.com", want: `for="[2001:db8::1]";host=example.com;proto=https`},
		{name: "unknown client", client: netip.Addr{}, proto: "http", host: "example.com", want: "for=unknown;host=example.com;proto=http"},
		{name: "no host leaves the parameter out", client: netip.MustParseAddr("192.0.2.1"), proto: "http", host: "", want: "for=192.0.2.1;proto=http"},
		{name: "host with port is quoted", client: netip.MustParseAddr("192.0.2.1"), proto: "http", host: "example.com:8080", want: `for=192.0.2.1;host="example.com:8080";proto=http`},
		{name: "IPv6 literal host is quoted", client: netip.MustParseAddr("192.0.2.1"), proto: "http", host: "[2001:db8::2]:443", want: `for=192.0.2.1;host="[2001:db8::2]:443";proto=http`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := forwardedElement(tt.client, tt.proto, tt.host); got != tt.want {
				t.Errorf("forwardedElement = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestQuoteIfNeeded(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "token stays bare", in: "example.com", want: "example.com"},
		{name: "every tchar stays bare", in: "a1!#$%&'*+-.^_`|~Z", want: "a1!#$%&'*+-.^_`|~Z"},
		{name: "colon needs quotes", in: "example.com:8080", want: `"example.com:8080"`},
		{name: "space needs quotes", in: "a b", want: `"a b"`},
		{name: "brackets need quotes", in: "[::1]", want: `"[::1]"`},
		{name: "a quote is escaped", in: `a"b:`, want: `"a\"b:"`},
		{name: "a backslash is escaped", in: `a\b`, want: `"a\\b"`},
		{name: "backslash then quote", in: `\"`, want: `"\\\""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quoteIfNeeded(tt.in); got != tt.want {
				t.Errorf("quoteIfNeeded(%q) = %s, want %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestCopyResponseHeader(t *testing.T) {
	tests := []struct {
		name string
		src  http.Header
		want map[string][]string // by canonical name, values in order
	}{
		{
			name: "end-to-end fields are copied with every value in order",
			src: http.Header{
				"Content-Type":  {"application/json"},
				"Set-Cookie":    {"a=1", "b=2"},
				"Cache-Control": {"no-cache"},
			},
			want: map[string][]string{
				"Content-Type":  {"application/json"},
				"Set-Cookie":    {"a=1", "b=2"},
				"Cache-Control": {"no-cache"},
			},
		},
		{
			name: "hop-by-hop fields are dropped",
			src: http.Header{
				"Connection":         {"keep-alive"},
				"Keep-Alive":         {"timeout=5"},
				"Transfer-Encoding":  {"chunked"},
				"Trailer":            {"X-Checksum"},
				"Upgrade":            {"h2c"},
				"Proxy-Authenticate": {"Basic"},
				"Content-Type":       {"text/plain"},
			},
			want: map[string][]string{"Content-Type": {"text/plain"}},
		},
		{
			name: "fields listed in Connection are dropped",
			src: http.Header{
				"Connection":    {"close, X-Backend-Hop", "x-other"},
				"X-Backend-Hop": {"1"},
				"X-Other":       {"2"},
				"X-Kept":        {"3"},
			},
			want: map[string][]string{"X-Kept": {"3"}},
		},
		{
			name: "empty source",
			src:  http.Header{},
			want: map[string][]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst exchange.Header
			copyResponseHeader(&dst, tt.src)
			got := map[string][]string{}
			dst.Range(func(name, value string) bool {
				got[name] = append(got[name], value)
				return true
			})
			if !maps.EqualFunc(got, tt.want, slices.Equal) {
				t.Errorf("client response header:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestCopyResponseHeaderAppendsToExisting(t *testing.T) {
	// The request id set earlier in the pipeline stays; the upstream's own
	// fields come after it.
	var dst exchange.Header
	dst.Add("X-Request-Id", "abc")
	copyResponseHeader(&dst, http.Header{"X-Upstream": {"1"}})
	if v, _ := dst.Get("X-Request-Id"); v != "abc" || dst.Len() != 2 {
		t.Errorf("X-Request-Id = %q, %d fields; want \"abc\" and 2 fields", v, dst.Len())
	}
}

// forwardedElement renders one RFC 7239 forwarded-element.
func forwardedElement(client netip.Addr, proto, host string) string {
	return string(appendForwardedElement(nil, client, proto, host))
}

// quoteIfNeeded quotes a Forwarded value that is not a token.
func quoteIfNeeded(v string) string { return string(appendQuotedIfNeeded(nil, v)) }

// copyResponseHeader runs copyResponseFields on an upstream header written
// as an http.Header.
func copyResponseHeader(dst *exchange.Header, src http.Header) {
	var h exchange.Header
	for name, values := range src {
		for _, v := range values {
			h.Add(name, v)
		}
	}
	copyResponseFields(dst, &h)
}
