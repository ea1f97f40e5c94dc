package upstream

import (
	"bufio"
	"errors"
	"io"
	"net"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// Limits on a response head from an upstream. A head that exceeds them is a
// protocol error (502), like any other malformed response.
const (
	// maxResponseHeadBytes bounds the status line plus header fields, and
	// separately the trailer section of a chunked body.
	maxResponseHeadBytes = 64 << 10
	// maxResponseFields bounds the number of header (or trailer) fields.
	maxResponseFields = 512
	// maxChunkLineBytes bounds a chunk-size line with its extensions.
	maxChunkLineBytes = 4 << 10
)

// ProtocolError is a response that does not follow RFC 9112. The connection
// it came on is closed: after a framing error nothing that follows on it can
// be trusted (response smuggling), so it is never reused.
type ProtocolError struct{ Reason string }

func (e *ProtocolError) Error() string { return "upstream response: " + e.Reason }

// The parser's errors are values, so a rejected response allocates nothing.
var (
	errHeadTooLarge      = &ProtocolError{"header section too large"}
	errTooManyFields     = &ProtocolError{"too many header fields"}
	errBadStatusLine     = &ProtocolError{"malformed status line"}
	errBareCR            = &ProtocolError{"bare CR"}
	errObsFold           = &ProtocolError{"obsolete line folding"}
	errBadFieldName      = &ProtocolError{"malformed field name"}
	errBadFieldValue     = &ProtocolError{"invalid character in field value"}
	errBadContentLength  = &ProtocolError{"malformed Content-Length"}
	errCLAndTE           = &ProtocolError{"both Content-Length and Transfer-Encoding"}
	errBadTE             = &ProtocolError{"unsupported Transfer-Encoding"}
	errTEInHTTP10        = &ProtocolError{"Transfer-Encoding in an HTTP/1.0 response"}
	errBadChunkSize      = &ProtocolError{"malformed chunk size"}
	errBadChunkEnd       = &ProtocolError{"chunk data not followed by CRLF"}
	errChunkLineTooLarge = &ProtocolError{"chunk size line too long"}
	errTruncatedHead     = &ProtocolError{"connection closed inside the response head"}
	errTruncatedBody     = &ProtocolError{"connection closed inside the response body"}
)

// bodyKind is how a response body is delimited (RFC 9112 §6.3).
type bodyKind uint8

const (
	bodyNone    bodyKind = iota // HEAD, 1xx, 204, 304, or a body fully read
	bodyLength                  // Content-Length
	bodyChunked                 // Transfer-Encoding: chunked
	bodyClose                   // neither: the body ends when the connection closes
)

// Response is a response read by a Client. It is reused across requests:
// RoundTrip fills it, the caller reads the body through Read and ends the
// exchange with Close, which gives the connection back to the pool when
// that is safe. H1Client parses into it directly; StdClient adapts net/http's
// response into it.
type Response struct {
	// Status is the status code of the response head last read. A 1xx other
	// than 100 and 101 (103 Early Hints) is returned to the caller, which
	// relays it and calls Next for the following head.
	Status int
	// ProtoMinor is 0 for HTTP/1.0 and 1 for HTTP/1.1.
	ProtoMinor int
	// Header holds the response's fields in the order received, hop-by-hop
	// ones included (the caller decides what to forward).
	Header exchange.Header
	// Trailer holds the trailer fields of a chunked body once it was read to
	// the end.
	Trailer exchange.Header
	// ContentLength is the body length, or -1 when it is delimited by chunked
	// coding or by the connection closing. 0 for responses without body.
	ContentLength int64

	br        *bufio.Reader
	kind      bodyKind
	remaining int64 // bytes left in the body (bodyLength) or in the chunk (bodyChunked)
	chunkEnd  bool  // chunk data was read; its CRLF is due
	keepAlive bool  // both sides allow another request on the connection
	// gotByte is set once any byte of a response arrived on the connection:
	// from then on a failed request is not retried.
	gotByte bool
	err     error // sticky body error

	// Set by H1Client.
	c        *H1Client
	conn     *h1Conn
	req      *Request
	watch    ctxWatch
	bodySent bool // the request body was sent in full

	// std is set by StdClient: the response comes from net/http.
	std *stdExchange
}

// readHead reads one response head (status line and header fields) and
// works out how the body is delimited for a request with the given method.
func (r *Response) readHead(br *bufio.Reader, method string) error {
	r.br = br
	r.Header.Reset()
	r.Trailer.Reset()
	r.Status, r.ProtoMinor, r.ContentLength = 0, 0, 0
	r.kind, r.remaining, r.chunkEnd, r.err, r.keepAlive = bodyNone, 0, false, nil, false
	total := 0
	line, err := readHeadLine(br, &total)
	if len(line) > 0 || br.Buffered() > 0 {
		r.gotByte = true
	}
	if err != nil {
		if err == io.EOF && !r.gotByte {
			// Nothing at all: the caller may retry on another connection.
			return io.EOF
		}
		return err
	}
	r.gotByte = true
	if r.ProtoMinor, r.Status, err = parseStatusLine(line); err != nil {
		return err
	}
	if err := readFields(br, &r.Header, &total); err != nil {
		return err
	}
	return r.frame(method)
}

// readHeadLine returns one line of a head without its line ending. RFC 9112
// §2.2 lets a recipient accept a bare LF as the end of a line; a bare CR
// anywhere else is rejected (it is the seed of response splitting when
// another hop treats it as a line end).
func readHeadLine(br *bufio.Reader, total *int) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	*total += len(line)
	if err != nil {
		switch {
		case err == bufio.ErrBufferFull:
			return nil, errHeadTooLarge
		case err == io.EOF && len(line) == 0:
			return nil, io.EOF
		case err == io.EOF:
			return nil, errTruncatedHead
		}
		return nil, err
	}
	if *total > maxResponseHeadBytes {
		return nil, errHeadTooLarge
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	for _, c := range line {
		if c == '\r' {
			return nil, errBareCR
		}
	}
	return line, nil
}

// parseStatusLine parses "HTTP/1.x SSS reason" (RFC 9112 §4). The reason
// phrase may be empty and its space may be missing (a common omission that
// Go's and curl's clients accept).
func parseStatusLine(line []byte) (minor, status int, err error) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' {
		return 0, 0, errBadStatusLine
	}
	switch line[7] {
	case '0':
	case '1':
		minor = 1
	default:
		return 0, 0, errBadStatusLine
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, errBadStatusLine
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 {
		return 0, 0, errBadStatusLine
	}
	if len(line) > 12 {
		if line[12] != ' ' {
			return 0, 0, errBadStatusLine
		}
		for _, c := range line[13:] {
			if c < ' ' && c != '\t' || c == 0x7f {
				return 0, 0, errBadStatusLine
			}
		}
	}
	return minor, status, nil
}

