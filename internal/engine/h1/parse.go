package h1

import (
	"bytes"
	"unsafe"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// ProtocolError is a request the parser refuses. Status is the answer RFC
// 9112 (or the listener's limits) call for; the connection is always closed
// after it, because once framing is in doubt nothing that follows on the
// connection can be trusted (RFC 9112 §6.3, §11.2).
type ProtocolError struct {
	Status int
	Reason string
}

func (e *ProtocolError) Error() string { return "h1: " + e.Reason }

// Is makes a body framing error match exchange.ErrBadRequestBody, so that
// the proxy tells a client's malformed body from an upstream failure.
func (e *ProtocolError) Is(target error) bool {
	return target == exchange.ErrBadRequestBody && isBodyError(e)
}

// The parser's refusals. Preallocated: a hostile client must not be able to
// make refusals cost allocations.
var (
	errRequestLine      = &ProtocolError{400, "malformed request line"}
	errMethod           = &ProtocolError{400, "invalid method"}
	errTarget           = &ProtocolError{400, "invalid request target"}
	errVersion          = &ProtocolError{400, "malformed HTTP version"}
	errVersionSupported = &ProtocolError{505, "HTTP version not supported"}
	errBareCR           = &ProtocolError{400, "bare CR"}
	errFieldName        = &ProtocolError{400, "invalid header field name"}
	errFieldValue       = &ProtocolError{400, "invalid header field value"}
	errObsFold          = &ProtocolError{400, "obsolete line folding"}
	errNoHost           = &ProtocolError{400, "missing Host header"}
	errMultipleHost     = &ProtocolError{400, "multiple Host headers"}
	errHost             = &ProtocolError{400, "invalid Host header"}
	errContentLength    = &ProtocolError{400, "invalid Content-Length"}
	errCLAndTE          = &ProtocolError{400, "both Content-Length and Transfer-Encoding"}
	errTEHTTP10         = &ProtocolError{400, "Transfer-Encoding in an HTTP/1.0 request"}
	errTENotChunked     = &ProtocolError{400, "Transfer-Encoding does not end in chunked"}
	errTEUnknown        = &ProtocolError{501, "unsupported transfer coding"}
	errExpectation      = &ProtocolError{417, "unsupported expectation"}
	errTooManyFields    = &ProtocolError{431, "too many header fields"}
	errHeaderTooLarge   = &ProtocolError{431, "request header too large"}
	errURITooLong       = &ProtocolError{414, "request line too long"}
	errHeadTimeout      = &ProtocolError{408, "request header timeout"}
)

// head is what the engine needs from a request's header section beyond the
// exchange.Request it fills: how the body is framed and what the connection
// does afterwards.
type head struct {
	// contentLength is the body length, -1 when absent (no body unless
	// chunked).
	contentLength int64
	// chunked is set for Transfer-Encoding: chunked.
	chunked bool
	// keepAlive is the client's wish to reuse the connection: HTTP/1.1
	// unless "Connection: close"; HTTP/1.0 only with "Connection:
	// keep-alive" (RFC 9112 §9.3).
	keepAlive bool
	// expectContinue is "Expect: 100-continue" on an HTTP/1.1 request.
	expectContinue bool
	// connect is a CONNECT request (authority-form target).
	connect bool
	// h2c: an HTTP/1.1 request asks to switch to HTTP/2 (RFC 7540 §3.2):
	// "Upgrade: h2c", "Connection: Upgrade" and one HTTP2-Settings field,
	// whose value (aliasing the header section) is h2Settings.
	h2c        bool
	h2Settings []byte
}

// Line terminators (RFC 9112 §2.2). The request line and field lines end in
// CRLF; a recipient MAY accept a lone LF, and penstock does, like NGINX and
// Go's net/http: clients typing requests by hand send them, and a lone LF is
// read the same way by every parser penstock forwards to, because penstock
// never forwards the client's bytes: it re-serialises the request. A bare CR
// (not followed by LF) is rejected everywhere (RFC 9112 §2.2: "MUST either
// consider it invalid or replace it with SP"). Chunked framing inside the
// body is stricter, see chunked.go.

// headerEnd returns the length of the header section at the start of b (the
// request line, the field lines and the empty line ending them), or -1 if b
// does not hold all of it yet. from is where a previous call stopped looking;
// the search resumes shortly before it.
func headerEnd(b []byte, from int) int {
	// Empty lines before the request line are skipped (RFC 9112 §2.2);
	// they are not the end of the section.
	start := 0
	for start < len(b) && (b[start] == '\n' || b[start] == '\r') {
		start++
	}
	i := max(from-3, start)
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		// An empty line is "\n" or "\r\n" right after a line's '\n'.
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// earlyHeadError looks for an error in a header section that is not complete
// yet (b[:end] are the bytes received) that no further bytes can repair, so
// that it is answered at once instead of when the header timeout ends the
// wait (issue 13, finding 7): a bare CR, which the head's end is never
// found past when every line ends in one, and a complete request line
// without an HTTP/1.x version (HTTP/0.9's "GET /x", which never ends in an
// empty line). from is where the previous call stopped; *lineOK records
// that the request line was found sound.
func earlyHeadError(b []byte, from int, lineOK *bool) *ProtocolError {
	for i := max(from-1, 0); i+1 < len(b); i++ {
		if b[i] == '\r' && b[i+1] != '\n' {
			return errBareCR
		}
	}
	if *lineOK {
		return nil
	}
	start := 0
	for start < len(b) && (b[start] == '\n' || b[start] == '\r') {
		start++
	}
	j := bytes.IndexByte(b[start:], '\n')
	if j < 0 {
		return nil
	}
	line := b[start : start+j]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	sp := bytes.LastIndexByte(line, ' ')
	if sp < 0 || !bytes.HasPrefix(line[sp+1:], []byte("HTTP/")) {
		return errRequestLine
	}
	if v := line[sp+1:]; len(v) == 8 && isDigit(v[5]) && v[5] != '1' {
		return errVersionSupported
	}
	*lineOK = true
	return nil
}

// parseHead parses a complete header section (as delimited by headerEnd)
// into req and returns the framing facts. Strings in req alias b; header
// fields are copied into req.Header. maxFields bounds the field count.
func parseHead(b []byte, req *exchange.Request, maxFields int) (head, *ProtocolError) {
	h := head{contentLength: -1}
	for len(b) > 0 && (b[0] == '\n' || b[0] == '\r') {
		if b[0] == '\r' && (len(b) < 2 || b[1] != '\n') {
			return h, errBareCR
		}
		b = b[1:]
	}
	line, rest, perr := nextLine(b)
	if perr != nil {
		return h, perr
	}
	if perr := parseRequestLine(line, req); perr != nil {
		return h, perr
	}
	http11 := req.Proto == exchange.HTTP11

	var (
		hosts          int
		host           []byte
		sawCL, sawT    bool
		connClose      bool
		connKeep       bool
		connUpgrade    bool
		upgradeH2C     bool
		settingsFields int
		teChunked      bool // the codings seen so far end in chunked
		teUnknown      bool // a coding other than chunked was seen
		teBad          bool // malformed list, or chunked not last / twice
		fields         int
		contentLen     int64 = -1
	)
	for {
		line, rest, perr = nextLine(rest)
		if perr != nil {
			return h, perr
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			// obs-fold (RFC 9112 §5.2): a server MUST reject it (or
			// replace it with SP); rejecting leaves no room for
			// disagreement with the upstream.
			return h, errObsFold
		}
		fields++
		if fields > maxFields {
			return h, errTooManyFields
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return h, errFieldName
		}
		name := line[:colon]
		for _, c := range name {
			// Whitespace before the colon (RFC 9112 §5.1: MUST reject
			// with 400) fails here too: SP and HTAB are not tchars.
			if !isTchar(c) {
				return h, errFieldName
			}
		}
		value := trimOWS(line[colon+1:])
		for _, c := range value {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return h, errFieldValue
			}
		}
		switch {
		case equalFoldBytes(name, "host"):
			// Req.Host carries it; like net/http, the header list
			// does not, so nothing downstream can send it twice.
			hosts++
			host = value
			continue
		case equalFoldBytes(name, "content-length"):
			n, ok := parseContentLength(value)
			if !ok || (sawCL && n != contentLen) {
				return h, errContentLength
			}
			sawCL, contentLen = true, n
		case equalFoldBytes(name, "transfer-encoding"):
			// Framing of this hop only: decoded here, never passed on.
			sawT = true
			parseTE(value, &teChunked, &teUnknown, &teBad)
			continue
		case equalFoldBytes(name, "connection"):
			forEachToken(value, func(tok []byte) {
				switch {
				case equalFoldBytes(tok, "close"):
					connClose = true
				case equalFoldBytes(tok, "keep-alive"):
					connKeep = true
				case equalFoldBytes(tok, "upgrade"):
					connUpgrade = true
				}
			})
		case equalFoldBytes(name, "upgrade"):
			forEachToken(value, func(tok []byte) {
				if equalFoldBytes(tok, "h2c") {
					upgradeH2C = true
				}
			})
		case equalFoldBytes(name, "http2-settings"):
			settingsFields++
			h.h2Settings = value
		case equalFoldBytes(name, "expect"):
			if !equalFoldBytes(value, "100-continue") {
				return h, errExpectation
			}
			// An HTTP/1.0 client cannot understand 100 (RFC 9110
			// §10.1.1): the expectation is ignored.
			h.expectContinue = http11
		}
		req.Header.AddBytes(name, value)
	}

	// RFC 9112 §3.2: 400 for an HTTP/1.1 request without Host, and for any
	// request with more than one Host field line or an invalid value.
	if hosts > 1 {
		return h, errMultipleHost
	}
	if hosts == 0 && http11 {
		return h, errNoHost
	}
	if hosts == 1 && !validHost(host) {
		return h, errHost
	}
	if req.Host == "" {
		// Not taken from an absolute-form target (RFC 9112 §3.2.2).
		req.Host = bytesString(host)
	}

	// Message body framing, RFC 9112 §6.
	if sawT {
		switch {
		case !http11:
			// §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
			return h, errTEHTTP10
		case sawCL:
			// §6.1, §11.2: both present is the classic smuggling
			// vector; a server MAY reject, and penstock does.
			return h, errCLAndTE
		case teBad || !teChunked:
			// §6.3 (4): chunked must be the final coding, else 400.
			return h, errTENotChunked
		case teUnknown:
			// §6.1: a coding the server does not understand: 501.
			return h, errTEUnknown
		}
		h.chunked = true
	}
	h.contentLength = contentLen
	if h.chunked {
		req.ContentLength = -1
	} else if contentLen >= 0 {
		req.ContentLength = contentLen
	}
	if http11 {
		h.keepAlive = !connClose
	} else {
		h.keepAlive = connKeep && !connClose
	}
	h.connect = req.Method == "CONNECT"
	h.h2c = http11 && upgradeH2C && connUpgrade && settingsFields == 1
	return h, nil
}

// nextLine splits b at the first line terminator.
func nextLine(b []byte) (line, rest []byte, perr *ProtocolError) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		// headerEnd guarantees a terminator; be defensive anyway.
		return nil, nil, errRequestLine
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, errBareCR
	}
	return line, rest, nil
}

