package accesslog

import (
	"encoding/hex"
	"net/netip"
	"strconv"
	"time"
	"unicode/utf8"
)

// Lines are encoded by hand, appending with strconv into a pooled buffer:
// encoding/json (and fmt) would box the Record's fields in interfaces and
// allocate on every request, and the access log is on the path of every
// request. The two formats share one field sequence (see appendRecord), so
// they cannot drift apart.

// format is the line format.
type format uint8

const (
	formatJSON format = iota
	formatLogfmt
)

// pathMode is how the request path is written (access_log.path).
type pathMode uint8

const (
	pathFull     pathMode = iota // path + "?" + query
	pathNoQuery                  // path only
	pathRedacted                 // the route pattern; "" when no route matched
)

// encoder appends one line's fields in a given format.
type encoder struct {
	b     []byte
	f     format
	first bool
}

// appendRecord appends r as one line, ending in "\n". The keys and their
// order are part of the log's interface: tools parse it.
func appendRecord(b []byte, f format, pm pathMode, r *Record) []byte {
	e := encoder{b: b, f: f, first: true}
	if f == formatJSON {
		e.b = append(e.b, '{')
	}

	e.key("time")
	e.quoted()
	e.b = appendTime(e.b, r.Time)
	e.quoted()

	e.key("trace_id")
	e.quoted()
	e.b = hex.AppendEncode(e.b, r.TraceID[:])
	e.quoted()

	e.key("span_id")
	e.quoted()
	e.b = hex.AppendEncode(e.b, r.SpanID[:])
	e.quoted()

	e.str("request_id", r.RequestID)
	e.str("protocol", r.Proto)
	if r.TLSVersion != 0 {
		e.key("tls")
		e.quoted()
		e.b = appendTLSVersion(e.b, r.TLSVersion)
		e.quoted()
	}
	e.str("method", r.Method)
	e.str("host", r.Host)
	e.str("route", r.Route)
	e.str("route_pattern", r.Pattern)
	switch {
	case pm == pathRedacted:
		e.str("path", r.Pattern)
	case pm == pathFull && r.Query != "":
		e.str3("path", r.Path, "?", r.Query)
	default:
		e.str("path", r.Path)
	}

	e.key("status")
	e.b = strconv.AppendInt(e.b, int64(r.Status), 10)
	e.key("duration_s")
	e.b = appendSeconds(e.b, r.Duration)
	e.key("upstream_wait_s")
	e.b = appendSeconds(e.b, r.UpstreamWait)
	e.str("upstream", r.Endpoint)
	e.key("attempts")
	e.b = strconv.AppendInt(e.b, int64(r.Attempts), 10)
	if r.Arm != "" {
		e.str("arm", r.Arm)
	}
	e.key("bytes_in")
	e.b = strconv.AppendInt(e.b, r.BytesIn, 10)
	e.key("bytes_out")
	e.b = strconv.AppendInt(e.b, r.BytesOut, 10)

	if r.Client.IsValid() {
		e.key("client")
		e.quoted()
		e.b = appendAddrPort(e.b, r.Client)
		e.quoted()
	} else {
		e.str("client", "")
	}

	if r.GRPCService != "" {
		e.str("grpc_service", r.GRPCService)
		e.str("grpc_method", r.GRPCMethod)
	}
	if r.GRPCStatus != "" {
		e.str("grpc_status", r.GRPCStatus)
	}
	if r.ErrorKind != "" {
		e.str("error_kind", r.ErrorKind)
	}
	if r.Error != "" {
		e.str("error", r.Error)
	}

	if f == formatJSON {
		e.b = append(e.b, '}')
	}
	return append(e.b, '\n')
}

// key starts a field. Keys are fixed identifiers that need no escaping.
func (e *encoder) key(k string) {
	if e.f == formatJSON {
		if !e.first {
			e.b = append(e.b, ',')
		}
		e.b = append(e.b, '"')
		e.b = append(e.b, k...)
		e.b = append(e.b, '"', ':')
	} else {
		if !e.first {
			e.b = append(e.b, ' ')
		}
		e.b = append(e.b, k...)
		e.b = append(e.b, '=')
	}
	e.first = false
}

// quoted writes a JSON string's quote around values made only of safe
// characters (hex, digits, dates, addresses), which logfmt leaves bare.
func (e *encoder) quoted() {
	if e.f == formatJSON {
		e.b = append(e.b, '"')
	}
}

// str writes a string field.
func (e *encoder) str(k, v string) { e.str3(k, v, "", "") }

// str3 writes a string field whose value is a+b+c, without building it.
func (e *encoder) str3(k, a, b, c string) {
	e.key(k)
	q := e.f == formatJSON || needsQuote(a) || needsQuote(b) || needsQuote(c) ||
		len(a)+len(b)+len(c) == 0
	if q {
		e.b = append(e.b, '"')
	}
	e.b = appendEscaped(e.b, a)
	e.b = appendEscaped(e.b, b)
	e.b = appendEscaped(e.b, c)
	if q {
		e.b = append(e.b, '"')
	}
}