// readFields reads header (or trailer) fields up to the empty line.
func readFields(br *bufio.Reader, h *exchange.Header, total *int) error {
	for n := 0; ; n++ {
		line, err := readHeadLine(br, total)
		if err == io.EOF {
			return errTruncatedHead
		}
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if n == maxResponseFields {
			return errTooManyFields
		}
		// RFC 9112 §5.2: a proxy receiving obs-fold in a response either
		// replaces it with spaces or answers 502. penstock answers 502: no
		// current server folds lines, so one that does is suspect.
		if line[0] == ' ' || line[0] == '\t' {
			return errObsFold
		}
		name, value, err := parseField(line)
		if err != nil {
			return err
		}
		h.AddBytes(name, value)
	}
}

// parseField splits "name: value", trimming optional whitespace around the
// value. RFC 9112 §5.1 forbids whitespace between name and colon (a proxy
// must reject or fix it; penstock rejects).
func parseField(line []byte) (name, value []byte, err error) {
	colon := -1
	for i, c := range line {
		if c == ':' {
			colon = i
			break
		}
		if !isTokenChar(c) {
			return nil, nil, errBadFieldName
		}
	}
	if colon <= 0 {
		return nil, nil, errBadFieldName
	}
	name, value = line[:colon], line[colon+1:]
	for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
		value = value[1:]
	}
	for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
		value = value[:len(value)-1]
	}
	// RFC 9110 §5.5: field values are visible characters, spaces, tabs and
	// obs-text; NUL, CR, LF and the other controls are invalid.
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, errBadFieldValue
		}
	}
	return name, value, nil
}

