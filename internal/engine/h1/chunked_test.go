package h1

import (
	"bytes"
	"errors"
	"io"
	"net/http/httputil"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// decodeChunked runs the decoder over in, fed step bytes at a time, and
// returns the data, the bytes consumed when the body ended, and the error.
func decodeChunked(in []byte, step int) (data []byte, consumed int, perr *ProtocolError) {
	var d chunkedDecoder
	pos := 0
	for pos < len(in) && !d.done() {
		end := min(pos+step, len(in))
		for pos < end && !d.done() {
			if rem, ok := d.inData(); ok {
				n := min(uint64(end-pos), rem)
				data = append(data, in[pos:pos+int(n)]...)
				d.consumedData(int(n))
				pos += int(n)
				continue
			}
			n, err := d.framing(in[pos:end])
			pos += n
			if err != nil {
				return data, pos, err
			}
		}
	}
	if !d.done() {
		return data, pos, errIncomplete
	}
	return data, pos, nil
}

// errIncomplete marks input that ended before the body did (tests only).
var errIncomplete = &ProtocolError{0, "incomplete"}

func TestChunkedDecoder(t *testing.T) {
	tests := []struct {
		name string
		in   string
		data string
		err  *ProtocolError // nil: accepted
	}{
		{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello", nil},
		{"two chunks, upper-case hex", "A\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\n", "0123456789!", nil},
		{"extension", "5;a=b;c\r\nhello\r\n0;last\r\n\r\n", "hello", nil},
		{"BWS before extension", "5 ;a=b\r\nhello\r\n0\r\n\r\n", "hello", nil},
		{"trailer fields", "1\r\nx\r\n0\r\nT: 1\r\nU: two words\r\n\r\n", "x", nil},
		{"leading zeros", "0005\r\nhello\r\n0\r\n\r\n", "hello", nil},
		{"more leading zeros than 15 digits (RFC 9112 §7.1: 1*HEXDIG)", "000000000000000000000005\r\nhello\r\n0\r\n\r\n", "hello", nil},
		{"last chunk of zeros", "1\r\nx\r\n0000\r\n\r\n", "x", nil},
		{"leading zeros then 15 digits", "0000fffffffffffffff\r\n", "", errIncomplete},
		{"leading zeros without end", strings.Repeat("0", maxChunkExt+1) + "5\r\nhello\r\n0\r\n\r\n", "", errChunkExtLong},
		{"16 significant digits after zeros", "0ffffffffffffffff5\r\n", "", errChunkSize},
		{"empty body", "0\r\n\r\n", "", nil},

		{"no digits", "\r\nhello\r\n0\r\n\r\n", "", errChunkSize},
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", "", errChunkSize},
		{"sign", "+5\r\nhello\r\n0\r\n\r\n", "", errChunkSize},
		{"leading space", " 5\r\nhello\r\n0\r\n\r\n", "", errChunkSize},
		{"trailing space without extension", "5 \r\nhello\r\n0\r\n\r\n", "", errChunkSize},
		{"overflow", "10000000000000000\r\n", "", errChunkSize},
		{"16 hex digits", "ffffffffffffffff\r\n", "", errChunkSize},
		{"16 hex digits, not overflowing uint64", "fffffffffffffff5\r\nhello\r\n", "", errChunkSize},
		{"size then space then data", "5 \r\nhello\r\n0\r\n\r\n", "", errChunkSize},
		{"negative size", "-5\r\nhello\r\n0\r\n\r\n", "", errChunkSize},
		{"data not followed by CRLF", "5\r\nhelloX\r\n0\r\n\r\n", "hello", errChunkCRLF},
		{"bare LF after size", "5\nhello\r\n0\r\n\r\n", "", errChunkSize},
		{"bare CR after size", "5\rhello\r\n0\r\n\r\n", "", errChunkCRLF},
		{"bare LF after data", "5\r\nhello\n0\r\n\r\n", "hello", errChunkCRLF},
		{"data longer than size", "3\r\nhello\r\n0\r\n\r\n", "hel", errChunkCRLF},
		{"LF in extension", "5;a\nb\r\nhello\r\n0\r\n\r\n", "", errChunkExt},
		{"NUL in extension", "5;a\x00\r\nhello\r\n0\r\n\r\n", "", errChunkExt},
		{"huge extension", "5;" + strings.Repeat("a", maxChunkExt+1) + "\r\nhello\r\n0\r\n\r\n", "", errChunkExtLong},
		{"extensions over the body budget", strings.Repeat("1;"+strings.Repeat("e", 4000)+"\r\nx\r\n", 17) + "0\r\n\r\n",
			strings.Repeat("x", 16), errChunkExtLong},
		{"bare LF ending the body", "0\r\n\n", "", errTrailer},
		{"obs-fold in trailer", "0\r\nT: 1\r\n folded\r\n\r\n", "", errTrailer},
		{"trailer without colon", "0\r\nT\r\n\r\n", "", errTrailer},
		{"trailer with space before colon", "0\r\nT : 1\r\n\r\n", "", errTrailer},
		{"trailer with CTL", "0\r\nT: a\x01\r\n\r\n", "", errTrailer},
		{"trailer section too large", "0\r\n" + strings.Repeat("T: "+strings.Repeat("v", 1000)+"\r\n", 17) + "\r\n", "", errTrailerLarge},
		{"incomplete", "5\r\nhel", "hel", errIncomplete},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, step := range []int{1, 2, 3, 7, len(tt.in)} {
				data, _, err := decodeChunked([]byte(tt.in), step)
				if err != tt.err {
					t.Fatalf("step %d: error %v, want %v", step, err, tt.err)
				}
				if string(data) != tt.data {
					t.Fatalf("step %d: data %q, want %q", step, data, tt.data)
				}
			}
		})
	}
}

