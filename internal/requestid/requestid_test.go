package requestid

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

var generatedID = regexp.MustCompile(`^[0-9a-f]{32}$`)

// TestAssignRequestIDKeepsValidClientIDs: a trusted proxy's well-formed id
// is kept.
func TestAssignRequestIDKeepsValidClientIDs(t *testing.T) {
	tests := []struct {
		name string
		id   string
	}{
		{name: "single character", id: "a"},
		{name: "hex", id: "7d9c1f0e2b3a4c5d"},
		{name: "uuid", id: "123e4567-e89b-12d3-a456-426614174000"},
		{name: "every allowed punctuation", id: "A.b_c-D"},
		{name: "mixed case kept as sent", id: "ReqABC"},
		{name: "exactly 64 characters", id: strings.Repeat("x", 64)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, rec := newExchange(t, "GET")
			x.State.TrustedPeer = true
			x.Req.Header.Add("x-request-id", tt.id)
			Assign(x)

			if x.State.RequestID != tt.id {
				t.Errorf("State.RequestID = %q, want the client's %q", x.State.RequestID, tt.id)
			}
			if got := headerValues(&x.Req.Header, Header); !slices.Equal(got, []string{tt.id}) {
				t.Errorf("request X-Request-Id = %q, want [%q] untouched", got, tt.id)
			}
			if got := headerValues(&rec.Hdr, Header); !slices.Equal(got, []string{tt.id}) {
				t.Errorf("response X-Request-Id = %q, want [%q]", got, tt.id)
			}
		})
	}
}

func TestAssignRequestIDReplacesInvalidClientIDs(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		present bool
	}{
		{name: "absent", present: false},
		{name: "empty", id: "", present: true},
		{name: "65 characters is too long", id: strings.Repeat("x", 65), present: true},
		{name: "double quotes would break the JSON error body", id: `abc"def`, present: true},
		{name: "backslash", id: `abc\def`, present: true},
		{name: "space", id: "abc def", present: true},
		{name: "slash", id: "abc/def", present: true},
		{name: "colon", id: "abc:def", present: true},
		{name: "unicode letter", id: "réquest", present: true},
		{name: "control character", id: "abc\x01", present: true},
		{name: "markup", id: "<script>", present: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, rec := newExchange(t, "GET")
			if tt.present {
				x.Req.Header.Add(Header, tt.id)
			}
			Assign(x)

			id := x.State.RequestID
			if !generatedID.MatchString(id) {
				t.Fatalf("State.RequestID = %q, want 32 lowercase hex digits", id)
			}
			if got := headerValues(&x.Req.Header, Header); !slices.Equal(got, []string{id}) {
				t.Errorf("request X-Request-Id = %q, want only the generated [%q]", got, id)
			}
			if got := headerValues(&rec.Hdr, Header); !slices.Equal(got, []string{id}) {
				t.Errorf("response X-Request-Id = %q, want [%q]", got, id)
			}
		})
	}
}

// TestAssignRequestIDReplacesUntrustedClientIDs: like X-Forwarded-For, an
// id from a client that is not a trusted proxy is replaced, however well
// formed (issue 13, finding 8).
func TestAssignRequestIDReplacesUntrustedClientIDs(t *testing.T) {
	x, rec := newExchange(t, "GET")
	x.Req.Header.Add(Header, "7d9c1f0e2b3a4c5d")
	Assign(x)
	id := x.State.RequestID
	if !generatedID.MatchString(id) {
		t.Fatalf("State.RequestID = %q, want a generated id", id)
	}
	if got := headerValues(&x.Req.Header, Header); !slices.Equal(got, []string{id}) {
		t.Errorf("request X-Request-Id = %q, want only the generated [%q]", got, id)
	}
	if got := headerValues(&rec.Hdr, Header); !slices.Equal(got, []string{id}) {
		t.Errorf("response X-Request-Id = %q, want [%q]", got, id)
	}
}

func TestAssignRequestIDGeneratesDistinctIDs(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		x, _ := newExchange(t, "GET")
		Assign(x)
		id := strings.Clone(x.State.RequestID)
		if seen[id] {
			t.Fatalf("id %q generated twice", id)
		}
		seen[id] = true
	}
}

func TestAssignRequestIDReplacesExistingResponseID(t *testing.T) {
	// A response header left over from earlier in the pipeline must not
	// produce two ids.
	x, rec := newExchange(t, "GET")
	rec.Hdr.Add(Header, "stale")
	x.State.TrustedPeer = true
	x.Req.Header.Add(Header, "fresh")
	Assign(x)
	if got := headerValues(&rec.Hdr, Header); !slices.Equal(got, []string{"fresh"}) {
		t.Errorf("response X-Request-Id = %q, want [\"fresh\"]", got)
	}
}

func TestAssignRequestIDGeneratedAllocatesNothing(t *testing.T) {
	x, rec := newExchange(t, "GET")
	x.Req.Header.Add("Host", "example.com")
	Assign(x) // warm up the header buffers
	allocs := testing.AllocsPerRun(100, func() {
		x.Req.Header.Reset()
		x.Req.Header.Add("Host", "example.com")
		rec.Reset()
		Assign(x)
	})
	if allocs != 0 {
		t.Errorf("AssignRequestID with a generated id allocated %v times per run, want 0", allocs)
	}
	if !generatedID.MatchString(x.State.RequestID) {
		t.Errorf("State.RequestID = %q, want a generated id", x.State.RequestID)
	}
}

func TestAssignRequestIDClientAllocatesNothing(t *testing.T) {
	x, rec := newExchange(t, "GET")
	x.Req.Header.Add(Header, "client-id-1")
	Assign(x)
	allocs := testing.AllocsPerRun(100, func() {
		rec.Reset()
		Assign(x)
	})
	if allocs != 0 {
		t.Errorf("AssignRequestID with a client id allocated %v times per run, want 0", allocs)
	}
}
