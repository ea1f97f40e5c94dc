package h1

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// A validating front for net/http's HTTP/1.1 server (engine: stdhttp).
//
// net/http parses requests more leniently than this engine: it serves a
// request with both Content-Length and Transfer-Encoding and keeps the
// connection (RFC 9112 §6.1 requires closing it), joins obs-fold lines,
// accepts a request target as long as its header limit plus 4 KiB, and
// waits for ever on a 16-digit chunk size. So that clients see the same
// behaviour from both engines, the stdhttp engine reads plain connections
// through a Front: it holds each request head until it is complete,
// checks it with this engine's parser and passes it on unchanged; it
// passes a Content-Length body as it is and re-frames a chunked one
// canonically (so net/http never meets a chunk size it reads differently);
// and it answers what the parser refuses with the same status this engine
// gives, then ends the connection. The h2c preface and hijacked
// connections (Upgrade) pass through untouched.
//
// TLS connections are not fronted: net/http recognises them by their type
// (*tls.Conn) for the handshake, ALPN and Request.TLS, which a wrapper
// would hide.

// FrontListener wraps ln so that every connection it accepts is read
// through a Front. maxHeader bounds a request head, as Options.MaxHeaderBytes
// does (0: net/http's default, 1 MiB).
func FrontListener(ln net.Listener, maxHeader int) net.Listener {
	if maxHeader <= 0 {
		maxHeader = defaultMaxHeaderBytes
	}
	return &frontListener{Listener: ln, maxHeader: maxHeader}
}

type frontListener struct {
	net.Listener
	maxHeader int
}

func (l *frontListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Front{Conn: nc, maxHeader: l.maxHeader, first: true}, nil
}

// Front is a connection read through the validation described above. Its
// server calls ResponseDone after each response (net/http's StateIdle) and
// Hijacked when a handler takes the connection.
type Front struct {
	net.Conn
	maxHeader int

	in  []byte // received, not yet passed on
	out []byte // validated, for the server to read
	// inBuf and outBuf are the buffers in and out were cut from, reused
	// once they are empty: no allocation per request once warm.
	inBuf, outBuf []byte
	first         bool
	mode          frontMode

	remain int64          // frontLength: body bytes left
	dec    chunkedDecoder // frontChunked
	// refused is the response to send once the server has answered
	// every request passed on before it.
	refused []byte
	// passed counts request heads passed on, answered the responses
	// the server completed (ResponseDone).
	passed   int64
	answered atomic.Int64
	hijacked atomic.Bool
	// bodyErr is a body framing error not yet reported to the server.
	bodyErr error
	scratch [4096]byte
}

type frontMode uint8

const (
	frontHead frontMode = iota
	frontLength
	frontChunked
	frontThrough // h2c or hijacked: bytes as they come
	frontDone    // refused: nothing more is read
)

// ResponseDone records that the server completed a response.
func (f *Front) ResponseDone() { f.answered.Add(1) }

// Hijacked makes the connection pass bytes through from now on (a handler
// took it over after 101 Switching Protocols).
func (f *Front) Hijacked() { f.hijacked.Store(true) }

