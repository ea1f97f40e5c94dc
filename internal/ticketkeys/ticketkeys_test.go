package ticketkeys

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func key(b byte) [Size]byte { return [Size]byte(bytes.Repeat([]byte{b}, Size)) }

func TestParse(t *testing.T) {
	k1, k2 := key(1), key(0xfb)
	std := func(k [Size]byte) string { return base64.StdEncoding.EncodeToString(k[:]) }
	url := func(k [Size]byte) string { return base64.RawURLEncoding.EncodeToString(k[:]) }
	tests := []struct {
		name    string
		in      string
		want    [][Size]byte
		wantErr string
	}{
		{name: "one base64 line", in: std(k1) + "\n", want: [][Size]byte{k1}},
		{name: "no final newline", in: std(k1), want: [][Size]byte{k1}},
		{name: "two keys, first encrypts", in: std(k2) + "\n" + std(k1) + "\n", want: [][Size]byte{k2, k1}},
		{name: "comments, blank lines, CRLF and spaces", in: "# rotated 2026-11-21\r\n\r\n  " + std(k1) + "  \r\n", want: [][Size]byte{k1}},
		{name: "URL alphabet without padding", in: url(k2), want: [][Size]byte{k2}},
		{name: "binary, one key", in: string(k2[:]), want: [][Size]byte{k2}},
		{name: "binary, two keys", in: string(k2[:]) + string(k1[:]), want: [][Size]byte{k2, k1}},
		{name: "empty", in: "", wantErr: "no keys"},
		{name: "only comments", in: "# nothing\n", wantErr: "no keys"},
		{name: "short key", in: base64.StdEncoding.EncodeToString(make([]byte, 16)), wantErr: "line 1: key is 16 bytes, want 32"},
		{name: "not base64", in: std(k1) + "\nhello world!\n", wantErr: "line 2: not base64"},
		{name: "binary of the wrong length", in: string(k2[:]) + "\xff", wantErr: "not a multiple of 32"},
		{name: "too many keys", in: strings.Repeat(std(k1)+"\n", 65), wantErr: "65 keys, at most 64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("%d keys, want %d", len(got), len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("key %d = %x, want %x", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// FuzzParse checks that any file either parses into 1 to 64 keys or is
// refused with an error, without panicking.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base64.StdEncoding.EncodeToString(make([]byte, Size)) + "\n"))
	f.Add(bytes.Repeat([]byte{0xfe}, 2*Size))
	f.Add([]byte("# comment\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := Parse(b)
		if err == nil && (len(keys) == 0 || len(keys) > maxKeys) {
			t.Fatalf("%d keys without an error", len(keys))
		}
	})
}
