package exchange

import (
	"slices"
	"testing"
)

// pair is one header field as Range reports it.
type pair struct{ name, value string }

// fields lists h's fields in order through Range.
func fields(h *Header) []pair {
	var out []pair
	h.Range(func(name, value string) bool {
		out = append(out, pair{name, value})
		return true
	})
	return out
}

// values lists the values of the fields named name through Values.
func values(h *Header, name string) []string {
	var out []string
	h.Values(name, func(v string) bool {
		out = append(out, v)
		return true
	})
	return out
}

func TestHeaderGetIsCaseInsensitive(t *testing.T) {
	var h Header
	h.Add("Content-Type", "application/json")
	h.Add("x-request-id", "abc")
	tests := []struct {
		name, lookup string
		want         string
		ok           bool
	}{
		{name: "same case", lookup: "Content-Type", want: "application/json", ok: true},
		{name: "lower case", lookup: "content-type", want: "application/json", ok: true},
		{name: "upper case", lookup: "CONTENT-TYPE", want: "application/json", ok: true},
		{name: "added lower, asked canonical", lookup: "X-Request-Id", want: "abc", ok: true},
		{name: "absent", lookup: "Accept", want: "", ok: false},
		{name: "prefix of a name is not the name", lookup: "Content", want: "", ok: false},
		{name: "longer than a name", lookup: "Content-Type2", want: "", ok: false},
		// '[' and '{' differ by the ASCII case bit but are not letters.
		{name: "non-letters are not folded", lookup: "x{request-id", want: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := h.Get(tt.lookup)
			if got != tt.want || ok != tt.ok {
				t.Errorf("Get(%q) = %q, %v; want %q, %v", tt.lookup, got, ok, tt.want, tt.ok)
			}
			if h.Has(tt.lookup) != tt.ok {
				t.Errorf("Has(%q) = %v, want %v", tt.lookup, !tt.ok, tt.ok)
			}
			if v, ok := h.HeaderValue(tt.lookup); v != tt.want || ok != tt.ok {
				t.Errorf("HeaderValue(%q) = %q, %v; want %q, %v", tt.lookup, v, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestHeaderOperations(t *testing.T) {
	tests := []struct {
		name    string
		build   func(h *Header)
		want    []pair // in Range order
		wantLen int
	}{
		{
			name:    "zero value is empty",
			build:   func(h *Header) {},
			want:    nil,
			wantLen: 0,
		},
		{
			name: "Add keeps order and the name's case",
			build: func(h *Header) {
				h.Add("Accept", "text/html")
				h.Add("x-trace", "1")
				h.Add("Accept", "application/json")
			},
			want:    []pair{{"Accept", "text/html"}, {"x-trace", "1"}, {"Accept", "application/json"}},
			wantLen: 3,
		},
		{
			name: "Set replaces every field of that name with one at the end",
			build: func(h *Header) {
				h.Add("Accept", "a")
				h.Add("X-Other", "o")
				h.Add("accept", "b")
				h.Set("ACCEPT", "c")
			},
			want:    []pair{{"X-Other", "o"}, {"ACCEPT", "c"}},
			wantLen: 2,
		},
		{
			name:    "Set on an absent name adds it",
			build:   func(h *Header) { h.Set("X-New", "v") },
			want:    []pair{{"X-New", "v"}},
			wantLen: 1,
		},
		{
			name: "Del removes every field of that name, any case",
			build: func(h *Header) {
				h.Add("Cookie", "a=1")
				h.Add("Host", "example.com")
				h.Add("cookie", "b=2")
				h.Del("COOKIE")
			},
			want:    []pair{{"Host", "example.com"}},
			wantLen: 1,
		},
		{
			name: "Del of an absent name changes nothing",
			build: func(h *Header) {
				h.Add("Host", "example.com")
				h.Del("Cookie")
			},
			want:    []pair{{"Host", "example.com"}},
			wantLen: 1,
		},
		{
			name: "a deleted name can be added again",
			build: func(h *Header) {
				h.Add("X-A", "1")
				h.Del("X-A")
				h.Add("X-A", "2")
			},
			want:    []pair{{"X-A", "2"}},
			wantLen: 1,
		},
		{
			name: "empty values are fields too",
			build: func(h *Header) {
				h.Add("X-Empty", "")
				h.Add("X-Full", "v")
				h.Add("X-Empty", "")
			},
			want:    []pair{{"X-Empty", ""}, {"X-Full", "v"}, {"X-Empty", ""}},
			wantLen: 3,
		},
		{
			name: "Reset empties the header",
			build: func(h *Header) {
				h.Add("X-A", "1")
				h.Add("X-B", "2")
				h.Reset()
			},
			want:    nil,
			wantLen: 0,
		},
		{
			name: "fields added after Reset do not see old ones",
			build: func(h *Header) {
				h.Add("X-Old", "old")
				h.Reset()
				h.Add("X-New", "new")
			},
			want:    []pair{{"X-New", "new"}},
			wantLen: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Header
			tt.build(&h)
			if got := fields(&h); !slices.Equal(got, tt.want) {
				t.Errorf("Range = %q, want %q", got, tt.want)
			}
			if got := h.Len(); got != tt.wantLen {
				t.Errorf("Len() = %d, want %d", got, tt.wantLen)
			}
		})
	}
}

func TestHeaderGetReturnsFirstValue(t *testing.T) {
	var h Header
	h.Add("Accept", "first")
	h.Add("Accept", "second")
	if v, _ := h.Get("accept"); v != "first" {
		t.Errorf("Get = %q, want the first field's value %q", v, "first")
	}
}

func TestHeaderEmptyValueIsPresent(t *testing.T) {
	var h Header
	h.Add("X-Empty", "")
	v, ok := h.Get("x-empty")
	if v != "" || !ok {
		t.Errorf("Get = %q, %v; want \"\", true", v, ok)
	}
}

func TestHeaderValues(t *testing.T) {
	var h Header
	h.Add("Via", "1.1 a")
	h.Add("Host", "example.com")
	h.Add("via", "1.1 b")
	h.Add("VIA", "")
	h.Add("Via", "1.1 c")
	h.Del("Host")

	tests := []struct {
		name  string
		field string
		want  []string
	}{
		{name: "every value in order, any case, empty included", field: "Via", want: []string{"1.1 a", "1.1 b", "", "1.1 c"}},
		{name: "deleted field has no values", field: "Host", want: nil},
		{name: "absent field has no values", field: "Accept", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := values(&h, tt.field); !slices.Equal(got, tt.want) {
				t.Errorf("Values(%q) = %q, want %q", tt.field, got, tt.want)
			}
		})
	}

	t.Run("stops when fn returns false", func(t *testing.T) {
		var got []string
		h.Values("Via", func(v string) bool {
			got = append(got, v)
			return len(got) < 2
		})
		if want := []string{"1.1 a", "1.1 b"}; !slices.Equal(got, want) {
			t.Errorf("Values saw %q, want %q", got, want)
		}
	})
}

func TestHeaderRangeStopsWhenFnReturnsFalse(t *testing.T) {
	var h Header
	h.Add("A", "1")
	h.Add("B", "2")
	h.Add("C", "3")
	var seen []string
	h.Range(func(name, _ string) bool {
		seen = append(seen, name)
		return name != "B"
	})
	if want := []string{"A", "B"}; !slices.Equal(seen, want) {
		t.Errorf("Range visited %q, want %q", seen, want)
	}
}

func TestHeaderAddBytesCopies(t *testing.T) {
	// An engine passes slices of its read buffer and then reuses the buffer:
	// the header must hold its own copy.
	name := []byte("X-Model")
	value := []byte("llama")
	var h Header
	h.AddBytes(name, value)
	copy(name, "Y-Xxxxx")
	copy(value, "zzzzz")

	if v, ok := h.Get("x-model"); v != "llama" || !ok {
		t.Errorf("Get after the source changed = %q, %v; want \"llama\", true", v, ok)
	}
	if got, want := fields(&h), []pair{{"X-Model", "llama"}}; !slices.Equal(got, want) {
		t.Errorf("Range = %q, want %q", got, want)
	}
}

func TestHeaderAddBytesEmptyValue(t *testing.T) {
	var h Header
	h.AddBytes([]byte("X-Empty"), nil)
	h.AddBytes([]byte("X-Also-Empty"), []byte{})
	for _, name := range []string{"X-Empty", "X-Also-Empty"} {
		if v, ok := h.Get(name); v != "" || !ok {
			t.Errorf("Get(%q) = %q, %v; want \"\", true", name, v, ok)
		}
	}
}

func TestHeaderValuesSurviveGrowth(t *testing.T) {
	// Fields are addressed by offset, so the buffer may move as it grows
	// without corrupting earlier fields.
	var h Header
	h.Add("X-First", "one")
	for i := range 200 {
		h.Add("X-Filler", string(rune('a'+i%26))+"0123456789abcdef")
	}
	if v, _ := h.Get("X-First"); v != "one" {
		t.Errorf("X-First after growth = %q, want %q", v, "one")
	}
	if h.Len() != 201 {
		t.Errorf("Len() = %d, want 201", h.Len())
	}
}

func TestHeaderResetRefillAllocatesNothing(t *testing.T) {
	var h Header
	fill := func() {
		h.Reset()
		forEachHeader(rawHeaders, h.AddBytes)
		h.Set("X-Forwarded-Proto", "https")
		h.Del("Authorization")
	}
	fill() // warm up: the buffers reach their working size
	allocs := testing.AllocsPerRun(100, func() {
		fill()
		if _, ok := h.Get("traceparent"); !ok {
			t.Fatal("lost a header")
		}
	})
	if allocs != 0 {
		t.Errorf("reset and refill allocated %v times per run, want 0", allocs)
	}
	if h.Has("Authorization") {
		t.Error("Authorization still present after Del")
	}
}

func TestEqualFold(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{name: "identical", a: "Host", b: "Host", want: true},
		{name: "different case", a: "content-LENGTH", b: "Content-Length", want: true},
		{name: "both empty", a: "", b: "", want: true},
		{name: "different length", a: "Host", b: "Hosts", want: false},
		{name: "different letter", a: "Host", b: "Hist", want: false},
		{name: "digits are not letters", a: "X-1", b: "X-Q", want: false},
		{name: "'@' and '`' differ only in the case bit but are not letters", a: "@", b: "`", want: false},
		{name: "non-ASCII bytes compare exactly", a: "é", b: "É", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := EqualFold(tt.a, tt.b); got != tt.want {
				t.Errorf("EqualFold(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := EqualFold(tt.b, tt.a); got != tt.want {
				t.Errorf("EqualFold(%q, %q) = %v, want %v (not symmetric)", tt.b, tt.a, got, tt.want)
			}
		})
	}
}