// parseRequestLine parses "method SP request-target SP HTTP-version" (RFC
// 9112 §3). Exactly one SP separates the parts: the lenient whitespace
// parsing §3 permits is where request-line smuggling starts.
func parseRequestLine(line []byte, req *exchange.Request) *ProtocolError {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 {
		return errRequestLine
	}
	method := line[:sp1]
	for _, c := range method {
		if !isTchar(c) {
			return errMethod
		}
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return errRequestLine
	}
	target, version := rest[:sp2], rest[sp2+1:]
	switch {
	case len(version) != 8 || string(version[:5]) != "HTTP/" || version[6] != '.' ||
		!isDigit(version[5]) || !isDigit(version[7]):
		return errVersion
	case version[5] != '1':
		return errVersionSupported
	case version[7] == '0':
		req.Proto = exchange.HTTP10
	default:
		// HTTP/1.x with x > 1 is answered as 1.1, the highest minor
		// version penstock speaks (RFC 9110 §6.2).
		req.Proto = exchange.HTTP11
	}
	req.Method = internMethod(method)
	for _, c := range target {
		// No whitespace, CTLs or DEL; a fragment never belongs in a
		// request target (RFC 9112 §3.2). obs-text is passed on as
		// net/http does.
		if c <= ' ' || c == 0x7f || c == '#' {
			return errTarget
		}
	}
	switch {
	case target[0] == '/':
		// origin-form
		splitPathQuery(target, req)
	case target[0] == '*' && len(target) == 1:
		// asterisk-form, OPTIONS only (RFC 9112 §3.2.4).
		if req.Method != "OPTIONS" {
			return errTarget
		}
		req.Path = "*"
	case req.Method == "CONNECT":
		// authority-form (RFC 9112 §3.2.3).
		if !validHost(target) {
			return errTarget
		}
		req.Host = bytesString(target)
	default:
		// absolute-form (RFC 9112 §3.2.2): the target's authority is
		// the Host, whatever the Host header says.
		n := schemePrefix(target)
		if n == 0 {
			return errTarget
		}
		auth := target[n:]
		end := len(auth)
		if i := bytes.IndexAny(auth, "/?"); i >= 0 {
			end = i
		}
		if end == 0 || bytes.IndexByte(auth[:end], '@') >= 0 || !validHost(auth[:end]) {
			// Empty authority, or userinfo, which has no place in a
			// request to a gateway (RFC 9110 §4.2.4).
			return errTarget
		}
		req.Host = bytesString(auth[:end])
		pq := auth[end:]
		if len(pq) == 0 || pq[0] == '?' {
			req.Path = "/"
			if len(pq) > 0 {
				req.Query = bytesString(pq[1:])
			}
		} else {
			splitPathQuery(pq, req)
		}
	}
	return nil
}

