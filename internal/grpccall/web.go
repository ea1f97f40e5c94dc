package grpccall

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// gRPC-Web (PROTOCOL-WEB.md) is gRPC for clients that cannot read HTTP
// trailers (browsers' fetch): the same length-prefixed messages, and the
// trailers sent as one more frame at the end of the body, with the flag
// byte's top bit set. In text mode the whole body is base64, which an
// encoder may pad at any frame boundary, so a decoder works on groups of
// four characters.

// Frame flags of the five-byte prefix (flag, then a big-endian length).
const (
	// FlagCompressed marks a compressed message.
	FlagCompressed = 0x01
	// FlagTrailer marks gRPC-Web's trailer frame.
	FlagTrailer = 0x80
)

// frameHeaderLen is the flag byte and the 32-bit length.
const frameHeaderLen = 5

// MaxTrailerFrame bounds a trailer frame's payload that ParseFrame accepts;
// trailers are a few small fields.
const MaxTrailerFrame = 64 << 10

// ErrShortFrame is ParseFrame's answer when b ends inside a frame.
var ErrShortFrame = errors.New("grpc-web: frame cut short")

// ParseFrame splits the first frame off b: its flag byte, its payload and
// what follows it. It fails with ErrShortFrame when b does not hold the
// whole frame, and refuses a trailer frame longer than MaxTrailerFrame.
func ParseFrame(b []byte) (flag byte, payload, rest []byte, err error) {
	if len(b) < frameHeaderLen {
		return 0, nil, b, ErrShortFrame
	}
	flag = b[0]
	n := binary.BigEndian.Uint32(b[1:5])
	if flag&FlagTrailer != 0 && n > MaxTrailerFrame {
		return 0, nil, b, fmt.Errorf("grpc-web: trailer frame of %d bytes exceeds %d", n, MaxTrailerFrame)
	}
	if uint64(len(b)-frameHeaderLen) < uint64(n) {
		return 0, nil, b, ErrShortFrame
	}
	end := frameHeaderLen + int(n)
	return flag, b[frameHeaderLen:end], b[end:], nil
}

// ParseTrailers calls fn for each "name: value" line (CRLF-terminated, the
// last line's CRLF optional) of a trailer frame's payload. A line without
// a colon or a name that is not a token is an error.
func ParseTrailers(payload []byte, fn func(name, value string)) error {
	for len(payload) > 0 {
		line := payload
		next := []byte(nil)
		for i := 0; i+1 < len(payload); i++ {
			if payload[i] == '\r' && payload[i+1] == '\n' {
				line, next = payload[:i], payload[i+2:]
				break
			}
		}
		if next == nil {
			payload = nil
		} else {
			payload = next
		}
		colon := -1
		for i, c := range line {
			if c == ':' {
				colon = i
				break
			}
		}
		if colon <= 0 {
			return fmt.Errorf("grpc-web: trailer line %q has no field name", line)
		}
		name := line[:colon]
		for _, c := range name {
			if !isTchar(c) {
				return fmt.Errorf("grpc-web: trailer field name %q is not a token", name)
			}
		}
		value := line[colon+1:]
		for len(value) > 0 && (value[0] == ' ' || value[0] == '\t') {
			value = value[1:]
		}
		for len(value) > 0 && (value[len(value)-1] == ' ' || value[len(value)-1] == '\t') {
			value = value[:len(value)-1]
		}
		fn(string(name), string(value))
	}
	return nil
}

// AppendTrailerFrame appends h as gRPC-Web's trailer frame: field names
// in lower case, each line ending in CRLF. Fields whose name is not a token
// or whose value holds a control character are left out, so that nothing
// from an upstream can forge a line.
func AppendTrailerFrame(b []byte, h *exchange.Header) []byte {
	start := len(b)
	b = append(b, FlagTrailer, 0, 0, 0, 0)
	h.Range(func(name, value string) bool {
		if !validName(name) || !validValue(value) {
			return true
		}
		for i := 0; i < len(name); i++ {
			c := name[i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
		}
		b = append(b, ':', ' ')
		b = append(b, value...)
		b = append(b, '\r', '\n')
		return true
	})
	binary.BigEndian.PutUint32(b[start+1:start+5], uint32(len(b)-start-frameHeaderLen))
	return b
}

func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTchar(s[i]) {
			return false
		}
	}
	return true
}

func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// isTchar reports the token characters of RFC 9110 §5.6.2.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// TextDecoder reads a grpc-web-text request body: base64 (standard
// alphabet) in groups of four characters, each group possibly padded, so
// that a client may encode every message on its own; CR and LF are
// skipped. Bad base64 is reported wrapping exchange.ErrBadRequestBody: the
// client's fault.
type TextDecoder struct {
	r io.Reader
	// buf[pos:end] is input not yet decoded; in holds the characters of
	// an incomplete group; out[outOff:outLen] decoded bytes not returned.
	buf      [4096]byte
	pos, end int
	in       [4]byte
	nin      int
	out      [3]byte
	outOff   int
	outLen   int
	eof      bool
	err      error
}

// Reset makes d decode r.
func (d *TextDecoder) Reset(r io.Reader) {
	d.r = r
	d.pos, d.end, d.nin, d.outOff, d.outLen = 0, 0, 0, 0, 0
	d.eof, d.err = false, nil
}

var errBadBase64 = fmt.Errorf("%w: grpc-web-text body is not base64", exchange.ErrBadRequestBody)

// Read implements io.Reader. It returns what it has decoded rather than
// wait for more input.
func (d *TextDecoder) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if d.outOff < d.outLen {
			k := copy(p[n:], d.out[d.outOff:d.outLen])
			d.outOff += k
			n += k
			continue
		}
		if d.pos == d.end {
			if d.err != nil || n > 0 {
				break
			}
			if d.eof {
				d.err = io.EOF
				if d.nin != 0 {
					d.err = errBadBase64
				}
				break
			}
			m, err := d.r.Read(d.buf[:])
			d.pos, d.end = 0, m
			switch {
			case err == io.EOF:
				d.eof = true
			case err != nil:
				d.err = err
			case m == 0:
				return 0, nil
			}
			continue
		}
		c := d.buf[d.pos]
		d.pos++
		if c == '\r' || c == '\n' {
			continue
		}
		d.in[d.nin] = c
		d.nin++
		if d.nin < 4 {
			continue
		}
		d.nin = 0
		k, err := base64.StdEncoding.Decode(d.out[:], d.in[:])
		if err != nil {
			d.err = errBadBase64
			d.pos, d.end = 0, 0
			break
		}
		d.outOff, d.outLen = 0, k
	}
	if n > 0 {
		return n, nil
	}
	return 0, d.err
}