// isTokenChar reports the tchar set of RFC 9110 §5.6.2.
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// frame decides how the body is delimited (RFC 9112 §6.3) and whether the
// connection may carry another request. Ambiguous framing is an error, not a
// guess: a proxy that guesses differently from the next hop can be made to
// split one response into two (response smuggling).
func (r *Response) frame(method string) error {
	cl, hasCL, err := contentLength(&r.Header)
	if err != nil {
		return err
	}
	hasTE, chunked := false, false
	var teErr error
	r.Header.Values("Transfer-Encoding", func(v string) bool {
		hasTE = true
		for v != "" {
			var tok string
			tok, v = cutComma(v)
			if tok == "" {
				continue
			}
			// chunked must be the only coding: penstock does not decode
			// other transfer codings, and chunked applied twice or not last
			// is invalid (RFC 9112 §6.1).
			if chunked || !exchange.EqualFold(tok, "chunked") {
				teErr = errBadTE
				return false
			}
			chunked = true
		}
		return true
	})
	if teErr != nil {
		return teErr
	}
	if hasTE {
		if !chunked {
			return errBadTE
		}
		// RFC 9112 §6.3 item 3: Content-Length with Transfer-Encoding
		// "ought to be handled as an error"; it is the classic smuggling
		// ambiguity.
		if hasCL {
			return errCLAndTE
		}
		// RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means
		// the framing is faulty.
		if r.ProtoMinor == 0 {
			return errTEInHTTP10
		}
	}

	r.keepAlive = r.ProtoMinor == 1 && !connectionHas(&r.Header, "close")
	switch {
	case r.Status == 101:
		// The connection now speaks another protocol; never pooled.
		r.keepAlive = false
		return nil
	case r.Status < 200, r.Status == 204, r.Status == 304, method == "HEAD":
		return nil
	case hasTE:
		r.kind, r.ContentLength = bodyChunked, -1
	case hasCL:
		r.kind, r.ContentLength, r.remaining = bodyLength, cl, cl
		if cl == 0 {
			r.kind = bodyNone
		}
	default:
		r.kind, r.ContentLength = bodyClose, -1
		r.keepAlive = false
	}
	return nil
}

// contentLength returns the Content-Length of h. Several fields or list
// elements are accepted only when they all carry the same value (RFC 9110
// §8.6); anything but digits is an error.
func contentLength(h *exchange.Header) (n int64, ok bool, err error) {
	n = -1
	h.Values("Content-Length", func(v string) bool {
		ok = true
		if v == "" {
			err = errBadContentLength
			return false
		}
		for v != "" {
			var tok string
			tok, v = cutComma(v)
			m, perr := parseDecimal(tok)
			if perr != nil || n >= 0 && m != n {
				err = errBadContentLength
				return false
			}
			n = m
		}
		return true
	})
	if err == nil && ok && n < 0 {
		err = errBadContentLength
	}
	return n, ok, err
}

func parseDecimal(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, errBadContentLength
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errBadContentLength
		}
		n = n*10 + int64(c-'0')
	}
	return n, nil
}