func splitPathQuery(t []byte, req *exchange.Request) {
	if i := bytes.IndexByte(t, '?'); i >= 0 {
		req.Path, req.Query = bytesString(t[:i]), bytesString(t[i+1:])
	} else {
		req.Path = bytesString(t)
	}
}

// schemePrefix returns the length of a leading "http://" or "https://"
// (any case), or 0.
func schemePrefix(t []byte) int {
	switch {
	case len(t) >= 7 && equalFoldBytes(t[:7], "http://"):
		return 7
	case len(t) >= 8 && equalFoldBytes(t[:8], "https://"):
		return 8
	}
	return 0
}

// parseContentLength accepts 1*DIGIT, or a list of identical values ("42,
// 42"), which RFC 9110 §8.6 allows a recipient to collapse. Anything else
// (signs, spaces inside, differing values, more than 18 digits) is invalid.
func parseContentLength(v []byte) (int64, bool) {
	n := int64(-1)
	ok := true
	forEachElement(v, func(e []byte) {
		if !ok {
			return
		}
		if len(e) == 0 || len(e) > 18 {
			ok = false
			return
		}
		var m int64
		for _, c := range e {
			if !isDigit(c) {
				ok = false
				return
			}
			m = m*10 + int64(c-'0')
		}
		if n >= 0 && m != n {
			ok = false
			return
		}
		n = m
	})
	return n, ok && n >= 0
}