// TestChunkedErrorsAreBadRequestBody: every framing error the body reader
// returns tells the proxy that the client, not the upstream, failed.
func TestChunkedErrorsAreBadRequestBody(t *testing.T) {
	for _, e := range []*ProtocolError{errChunkSize, errChunkExt, errChunkExtLong, errChunkCRLF, errTrailer, errTrailerLarge} {
		if !errors.Is(e, exchange.ErrBadRequestBody) {
			t.Errorf("%v is not exchange.ErrBadRequestBody", e)
		}
	}
	if errors.Is(errRequestLine, exchange.ErrBadRequestBody) {
		t.Errorf("%v (a head error) matches exchange.ErrBadRequestBody", errRequestLine)
	}
}

func FuzzChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
		"0\r\n\r\n",
		"ffffffffffffffff\r\n",
		"5\nhello\n0\n\n",
		"3\r\nabc\r\n0 ;x\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, in []byte, step uint8) {
		whole, n1, err1 := decodeChunked(in, len(in)+1)
		split, n2, err2 := decodeChunked(in, int(step%16)+1)
		// Where the input is split must not change anything.
		if err1 != err2 || n1 != n2 || !bytes.Equal(whole, split) {
			t.Fatalf("split changes the result: %q/%d/%v vs %q/%d/%v", whole, n1, err1, split, n2, err2)
		}
		if err1 != nil {
			return
		}
		// What penstock accepts, Go's chunked reader reads the same way,
		// except for two things Go is stricter about: whitespace before a
		// chunk extension (BWS, which RFC 9112 §7.1.1 allows) and its
		// ratio of extension bytes to data.
		got, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(in[:n1])))
		if err != nil {
			if bytes.Contains(in[:n1], []byte(" ;")) || bytes.Contains(in[:n1], []byte("\t;")) ||
				strings.Contains(err.Error(), "too much non-data") ||
				// Go counts leading zeros towards its 16 digits.
				strings.Contains(err.Error(), "too large") {
				return
			}
			t.Fatalf("accepted %q, Go's reader says %v", in[:n1], err)
		}
		if !bytes.Equal(got, whole) {
			t.Fatalf("data %q, Go's reader %q", whole, got)
		}
	})
}
