package grpccall

import (
	"bytes"
	"encoding/base64"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzParseTimeout checks that any grpc-timeout value parses without
// panicking, to a non-negative duration, and only when it has the
// protocol's shape.
func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"1H", "200m", "99999999H", "0n", "", "1", "123456789S", "-5m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := ParseTimeout(s)
		if !ok {
			return
		}
		if d < 0 {
			t.Fatalf("ParseTimeout(%q) = %v: negative", s, d)
		}
		if len(s) < 2 || len(s) > 9 {
			t.Fatalf("ParseTimeout(%q) accepted a value of %d bytes", s, len(s))
		}
	})
}

// FuzzWebFrames splits arbitrary bytes into gRPC-Web frames and parses
// the trailer frames: nothing panics, every frame lies within the input,
// and trailers written by AppendTrailerFrame parse back.
func FuzzWebFrames(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 'x', 0x80, 0, 0, 0, 16, 'g', 'r', 'p', 'c', '-', 's', 't', 'a', 't', 'u', 's', ':', ' ', '0', '\r', '\n'})
	f.Add([]byte{0x80, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x80, 0, 0, 0, 3, ':', '\r', '\n'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		rest := b
		for len(rest) > 0 {
			flag, payload, next, err := ParseFrame(rest)
			if err != nil {
				return
			}
			if len(next) >= len(rest) {
				t.Fatal("ParseFrame made no progress")
			}
			if flag&FlagTrailer != 0 {
				ParseTrailers(payload, func(name, value string) {
					if name == "" {
						t.Fatal("empty trailer name accepted")
					}
				})
			}
			rest = next
		}
	})
}

// FuzzTextDecoder decodes arbitrary bytes as a grpc-web-text body, whole
// and a byte at a time: both give the same bytes, and valid base64 (each
// segment padded on its own) decodes to what a standard decoder gives.
func FuzzTextDecoder(f *testing.F) {
	f.Add([]byte("aGVsbG8="), []byte("d29ybGQ="))
	f.Add([]byte("AAAA"), []byte("!!"))
	f.Add([]byte("YQ=="), []byte(""))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		in := append(append([]byte(nil), a...), b...)
		var whole, slow TextDecoder
		whole.Reset(bytes.NewReader(in))
		slow.Reset(iotest.OneByteReader(bytes.NewReader(in)))
		got1, err1 := io.ReadAll(&whole)
		got2, err2 := io.ReadAll(iotest.OneByteReader(&slow))
		if (err1 == nil) != (err2 == nil) || err1 == nil && !bytes.Equal(got1, got2) {
			t.Fatalf("whole: %x %v; byte by byte: %x %v", got1, err1, got2, err2)
		}
		// Two independently padded segments decode to their concatenation.
		da, ea := base64.StdEncoding.DecodeString(string(a))
		db, eb := base64.StdEncoding.DecodeString(string(b))
		if ea == nil && eb == nil && !bytes.ContainsAny(in, "\r\n") {
			if err1 != nil || !bytes.Equal(got1, append(da, db...)) {
				t.Fatalf("valid segments %q %q decoded to %x, %v; want %x", a, b, got1, err1, append(da, db...))
			}
		}
	})
}