// parseTE folds one Transfer-Encoding field value into the running facts:
// whether the codings so far end in chunked, whether any other coding was
// named, and whether the list is malformed (empty elements only, parameters
// on chunked, chunked applied twice or not last; RFC 9112 §6.1, §7).
func parseTE(v []byte, chunked, unknown, bad *bool) {
	any := false
	forEachElement(v, func(e []byte) {
		if len(e) == 0 {
			return
		}
		any = true
		if *chunked {
			// Something follows chunked: chunked is not final, or is
			// applied twice.
			*bad = true
		}
		if equalFoldBytes(e, "chunked") {
			*chunked = true
			return
		}
		*chunked = false
		for _, c := range e {
			if !isTchar(c) {
				// Parameters ("gzip;q=1"), quotes, stray
				// whitespace: not a coding penstock understands, and
				// too odd to guess at.
				*bad = true
				return
			}
		}
		*unknown = true
	})
	if !any {
		*bad = true
	}
}

// forEachElement calls fn for each comma-separated element of v with
// surrounding OWS removed (RFC 9110 §5.6.1); empty elements included.
func forEachElement(v []byte, fn func([]byte)) {
	for {
		i := bytes.IndexByte(v, ',')
		if i < 0 {
			fn(trimOWS(v))
			return
		}
		fn(trimOWS(v[:i]))
		v = v[i+1:]
	}
}

// forEachToken is forEachElement without the empty elements.
func forEachToken(v []byte, fn func([]byte)) {
	forEachElement(v, func(e []byte) {
		if len(e) > 0 {
			fn(e)
		}
	})
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validHost reports whether b is a plausible uri-host [":" port] (RFC 3986
// §3.2.2): reg-name, IPv4 or IP-literal characters only. Empty is allowed
// (RFC 9112 §3.2: a request without authority sends an empty Host).
func validHost(b []byte) bool {
	for _, c := range b {
		if !hostChar[c] {
			return false
		}
	}
	return true
}

var hostChar = alnumAnd("-._~!$&'()*+,;=:[]%")

// tchar (RFC 9110 §5.6.2).
var tchar = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd is a byte table holding ASCII letters and digits and extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

func isTchar(c byte) bool { return tchar[c] }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// equalFoldBytes compares b with the lower-case ASCII string s, ignoring
// ASCII case in b.
func equalFoldBytes(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// internMethod returns the common methods as constants, so they outlive the
// read buffer, and any other method as a string aliasing it.
func internMethod(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "HEAD":
		return "HEAD"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	}
	return bytesString(b)
}

// stringBytes views s as bytes without copying; they must not be modified.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}

// bytesString views b as a string without copying. The string is valid as
// long as b's memory is not reused: for request fields, until the handler
// returns (the exchange contract).
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}
