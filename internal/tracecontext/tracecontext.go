// Package tracecontext reads, creates and writes the trace context of a
// request: W3C Trace Context (traceparent, tracestate) and B3, without
// allocating. It also holds the one sampling function that both trace
// sampling and access log sampling use, so that a trace that is sampled has
// every one of its log lines kept, and the other way round.
//
// It is written by hand rather than taken from the OpenTelemetry SDK's
// propagators because those work on context.Context and map carriers and
// allocate per request, and the gateway needs the context (for logs and
// upstream injection) even when no span is recorded.
package tracecontext

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
)

// Format is where a trace context came from.
type Format uint8

// Formats a context can be read from.
const (
	None     Format = iota // penstock started the trace
	W3C                    // traceparent (W3C Trace Context Level 1)
	B3Single               // b3: {trace}-{span}-{sampled}
	B3Multi                // X-B3-TraceId, X-B3-SpanId, X-B3-Sampled
)

// FlagSampled is the sampled bit of the trace flags (W3C §3.2.2.5).
const FlagSampled = 0x01

// Context is the trace context of one request.
type Context struct {
	// TraceID is the 128-bit trace id, from the client or new.
	TraceID [16]byte
	// ParentID is the client's span id; zero when penstock started the trace.
	ParentID [8]byte
	// SpanID is penstock's own (server) span id for the request.
	SpanID [8]byte
	// Flags are the W3C trace flags; bit 0 is "sampled".
	Flags byte
	// State is the client's tracestate, passed on unchanged. It aliases the
	// request header and is valid for the exchange only.
	State string
	// From records which format the context was read from, None if new.
	From Format
	// Decided is set when the client's context carried a sampling decision
	// (W3C always does; B3 may leave it to the receiver).
	Decided bool
}

// Sampled reports the sampling decision.
func (c *Context) Sampled() bool { return c.Flags&FlagSampled != 0 }

// Reset zeroes c.
func (c *Context) Reset() { *c = Context{} }

// Getter reads a request header by name (case-insensitive).
type Getter interface {
	Get(name string) (string, bool)
}

// Extract reads the first trace context found in h, trying W3C then B3 as
// allowed by w3c and b3. It always sets a new SpanID. If no valid context is
// found it starts a new trace (random TraceID) and returns false.
// Malformed headers are ignored, as W3C §3.2.2 requires (a fresh trace is
// started rather than the request refused).
func Extract(h Getter, w3c, b3 bool, c *Context) bool {
	c.Reset()
	found := false
	if w3c {
		if tp, ok := h.Get("Traceparent"); ok && parseTraceparent(tp, c) {
			c.From, c.Decided, found = W3C, true, true
			if ts, ok := h.Get("Tracestate"); ok {
				c.State = ts
			}
		}
	}
	if !found && b3 {
		if v, ok := h.Get("B3"); ok && parseB3Single(v, c) {
			c.From, found = B3Single, true
		} else if parseB3Multi(h, c) {
			c.From, found = B3Multi, true
		}
	}
	if !found {
		c.Reset()
		c.TraceID = NewTraceID()
	}
	c.SpanID = NewSpanID()
	return found
}

// Decide sets the sampled flag of a context whose client did not decide:
// the trace is sampled when SampledByRatio(TraceID, ratio) holds (the
// parent-based rule: a client's decision is kept).
func (c *Context) Decide(ratio float64) {
	if c.Decided {
		return
	}
	if SampledByRatio(c.TraceID, ratio) {
		c.Flags |= FlagSampled
	} else {
		c.Flags &^= FlagSampled
	}
}

// SampledByRatio is the deterministic sampling decision shared by traces and
// access logs: it keeps a trace when the low 63 bits of its id's last eight
// bytes fall under ratio × 2^63 — the rule of OpenTelemetry's
// TraceIDRatioBased sampler, so collectors and SDKs that use it agree with
// penstock on which traces are kept.
func SampledByRatio(id [16]byte, ratio float64) bool {
	switch {
	case ratio >= 1:
		return true
	case ratio <= 0:
		return false
	}
	bound := uint64(ratio * (1 << 63))
	return binary.BigEndian.Uint64(id[8:16])>>1 < bound
}

// KeepByKey decides a percentage (0–100) by hashing key (FNV-1a, 64 bit),
// so the same key is always kept or always dropped.
func KeepByKey(key string, percent float64) bool {
	switch {
	case percent >= 100:
		return true
	case percent <= 0:
		return false
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= 1099511628211
	}
	return float64(h>>11)/float64(1<<53) < percent/100
}

