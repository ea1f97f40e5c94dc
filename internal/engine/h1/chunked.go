package h1

import (
	"bytes"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// chunkedDecoder reads the chunked transfer coding (RFC 9112 §7.1) as a
// byte-at-a-time state machine, so framing may arrive split anywhere and no
// line has to fit in a buffer. It consumes framing; the caller copies chunk
// data (the decoder only counts it) so data never passes through an extra
// copy.
//
// It is strict where parsers disagree in published request-smuggling
// research (chunk-size quirks, chunk extensions, line terminators):
//   - chunk-size is 1*HEXDIG, at most 15 significant digits (no sign, no
//     "0x", no leading whitespace, no overflow); leading zeros are legal
//     and accepted, bounded like chunk extensions;
//   - every line inside the body ends in CRLF: a lone LF or CR is an error
//     (unlike the header section, see parse.go);
//   - chunk extensions (which penstock ignores) may only hold visible
//     characters, SP and HTAB, at most maxChunkExt bytes per line and
//     maxChunkExtTotal in the whole body, so tiny chunks with large
//     extensions cannot burn CPU for little payload;
//   - the trailer section is parsed as field lines (token name, colon,
//     value without CTLs), bounded by maxTrailer bytes, and kept apart
//     for the handler (readTrailer), never merged into the header
//     (RFC 9112 §7.1.2).
type chunkedDecoder struct {
	state     chunkState
	size      uint64 // chunk-size being parsed
	digits    int    // significant digits of chunk-size
	zeros     int    // leading zeros of chunk-size
	remaining uint64 // data bytes left in the current chunk
	extLen    int    // extension bytes on the current line
	extTotal  int    // extension bytes in the body
	trailer   int    // trailer section bytes so far
	nameLen   int    // length of the trailer field name being read
	// fields keeps the trailer section's field lines, each ended by '\n',
	// for the handler (exchange.TrailerReader); nil until a trailer field
	// arrives, so bodies without one allocate nothing.
	fields []byte
}

type chunkState uint8

const (
	csSize         chunkState = iota // reading chunk-size hex digits
	csSizeWS                         // BWS after chunk-size, before ';'
	csExt                            // inside chunk extensions
	csSizeLF                         // CR seen after size line, LF due
	csData                           // chunk data (remaining > 0)
	csDataCR                         // CRLF after chunk data
	csDataLF                         //
	csTrailerStart                   // start of a trailer line (or the final CRLF)
	csTrailerName                    // field name
	csTrailerValue                   // after ':'
	csTrailerLF                      // CR seen at the end of a trailer line
	csEndLF                          // CR of the final empty line seen
	csDone                           // body complete
)

const (
	maxChunkExt      = 4096
	maxChunkExtTotal = 64 << 10
	maxTrailer       = 16 << 10
)

// Chunked framing errors: all 400, and the connection is closed. The body
// reader returns them to the handler, where errors.Is(err,
// exchange.ErrBadRequestBody) holds (ProtocolError.Is).
var (
	errChunkSize    = &ProtocolError{400, "invalid chunk size"}
	errChunkExt     = &ProtocolError{400, "invalid chunk extension"}
	errChunkExtLong = &ProtocolError{400, "chunk extensions too long"}
	errChunkCRLF    = &ProtocolError{400, "chunk not terminated by CRLF"}
	errTrailer      = &ProtocolError{400, "invalid trailer field"}
	errTrailerLarge = &ProtocolError{400, "trailer section too large"}
)

// isBodyError reports whether e is one of the body framing errors above.
func isBodyError(e *ProtocolError) bool {
	switch e {
	case errChunkSize, errChunkExt, errChunkExtLong, errChunkCRLF, errTrailer, errTrailerLarge:
		return true
	}
	return false
}

func (d *chunkedDecoder) reset() { *d = chunkedDecoder{} }

// done reports whether the last chunk and the trailer section were read.
func (d *chunkedDecoder) done() bool { return d.state == csDone }

// inData reports whether the decoder is inside chunk data, and how many
// bytes of it are left.
func (d *chunkedDecoder) inData() (uint64, bool) {
	return d.remaining, d.state == csData
}

// consumedData records that the caller took n bytes of chunk data.
func (d *chunkedDecoder) consumedData(n int) {
	d.remaining -= uint64(n)
	if d.remaining == 0 {
		d.state = csDataCR
	}
}

// framing consumes framing bytes from b until it reaches chunk data or the
// end of the body, and returns how many bytes it consumed. It returns at
// once (0) when already in data or done.
func (d *chunkedDecoder) framing(b []byte) (int, *ProtocolError) {
	for i := 0; i < len(b); i++ {
		c := b[i]
		switch d.state {
		case csData, csDone:
			return i, nil
		case csSize:
			if v := unhex(c); v >= 0 {
				if v == 0 && d.digits == 0 {
					// A leading zero: legal (1*HEXDIG), not a
					// significant digit, but bounded like an extension.
					d.zeros++
					if d.zeros > maxChunkExt {
						return i, errChunkExtLong
					}
					continue
				}
				d.digits++
				if d.digits > 15 {
					return i, errChunkSize
				}
				d.size = d.size<<4 | uint64(v)
				continue
			}
			if d.digits == 0 && d.zeros == 0 {
				return i, errChunkSize
			}
			switch c {
			case '\r':
				d.state = csSizeLF
			case ';':
				d.state = csExt
			case ' ', '\t':
				d.state = csSizeWS
			default:
				return i, errChunkSize
			}
		case csSizeWS:
			switch c {
			case ' ', '\t':
				if d.extLen++; d.extLen > maxChunkExt {
					return i, errChunkExtLong
				}
			case ';':
				d.state = csExt
			default:
				// Whitespace may only precede an extension (BWS ";").
				return i, errChunkSize
			}
		case csExt:
			if c == '\r' {
				d.state = csSizeLF
				continue
			}
			if c < 0x20 && c != '\t' || c == 0x7f {
				return i, errChunkExt
			}
			d.extLen++
			d.extTotal++
			if d.extLen > maxChunkExt || d.extTotal > maxChunkExtTotal {
				return i, errChunkExtLong
			}
		case csSizeLF:
			if c != '\n' {
				return i, errChunkCRLF
			}
			d.extLen = 0
			if d.size == 0 {
				d.state = csTrailerStart
			} else {
				d.remaining, d.size, d.digits, d.zeros = d.size, 0, 0, 0
				d.state = csData
			}
		case csDataCR:
			if c != '\r' {
				return i, errChunkCRLF
			}
			d.state = csDataLF
		case csDataLF:
			if c != '\n' {
				return i, errChunkCRLF
			}
			d.state = csSize
		case csTrailerStart:
			if c == '\r' {
				d.state = csEndLF
				continue
			}
			if !isTchar(c) {
				// Includes SP/HTAB: obs-fold in a trailer.
				return i, errTrailer
			}
			d.nameLen = 1
			d.state = csTrailerName
			if err := d.countTrailer(); err != nil {
				return i, err
			}
			d.fields = append(d.fields, c)
		case csTrailerName:
			if err := d.countTrailer(); err != nil {
				return i, err
			}
			if c == ':' {
				d.state = csTrailerValue
				d.fields = append(d.fields, c)
				continue
			}
			if !isTchar(c) {
				return i, errTrailer
			}
			d.nameLen++
			d.fields = append(d.fields, c)
		case csTrailerValue:
			if err := d.countTrailer(); err != nil {
				return i, err
			}
			if c == '\r' {
				d.state = csTrailerLF
				continue
			}
			if c < 0x20 && c != '\t' || c == 0x7f {
				return i, errTrailer
			}
			d.fields = append(d.fields, c)
		case csTrailerLF:
			if c != '\n' {
				return i, errChunkCRLF
			}
			d.fields = append(d.fields, '\n')
			d.state = csTrailerStart
		case csEndLF:
			if c != '\n' {
				return i, errChunkCRLF
			}
			d.state = csDone
			return i + 1, nil
		}
	}
	return len(b), nil
}

func (d *chunkedDecoder) countTrailer() *ProtocolError {
	d.trailer++
	if d.trailer > maxTrailer {
		return errTrailerLarge
	}
	return nil
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// readTrailer appends the trailer fields read so far to dst, their values
// without surrounding whitespace (RFC 9110 §5.5).
func (d *chunkedDecoder) readTrailer(dst *exchange.Header) {
	rest := d.fields
	for len(rest) > 0 {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i], rest[i+1:]
		} else {
			rest = nil
		}
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		dst.AddBytes(name, bytes.Trim(value, " \t"))
	}
}
