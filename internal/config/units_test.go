package config

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "10s", want: 10 * time.Second},
		{in: "250ms", want: 250 * time.Millisecond},
		{in: "1m30s", want: 90 * time.Second},
		{in: "1.5h", want: 90 * time.Minute},
		{in: "0", want: 0},
		{in: " 2s ", want: 2 * time.Second},
		{in: "", wantErr: "empty duration"},
		{in: "10", wantErr: `invalid duration "10": use a number with a unit`},
		{in: "10 seconds", wantErr: `invalid duration "10 seconds"`},
		{in: "-1s", wantErr: `invalid duration "-1s": must not be negative`},
		{in: "9999999h", wantErr: `invalid duration "9999999h"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDuration(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.D() != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "512", want: 512},
		{in: "512B", want: 512},
		{in: "64KiB", want: 64 << 10},
		{in: "10MiB", want: 10 << 20},
		{in: "1GiB", want: 1 << 30},
		{in: "2TiB", want: 2 << 40},
		{in: "10KB", want: 10_000},
		{in: "10MB", want: 10_000_000},
		{in: "1GB", want: 1_000_000_000},
		{in: "10 mib", want: 10 << 20},
		{in: "0", want: 0},
		{in: "", wantErr: `invalid size ""`},
		{in: "MiB", wantErr: `invalid size "MiB"`},
		{in: "10XB", wantErr: `invalid size "10XB": use bytes or a whole number with a unit`},
		{in: "1.5MiB", wantErr: `invalid size "1.5MiB"`},
		{in: "-5", wantErr: `invalid size "-5": must not be negative`},
		{in: "-5KiB", wantErr: `must not be negative`},
		{in: "9223372036854775807", want: 1<<63 - 1},
		{in: "9223372036854775808", wantErr: "too large"},
		{in: "8589934592GiB", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseByteSize(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseByteSize(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.Int64() != tt.want {
				t.Fatalf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		in   ByteSize
		want string
	}{
		{0, "0"},
		{1000, "1000"},
		{64 << 10, "64KiB"},
		{10 << 20, "10MiB"},
		{3 << 30, "3GiB"},
		{1536, "1536"},
	}
	for _, tt := range tests {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}

// TestUnitsFromYAML checks the YAML forms, quoted or not, integer or string,
// through the YAML library's own decoder, which other packages may use.
func TestUnitsFromYAML(t *testing.T) {
	var v struct {
		D []Duration `yaml:"d"`
		S []ByteSize `yaml:"s"`
	}
	src := `
d: [10s, "250ms", 0, 0.0]
s: [512, "64KiB", 10MB, 0x10]
`
	if err := yaml.Unmarshal([]byte(src), &v); err != nil {
		t.Fatal(err)
	}
	wantD := []Duration{Duration(10 * time.Second), Duration(250 * time.Millisecond), 0, 0}
	wantS := []ByteSize{512, 64 << 10, 10_000_000, 16}
	if len(v.D) != len(wantD) || len(v.S) != len(wantS) {
		t.Fatalf("decoded %v and %v", v.D, v.S)
	}
	for i := range wantD {
		if v.D[i] != wantD[i] {
			t.Errorf("d[%d] = %v, want %v", i, v.D[i], wantD[i])
		}
	}
	for i := range wantS {
		if v.S[i] != wantS[i] {
			t.Errorf("s[%d] = %d, want %d", i, v.S[i], wantS[i])
		}
	}

	for _, bad := range []string{"d: [true]", "d: [{a: 1}]", "d: [30]", "s: [true]", "s: [1.5]", "s: [-1]"} {
		if err := yaml.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s decoded without error", bad)
		}
	}
}