// NewTraceID returns a random, non-zero trace id (W3C §3.2.2.3).
func NewTraceID() [16]byte {
	var id [16]byte
	for id == ([16]byte{}) {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

// NewSpanID returns a random, non-zero span id.
func NewSpanID() [8]byte {
	var id [8]byte
	for id == ([8]byte{}) {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// AppendTraceparent appends a version-00 traceparent value for a child of
// this context whose span id is span.
func (c *Context) AppendTraceparent(dst []byte, span [8]byte) []byte {
	dst = append(dst, "00-"...)
	dst = hex.AppendEncode(dst, c.TraceID[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, span[:])
	dst = append(dst, '-', '0', '0'+c.Flags&FlagSampled)
	return dst
}

// AppendB3 appends a single-header B3 value for a child span.
func (c *Context) AppendB3(dst []byte, span [8]byte) []byte {
	dst = hex.AppendEncode(dst, c.TraceID[:])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, span[:])
	dst = append(dst, '-', '0'+c.Flags&FlagSampled)
	return dst
}

// AppendTraceID appends the trace id in lowercase hex.
func (c *Context) AppendTraceID(dst []byte) []byte { return hex.AppendEncode(dst, c.TraceID[:]) }

// AppendSpanID appends penstock's span id in lowercase hex.
func (c *Context) AppendSpanID(dst []byte) []byte { return hex.AppendEncode(dst, c.SpanID[:]) }

// parseTraceparent parses "00-<32 hex>-<16 hex>-<2 hex>" (W3C §3.2). Later
// versions are read by their first four fields (§4.3); version ff and
// all-zero ids are invalid.
func parseTraceparent(s string, c *Context) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	var ver [1]byte
	if !decodeLowerHex(ver[:], s[0:2]) || ver[0] == 0xff {
		return false
	}
	if ver[0] == 0 && len(s) != 55 {
		return false
	}
	if ver[0] > 0 && len(s) > 55 && s[55] != '-' {
		return false
	}
	var flags [1]byte
	if !decodeLowerHex(c.TraceID[:], s[3:35]) || !decodeLowerHex(c.ParentID[:], s[36:52]) || !decodeLowerHex(flags[:], s[53:55]) {
		return false
	}
	if c.TraceID == ([16]byte{}) || c.ParentID == ([8]byte{}) {
		return false
	}
	c.Flags = flags[0]
	return true
}

// parseB3Single parses "b3: {traceid}-{spanid}[-{sampled}[-{parent}]]" or a
// lone sampling decision ("0", "1", "d"), which carries no ids and is
// ignored here.
func parseB3Single(s string, c *Context) bool {
	tid, rest, ok := cut(s, '-')
	if !ok {
		return false
	}
	sid, rest, _ := cut(rest, '-')
	if !b3IDs(tid, sid, c) {
		return false
	}
	sampled, _, _ := cut(rest, '-')
	return b3Sampled(sampled, c)
}

func parseB3Multi(h Getter, c *Context) bool {
	tid, ok1 := h.Get("X-B3-Traceid")
	sid, ok2 := h.Get("X-B3-Spanid")
	if !ok1 || !ok2 || !b3IDs(tid, sid, c) {
		return false
	}
	if v, ok := h.Get("X-B3-Flags"); ok && v == "1" {
		return b3Sampled("d", c)
	}
	v, _ := h.Get("X-B3-Sampled")
	return b3Sampled(v, c)
}

// b3IDs reads a 64- or 128-bit trace id (a 64-bit one is left-padded with
// zeros, per the B3 spec) and a 64-bit span id.
func b3IDs(tid, sid string, c *Context) bool {
	c.TraceID = [16]byte{}
	switch len(tid) {
	case 32:
		if !decodeLowerHex(c.TraceID[:], tid) {
			return false
		}
	case 16:
		if !decodeLowerHex(c.TraceID[8:], tid) {
			return false
		}
	default:
		return false
	}
	if len(sid) != 16 || !decodeLowerHex(c.ParentID[:], sid) {
		return false
	}
	return c.TraceID != ([16]byte{}) && c.ParentID != ([8]byte{})
}

func b3Sampled(v string, c *Context) bool {
	switch v {
	case "1", "d", "true":
		c.Flags, c.Decided = FlagSampled, true
	case "0", "false":
		c.Flags, c.Decided = 0, true
	case "":
		c.Decided = false // the receiver decides
	default:
		return false
	}
	return true
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// decodeLowerHex decodes exactly len(dst)*2 lowercase hex digits (W3C
// requires lowercase; B3 writes lowercase too).
func decodeLowerHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
