package h2

import (
	"errors"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Header blocks are decoded here rather than by the Framer
// (Framer.ReadMetaHeaders), which allocates for every block: a
// MetaHeadersFrame, its Fields grown field by field, and the emit closure
// with the variables it captures, about nine objects per request. Here the
// decoder's emit function is set once per connection and the fields go
// into a slice the connection keeps; a stream copies them into its own
// pooled slice. The checks are the Framer's (x/net/http2 frame.go,
// readMetaFrame and checkPseudos), with the same errors: a field name or
// value that is not valid, a pseudo-header after a regular field, an
// unknown or repeated pseudo-header, or request and response
// pseudo-headers mixed end the stream (PROTOCOL_ERROR); a header list over
// MaxHeaderListSize is decoded to its end but marked truncated (431); a
// fragment larger than twice the list size still allowed, or any
// CONTINUATION after an invalid field, ends the connection
// (PROTOCOL_ERROR: the CONTINUATION flood defence); an HPACK error ends it
// with COMPRESSION_ERROR.
type headerBlock struct {
	mh         http2.MetaHeadersFrame
	dec        *hpack.Decoder
	sawRegular bool
	invalid    error
	// headersRemain and trailersRemain are what is left of the header
	// list size for the fields and for the names a "trailer" field
	// announces, as the Framer counts them.
	headersRemain, trailersRemain uint32
	max                           uint32
}

func (b *headerBlock) init(max uint32) {
	b.max = max
	b.dec = hpack.NewDecoder(4096, b.emit)
	b.dec.SetMaxStringLength(int(max))
}

// emit takes one decoded field (hpack.Decoder's emit function).
func (b *headerBlock) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		b.invalid = errInvalidFieldValue
	}
	if strings.HasPrefix(hf.Name, ":") {
		if b.sawRegular {
			b.invalid = errPseudoAfterRegular
		}
	} else {
		b.sawRegular = true
		if !validFieldName(hf.Name) {
			b.invalid = errInvalidFieldName
		}
	}
	if b.invalid != nil {
		b.dec.SetEmitEnabled(false)
		return
	}
	remain := &b.headersRemain
	size := hf.Size()
	if hf.Name == "trailer" {
		remain = &b.trailersRemain
		n := strings.Count(hf.Value, ",") + 1
		size = uint32(len(hf.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	}
	if size > *remain {
		b.dec.SetEmitEnabled(false)
		b.mh.Truncated = true
		b.headersRemain, b.trailersRemain = 0, 0
		return
	}
	*remain -= size
	b.mh.Fields = append(b.mh.Fields, hf)
}

var (
	errInvalidFieldValue  = errors.New("invalid header field value")
	errInvalidFieldName   = errors.New("invalid header field name")
	errPseudoAfterRegular = errors.New("pseudo header field after regular")
	errPseudoHeader       = errors.New("invalid or repeated pseudo header field")
)

// validFieldName is x/net/http2's validWireHeaderFieldName: a token
// without upper-case letters.
func validFieldName(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// read decodes the block that hf opens, reading its CONTINUATION frames
// from fr. The result, and its Fields, are valid until the next call.
func (b *headerBlock) read(fr *http2.Framer, hf *http2.HeadersFrame) (*http2.MetaHeadersFrame, error) {
	b.mh = http2.MetaHeadersFrame{HeadersFrame: hf, Fields: b.mh.Fields[:0]}
	b.sawRegular, b.invalid = false, nil
	b.headersRemain, b.trailersRemain = b.max, b.max
	b.dec.SetEmitEnabled(true)
	frag := hf.HeaderBlockFragment()
	ended := hf.HeadersEnded()
	for {
		if int64(len(frag)) > 2*int64(b.headersRemain+b.trailersRemain) || b.invalid != nil {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := b.dec.Write(frag); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if ended {
			break
		}
		f, err := fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		// The Framer lets nothing but this stream's CONTINUATION follow
		// a HEADERS frame without END_HEADERS.
		cf := f.(*http2.ContinuationFrame)
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := b.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if b.invalid == nil {
		b.invalid = checkPseudos(b.mh.PseudoFields())
	}
	if b.invalid != nil {
		return nil, http2.StreamError{StreamID: hf.StreamID, Code: http2.ErrCodeProtocol, Cause: b.invalid}
	}
	return &b.mh, nil
}

// checkPseudos is the Framer's check of the pseudo-header fields: known
// names, each once, not those of a request and a response together.
func checkPseudos(pf []hpack.HeaderField) error {
	var isRequest, isResponse bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return errPseudoHeader
		}
		for _, hf2 := range pf[:i] {
			if hf.Name == hf2.Name {
				return errPseudoHeader
			}
		}
	}
	if isRequest && isResponse {
		return errPseudoHeader
	}
	return nil
}