func (f *Front) Read(p []byte) (int, error) {
	for len(f.out) == 0 {
		if f.hijacked.Load() && f.mode != frontDone {
			f.mode = frontThrough
		}
		switch f.mode {
		case frontThrough:
			if len(f.in) > 0 {
				n := copy(p, f.in)
				f.in = f.in[n:]
				return n, nil
			}
			return f.Conn.Read(p)
		case frontDone:
			if f.bodyErr != nil {
				// net/http cancels a request's context when the
				// connection fails a read, so the error reaches the
				// handler as a chunk line net/http refuses itself
				// (the stdhttp Adapter reports it as
				// exchange.ErrBadRequestBody); reads after it fail.
				f.bodyErr = nil
				f.out = append(f.out[:0], "x\r\n"...)
				continue
			}
			return f.refuse(p)
		}
		if len(f.in) > 0 && f.step() {
			continue
		}
		if len(f.in) == 0 {
			f.in = f.inBuf[:0]
		}
		n, err := f.Conn.Read(f.scratch[:])
		f.in = append(f.in, f.scratch[:n]...)
		if cap(f.in) > cap(f.inBuf) {
			// Grown: keep the larger buffer (appending to a slice
			// already consumed from the front reallocates).
			f.inBuf = f.in[:0]
		}
		if n == 0 && err != nil {
			if f.mode == frontHead && len(f.in) > 0 && isTimeout(err) && f.answered.Load() >= f.passed {
				// A head begun and not finished in time (not the end
				// of net/http's read-ahead during a handler).
				f.Conn.Write(resp408)
			}
			if err == io.EOF && f.mode != frontHead {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
	if cap(f.out) > cap(f.outBuf) {
		f.outBuf = f.out[:0]
	}
	n := copy(p, f.out)
	f.out = f.out[n:]
	if len(f.out) == 0 {
		f.out = f.outBuf[:0]
	}
	return n, nil
}

// refuse answers a refused request once the server has answered every
// request before it; until then a read (net/http's background read during
// a handler) waits on the socket, discarding, until the server ends it.
func (f *Front) refuse(p []byte) (int, error) {
	for f.answered.Load() < f.passed {
		if _, err := f.Conn.Read(f.scratch[:]); err != nil {
			return 0, err
		}
	}
	if f.refused != nil {
		f.Conn.Write(f.refused)
		f.refused = nil
		if cw, ok := f.Conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
	}
	return 0, io.EOF
}

// step makes progress on f.in; it reports false when it needs more bytes.
func (f *Front) step() bool {
	switch f.mode {
	case frontHead:
		return f.stepHead()
	case frontLength:
		n := int(min(int64(len(f.in)), f.remain))
		f.out = append(f.out[:0], f.in[:n]...)
		f.in = f.in[n:]
		if f.remain -= int64(n); f.remain == 0 {
			f.mode = frontHead
		}
		return true
	case frontChunked:
		return f.stepChunked()
	}
	return false
}

func (f *Front) stepHead() bool {
	if f.first {
		n := min(len(f.in), len(h2Preface))
		if bytes.Equal(f.in[:n], h2Preface[:n]) {
			if n < len(h2Preface) {
				return false
			}
			f.mode = frontThrough
			return true
		}
	}
	end := headerEnd(f.in, 0)
	if end < 0 {
		var lineOK bool
		switch {
		case earlyHeadError(f.in, 0, &lineOK) != nil:
			f.fail(earlyHeadError(f.in, 0, &lineOK))
		case len(f.in) >= f.maxHeader && bytes.IndexByte(f.in, '\n') < 0:
			f.fail(errURITooLong)
		case len(f.in) >= f.maxHeader:
			f.fail(errHeaderTooLarge)
		default:
			return false
		}
		return true
	}
	x := exchange.Acquire()
	h, perr := parseHead(f.in[:end], &x.Req, maxHeaderFields)
	exchange.Release(x)
	if perr != nil {
		f.fail(perr)
		return true
	}
	f.first = false
	f.passed++
	// Empty lines before the request line (RFC 9112 §2.2) are not passed
	// on: net/http does not skip them.
	start := 0
	for f.in[start] == '\r' || f.in[start] == '\n' {
		start++
	}
	f.out = append(f.out[:0], f.in[start:end]...)
	if h.chunked {
		// Re-framed below: the server must not see the client's
		// Transfer-Encoding spelling either, only "chunked".
		f.dec.reset()
		f.mode = frontChunked
	} else if h.contentLength > 0 {
		f.remain = h.contentLength
		f.mode = frontLength
	}
	f.in = f.in[end:]
	return true
}

// stepChunked decodes the client's chunked framing and passes the data on
// in canonical chunks.
func (f *Front) stepChunked() bool {
	f.out = f.out[:0]
	for len(f.in) > 0 {
		if rem, ok := f.dec.inData(); ok {
			n := int(min(uint64(len(f.in)), rem))
			f.out = appendChunkSize(f.out, n)
			f.out = append(f.out, f.in[:n]...)
			f.out = append(f.out, "\r\n"...)
			f.in = f.in[n:]
			f.dec.consumedData(n)
			continue
		}
		n, perr := f.dec.framing(f.in)
		f.in = f.in[n:]
		if perr != nil {
			f.fail(perr)
			return true
		}
		if f.dec.done() {
			f.out = append(f.out, "0\r\n\r\n"...)
			f.mode = frontHead
			return true
		}
	}
	return len(f.out) > 0
}

// fail refuses the request: what was validated so far is still read, then
// the answer is sent and the connection ends. A body cut off this way
// leaves the server's body reader with an error, as on the native engine.
func (f *Front) fail(perr *ProtocolError) {
	f.mode = frontDone
	f.in = nil
	if isBodyError(perr) {
		f.bodyErr = perr
	} else {
		f.refused = errorResponse(perr.Status)
	}
}