// cutComma returns the first element of a comma-separated list, trimmed of
// optional whitespace, and the rest.
func cutComma(v string) (tok, rest string) {
	i := 0
	for i < len(v) && v[i] != ',' {
		i++
	}
	tok = v[:i]
	if i < len(v) {
		rest = v[i+1:]
	}
	for tok != "" && (tok[0] == ' ' || tok[0] == '\t') {
		tok = tok[1:]
	}
	for tok != "" && (tok[len(tok)-1] == ' ' || tok[len(tok)-1] == '\t') {
		tok = tok[:len(tok)-1]
	}
	return tok, rest
}

// connectionHas reports whether a Connection field of h lists option.
func connectionHas(h *exchange.Header, option string) bool {
	found := false
	h.Values("Connection", func(v string) bool {
		for v != "" {
			var tok string
			tok, v = cutComma(v)
			if exchange.EqualFold(tok, option) {
				found = true
				return false
			}
		}
		return true
	})
	return found
}

// Read reads the response body. It returns io.EOF at the end of the body;
// any other error means the body was cut or malformed and the connection is
// closed by Close.
//
// A failure is an *Error: KindTruncated when the body ended early (the
// connection closed or reset inside it), KindTimeout when the request
// deadline passed, KindProtocol when its framing is malformed.
func (r *Response) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.std != nil {
		return r.std.read(r, p)
	}
	n, err := r.read(p)
	if err != nil && err != io.EOF {
		r.err = r.bodyError(err)
		return n, r.err
	}
	return n, err
}

// bodyError classifies a failure to read the body of a response.
func (r *Response) bodyError(err error) error {
	kind := KindTruncated
	var pe *ProtocolError
	switch {
	case isTimeout(err):
		kind = KindTimeout
	case errors.As(err, &pe) && pe != errTruncatedBody:
		kind = KindProtocol
	}
	addr := ""
	if r.c != nil {
		addr = r.c.e.Address
	}
	return &Error{Kind: kind, Endpoint: addr, Err: err}
}

func (r *Response) read(p []byte) (int, error) {
	switch r.kind {
	case bodyNone:
		return 0, io.EOF
	case bodyLength:
		if int64(len(p)) > r.remaining {
			p = p[:r.remaining]
		}
		n, err := r.br.Read(p)
		r.remaining -= int64(n)
		if r.remaining == 0 {
			r.kind = bodyNone
			return n, nil
		}
		if err == io.EOF {
			return n, errTruncatedBody
		}
		return n, err
	case bodyChunked:
		return r.readChunked(p)
	default: // bodyClose
		n, err := r.br.Read(p)
		if err == io.EOF {
			r.kind = bodyNone
		}
		return n, err
	}
}

// readChunked decodes the chunked transfer coding (RFC 9112 §7.1).
func (r *Response) readChunked(p []byte) (int, error) {
	for r.remaining == 0 {
		if r.chunkEnd {
			if err := r.readCRLF(); err != nil {
				return 0, err
			}
			r.chunkEnd = false
		}
		size, err := readChunkSize(r.br)
		if err != nil {
			return 0, err
		}
		if size == 0 {
			total := 0
			if err := readFields(r.br, &r.Trailer, &total); err != nil {
				if err == errTruncatedHead {
					return 0, errTruncatedBody
				}
				return 0, err
			}
			r.kind = bodyNone
			return 0, io.EOF
		}
		r.remaining = size
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	n, err := r.br.Read(p)
	r.remaining -= int64(n)
	if r.remaining == 0 {
		r.chunkEnd = true
	}
	if err == io.EOF {
		return n, errTruncatedBody
	}
	return n, err
}

// readCRLF reads the CRLF after chunk data. Chunk framing is held to the
// letter (no bare LF): lenient chunk parsing is where most published
// request and response smuggling lives.
func (r *Response) readCRLF() error {
	b, err := r.br.Peek(2)
	if err != nil {
		if err == io.EOF {
			return errTruncatedBody
		}
		return err
	}
	if b[0] != '\r' || b[1] != '\n' {
		return errBadChunkEnd
	}
	r.br.Discard(2)
	return nil
}

// readChunkSize reads a chunk-size line: hex digits, then optional
// extensions after ';' (ignored), then CRLF.
func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		switch err {
		case bufio.ErrBufferFull:
			return 0, errChunkLineTooLarge
		case io.EOF:
			return 0, errTruncatedBody
		}
		return 0, err
	}
	if len(line) > maxChunkLineBytes {
		return 0, errChunkLineTooLarge
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return 0, errBadChunkSize
	}
	line = line[:len(line)-2]
	return parseChunkSize(line)
}

