package grpccall

import (
	"bytes"
	"encoding/base64"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
)

func TestKindOf(t *testing.T) {
	tests := []struct {
		ct   string
		want Kind
	}{
		{"application/grpc", GRPC},
		{"application/grpc+proto", GRPC},
		{"Application/GRPC+json", GRPC},
		{"application/grpc; charset=utf-8", GRPC},
		{"application/grpc-web", Web},
		{"application/grpc-web+proto", Web},
		{"application/grpc-web-text", WebText},
		{"application/grpc-web-text+proto", WebText},
		{"application/grpcx", None},
		{"application/grpc-webby", None},
		{"application/json", None},
		{"", None},
	}
	for _, tc := range tests {
		t.Run(tc.ct, func(t *testing.T) {
			if got := KindOf(tc.ct); got != tc.want {
				t.Errorf("KindOf(%q) = %d, want %d", tc.ct, got, tc.want)
			}
		})
	}
}

func TestClassifyNeedsPOST(t *testing.T) {
	var req exchange.Request
	req.Header.Add("Content-Type", "application/grpc")
	req.Method = "GET"
	if Classify(&req) != None {
		t.Error("a GET was classified as a gRPC call")
	}
	req.Method = "POST"
	if Classify(&req) != GRPC {
		t.Error("a POST with application/grpc is not a gRPC call")
	}
}

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true},
		{"2M", 2 * time.Minute, true},
		{"30S", 30 * time.Second, true},
		{"200m", 200 * time.Millisecond, true},
		{"5u", 5 * time.Microsecond, true},
		{"99999999n", 99999999, true},
		{"0m", 0, true},
		{"99999999H", 1<<63 - 1, true}, // capped, not wrapped
		{"", 0, false},
		{"m", 0, false},
		{"123456789m", 0, false}, // nine digits
		{"10", 0, false},
		{"10s", 0, false}, // the unit is case-sensitive
		{"-1S", 0, false},
		{" 1S", 0, false},
		{"1.5S", 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := ParseTimeout(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("ParseTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestStatusAndMessage(t *testing.T) {
	for code := range 17 {
		if got, ok := ParseStatus(StatusString(code)); !ok || got != code {
			t.Errorf("status %d does not survive a round trip: %d %v", code, got, ok)
		}
	}
	for _, bad := range []string{"", "-1", "1 ", "1234", "x"} {
		if _, ok := ParseStatus(bad); ok {
			t.Errorf("ParseStatus(%q) accepted", bad)
		}
	}
	if got := string(AppendMessage(nil, "100% é\r\n")); got != "100%25 %C3%A9%0D%0A" {
		t.Errorf("AppendMessage = %q", got)
	}
}

func TestSplitPath(t *testing.T) {
	tests := []struct{ path, service, method string }{
		{"/pkg.Svc/Call", "pkg.Svc", "Call"},
		{"/grpc.health.v1.Health/Check", "grpc.health.v1.Health", "Check"},
		{"/Svc/", "", ""},
		{"//Call", "", ""},
		{"/a/b/c", "", ""},
		{"/nomethod", "", ""},
		{"", "", ""},
	}
	for _, tc := range tests {
		s, m := SplitPath(tc.path)
		if s != tc.service || m != tc.method {
			t.Errorf("SplitPath(%q) = %q, %q; want %q, %q", tc.path, s, m, tc.service, tc.method)
		}
	}
}

func TestTrailerFrameRoundTrip(t *testing.T) {
	var h exchange.Header
	h.Add("Grpc-Status", "3")
	h.Add("Grpc-Message", "bad%20input")
	h.Add("X-Bad", "split\r\nx-forged: 1") // dropped: would forge a line
	h.Add("X-Detail-Bin", "AAEC")
	frame := AppendTrailerFrame(nil, &h)
	flag, payload, rest, err := ParseFrame(frame)
	if err != nil || flag != FlagTrailer || len(rest) != 0 {
		t.Fatalf("ParseFrame: flag %x, rest %d, %v", flag, len(rest), err)
	}
	var got []string
	if err := ParseTrailers(payload, func(k, v string) { got = append(got, k+"="+v) }); err != nil {
		t.Fatal(err)
	}
	want := []string{"grpc-status=3", "grpc-message=bad%20input", "x-detail-bin=AAEC"}
	if len(got) != len(want) {
		t.Fatalf("fields %q, want %q", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestParseFrameErrors(t *testing.T) {
	if _, _, _, err := ParseFrame([]byte{0, 0, 0, 0}); err != ErrShortFrame {
		t.Errorf("4 bytes: %v, want ErrShortFrame", err)
	}
	if _, _, _, err := ParseFrame([]byte{0, 0, 0, 0, 5, 'a'}); err != ErrShortFrame {
		t.Errorf("cut payload: %v, want ErrShortFrame", err)
	}
	if _, _, _, err := ParseFrame([]byte{FlagTrailer, 0xff, 0xff, 0xff, 0xff}); err == nil || err == ErrShortFrame {
		t.Errorf("huge trailer frame: %v, want a size error", err)
	}
}

// TestTextDecoder decodes base64 bodies whose segments are padded on their
// own (a client may encode each message apart) through readers that
// return one byte at a time, and refuses what is not base64.
func TestTextDecoder(t *testing.T) {
	msgs := [][]byte{[]byte("a"), []byte("hello, world"), bytes.Repeat([]byte{0xfe}, 5000)}
	var enc, want []byte
	for _, m := range msgs {
		enc = base64.StdEncoding.AppendEncode(enc, m)
		want = append(want, m...)
	}
	for _, r := range []struct {
		name string
		r    func([]byte) io.Reader
	}{
		{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }},
		{"one byte at a time", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }},
		{"half reads", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }},
	} {
		t.Run(r.name, func(t *testing.T) {
			var d TextDecoder
			d.Reset(r.r(enc))
			got, err := io.ReadAll(iotest.OneByteReader(&d))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("decoded %d bytes, %v; want %d bytes", len(got), err, len(want))
			}
		})
	}
	for _, bad := range []string{"abc", "ab!d", "a==="} {
		var d TextDecoder
		d.Reset(bytes.NewReader([]byte(bad)))
		if _, err := io.ReadAll(&d); err == nil {
			t.Errorf("%q decoded without error", bad)
		}
	}
}