// plain marks the bytes copied as they are into a quoted value: space and
// printable ASCII other than '"' and '\'. bare marks those a logfmt value
// may hold unquoted: plain bytes other than space and '='. Tables rather
// than comparisons, because these loops run over every byte of every
// string of every line.
var plain, bare = func() (p, b [256]bool) {
	for c := '!'; c <= '~'; c++ {
		p[c] = c != '"' && c != '\\'
		b[c] = p[c] && c != '='
	}
	p[' '] = true
	return p, b
}()

// needsQuote reports whether a logfmt value must be quoted: it holds a
// space, '"', '=', '\', a control character, or bytes that are not UTF-8
// (written as U+FFFD, which only a quoted value can carry unambiguously).
// An empty value is quoted too (key=""), by the caller.
func needsQuote(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if bare[c] {
			continue
		}
		if c < utf8.RuneSelf {
			return true
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			return true
		}
		i += size - 1
	}
	return false
}

const hexDigits = "0123456789abcdef"

// appendEscaped appends s with '"' and '\' escaped, control characters
// (C0 and DEL) written as \n, \r, \t or \u00XX, invalid UTF-8 replaced by
// \ufffd, and U+2028/U+2029 escaped as encoding/json does: no byte that a
// client sent (a Host, a path) can end a line or a string early. The
// escapes are valid in both JSON strings and quoted logfmt values; a
// logfmt value left bare (see needsQuote) has none of these characters.
func appendEscaped(b []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r != utf8.RuneError && r != '\u2028' && r != '\u2029' || size > 1 && r == utf8.RuneError {
				i += size
				continue
			}
			b = append(b, s[start:i]...)
			switch r {
			case '\u2028':
				b = append(b, `\u2028`...)
			case '\u2029':
				b = append(b, `\u2029`...)
			default:
				b = append(b, `\ufffd`...)
			}
			i += size
			start = i
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"':
			b = append(b, '\\', '"')
		case '\\':
			b = append(b, '\\', '\\')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	return append(b, s[start:]...)
}

// appendTime writes t in UTC as RFC 3339 with all nine fraction digits
// ("2026-03-01T12:00:00.123456789Z"). A fixed width keeps lines sortable as
// text, which the trailing-zero trimming of time.RFC3339Nano does not.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	if y < 0 || y > 9999 {
		// Outside RFC 3339's range; still a readable, quoted value.
		b = strconv.AppendInt(b, int64(y), 10)
	} else {
		b = appendPadded(b, y, 4)
	}
	b = append(b, '-')
	b = appendPadded(b, int(mo), 2)
	b = append(b, '-')
	b = appendPadded(b, d, 2)
	b = append(b, 'T')
	b = appendPadded(b, h, 2)
	b = append(b, ':')
	b = appendPadded(b, mi, 2)
	b = append(b, ':')
	b = appendPadded(b, s, 2)
	b = append(b, '.')
	b = appendPadded(b, t.Nanosecond(), 9)
	return append(b, 'Z')
}

// appendPadded writes a non-negative v in exactly width digits.
func appendPadded(b []byte, v, width int) []byte {
	var buf [9]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, buf[:width]...)
}

// appendSeconds writes d as seconds with microsecond precision
// ("0.012345"), from integers so that no float rounding shows.
func appendSeconds(b []byte, d time.Duration) []byte {
	us := d.Microseconds()
	if us < 0 {
		b = append(b, '-')
		us = -us
	}
	b = strconv.AppendInt(b, us/1e6, 10)
	b = append(b, '.')
	return appendPadded(b, int(us%1e6), 6)
}

// appendTLSVersion writes "1.2" for tls.VersionTLS12 and so on; an unknown
// version as its hex code ("0x7f1c").
func appendTLSVersion(b []byte, v uint16) []byte {
	switch v {
	case 0x0301:
		return append(b, "1.0"...)
	case 0x0302:
		return append(b, "1.1"...)
	case 0x0303:
		return append(b, "1.2"...)
	case 0x0304:
		return append(b, "1.3"...)
	}
	return append(b, '0', 'x', hexDigits[v>>12], hexDigits[v>>8&0xf], hexDigits[v>>4&0xf], hexDigits[v&0xf])
}

// appendAddrPort writes a valid ap as ip:port ("[2001:db8::1]:443" for
// IPv6, an IPv4-mapped address as IPv4). Zones are dropped: they name a
// local interface, and they are the one part that is not digits and
// punctuation, so they would need escaping.
func appendAddrPort(b []byte, ap netip.AddrPort) []byte {
	return netip.AddrPortFrom(ap.Addr().Unmap().WithZone(""), ap.Port()).AppendTo(b)
}