// parseChunkSize parses the chunk-size and checks the extension syntax just
// enough to refuse control characters.
func parseChunkSize(line []byte) (int64, error) {
	var size int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		// 15 hex digits keep the size below 2^60: no overflow, and no
		// upstream has a reason to send a larger chunk.
		if i == 15 {
			return 0, errBadChunkSize
		}
		size = size<<4 | int64(d)
	}
rest:
	if i == 0 {
		return 0, errBadChunkSize
	}
	ext := line[i:]
	// RFC 9112 §7.1.1 allows whitespace before ';' (BWS).
	for len(ext) > 0 && (ext[0] == ' ' || ext[0] == '\t') {
		ext = ext[1:]
	}
	if len(ext) > 0 && ext[0] != ';' {
		return 0, errBadChunkSize
	}
	for _, c := range ext {
		if c < ' ' && c != '\t' || c == 0x7f {
			return 0, errBadChunkSize
		}
	}
	return size, nil
}

// Next reads the response head that follows an interim (1xx) response.
// Its errors are *Errors, as RoundTrip's.
func (r *Response) Next() error {
	if r.std != nil || r.c == nil {
		// net/http reports interim responses only through its trace
		// hooks and returns the final one.
		return &Error{Kind: KindProtocol, Err: errors.New("no response follows")}
	}
	if err := r.c.readFinalHead(r); err != nil {
		return r.c.e.errorf(exchangeKind(err, true), err)
	}
	return nil
}

// upgradedConn is the connection after a 101 response: reads drain what the
// response reader already buffered, then go to the socket.
type upgradedConn struct {
	net.Conn
	br   *bufio.Reader
	conn *h1Conn
}

func (u *upgradedConn) Read(p []byte) (int, error) { return u.br.Read(p) }

func (u *upgradedConn) Close() error {
	u.conn.close()
	return nil
}

// Upgrade hands over the connection after a 101 (Switching Protocols)
// response. The caller owns it and must close it; Close on the response
// then does nothing more.
func (r *Response) Upgrade() (io.ReadWriteCloser, error) {
	if r.std != nil {
		return r.std.upgrade(r)
	}
	if r.Status != 101 || r.conn == nil {
		return nil, errors.New("upstream response: not a protocol switch")
	}
	c := r.conn
	r.conn = nil
	r.watch.end()
	c.nc.SetDeadline(noDeadline)
	c.rd, c.wd, c.rdPending = noDeadline, noDeadline, false
	return &upgradedConn{Conn: c.nc, br: c.br, conn: c}, nil
}

// Close ends the exchange. The connection goes back to the pool only when
// the body was read to its end, the request body was sent in full, and
// neither side asked to close; otherwise it is closed.
func (r *Response) Close() {
	if r.std != nil {
		r.std.close(r)
		return
	}
	c := r.conn
	if c == nil {
		return
	}
	r.conn = nil
	client := r.c
	// The response may sit in a pool: drop what belongs to the exchange.
	r.c, r.req, r.br = nil, nil, nil
	reusable := r.keepAlive && r.bodySent && r.kind == bodyNone && r.err == nil
	if r.watch.active() && !r.watch.end() {
		// A context that fired has set a past deadline on the connection:
		// it is unusable.
		reusable = false
	}
	if reusable && client != nil {
		client.put(c)
		return
	}
	c.close()
}
