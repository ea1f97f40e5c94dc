package exchange

import "unsafe"

// Header is an ordered list of header fields backed by one reusable byte
// buffer. Unlike http.Header it allocates nothing once warmed up: names and
// values are copied into buf and addressed by offsets, so Reset keeps the
// capacity for the next request. Lookups by name are ASCII case-insensitive
// (RFC 9110 §5.1). The zero value is an empty header ready to use.
type Header struct {
	fields []field
	buf    []byte
}

// field addresses one header line inside Header.buf. Offsets rather than
// slices, because appending to buf may move it.
type field struct {
	nameOff, nameLen uint32
	valOff, valLen   uint32
	deleted          bool
}

// Reset empties the header and keeps its memory for reuse.
func (h *Header) Reset() {
	h.fields = h.fields[:0]
	h.buf = h.buf[:0]
}

// Len reports the number of fields, deleted ones excluded.
func (h *Header) Len() int {
	n := 0
	for i := range h.fields {
		if !h.fields[i].deleted {
			n++
		}
	}
	return n
}

// Add appends a field. The name keeps the case it was given.
func (h *Header) Add(name, value string) {
	f := field{nameOff: uint32(len(h.buf)), nameLen: uint32(len(name))}
	h.buf = append(h.buf, name...)
	f.valOff, f.valLen = uint32(len(h.buf)), uint32(len(value))
	h.buf = append(h.buf, value...)
	h.fields = append(h.fields, f)
}

// AddBytes is Add for byte slices.
func (h *Header) AddBytes(name, value []byte) {
	h.Add(unsafe.String(unsafe.SliceData(name), len(name)), unsafe.String(unsafe.SliceData(value), len(value)))
}

// Set replaces every field named name with one field holding value.
func (h *Header) Set(name, value string) {
	h.Del(name)
	h.Add(name, value)
}

// Del removes every field named name.
func (h *Header) Del(name string) {
	for i := range h.fields {
		if !h.fields[i].deleted && equalFold(h.name(i), name) {
			h.fields[i].deleted = true
		}
	}
}

// Get returns the value of the first field named name. The string aliases the
// header's buffer: it is valid until the header is reset or modified.
func (h *Header) Get(name string) (string, bool) {
	for i := range h.fields {
		if !h.fields[i].deleted && equalFold(h.name(i), name) {
			return h.value(i), true
		}
	}
	return "", false
}

// HeaderValue is Get under the name the router's header matchers use.
func (h *Header) HeaderValue(name string) (string, bool) { return h.Get(name) }

// Has reports whether a field named name is present.
func (h *Header) Has(name string) bool {
	_, ok := h.Get(name)
	return ok
}

// Range calls fn for each field in order until fn returns false. The strings
// alias the header's buffer and must not be retained past the exchange.
func (h *Header) Range(fn func(name, value string) bool) {
	for i := range h.fields {
		if h.fields[i].deleted {
			continue
		}
		if !fn(h.name(i), h.value(i)) {
			return
		}
	}
}

// Values calls fn for the value of each field named name, in order.
func (h *Header) Values(name string, fn func(value string) bool) {
	for i := range h.fields {
		if !h.fields[i].deleted && equalFold(h.name(i), name) {
			if !fn(h.value(i)) {
				return
			}
		}
	}
}

func (h *Header) name(i int) string {
	f := &h.fields[i]
	return unsafe.String(unsafe.SliceData(h.buf[f.nameOff:]), int(f.nameLen))
}

func (h *Header) value(i int) string {
	f := &h.fields[i]
	if f.valLen == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(h.buf[f.valOff:]), int(f.valLen))
}

// equalFold is an ASCII-only case-insensitive comparison; header names are
// tokens (RFC 9110 §5.1), so Unicode folding would be both slower and wrong.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if ca == cb {
			continue
		}
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// EqualFold reports whether two header names are equal ignoring ASCII case.
func EqualFold(a, b string) bool { return equalFold(a, b) }
