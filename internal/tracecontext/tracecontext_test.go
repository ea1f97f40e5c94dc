package tracecontext

import (
	"encoding/hex"
	"strings"
	"testing"
)

type headers map[string]string

func (h headers) Get(name string) (string, bool) {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

func hexID(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

const (
	tid  = "4bf92f3577b34da6a3ce929d0e0e4736"
	sid  = "00f067aa0ba902b7"
	tp01 = "00-" + tid + "-" + sid + "-01"
)

func TestExtract(t *testing.T) {
	tests := []struct {
		name    string
		h       headers
		w3c, b3 bool
		found   bool
		from    Format
		trace   string // expected trace id when found
		parent  string
		sampled bool
		decided bool
		state   string
	}{
		{name: "w3c sampled", h: headers{"traceparent": tp01, "tracestate": "vendor=x"}, w3c: true, found: true, from: W3C, trace: tid, parent: sid, sampled: true, decided: true, state: "vendor=x"},
		{name: "w3c not sampled", h: headers{"traceparent": "00-" + tid + "-" + sid + "-00"}, w3c: true, found: true, from: W3C, trace: tid, parent: sid, decided: true},
		{name: "w3c future version with extra fields", h: headers{"traceparent": "01-" + tid + "-" + sid + "-01-extra"}, w3c: true, found: true, from: W3C, trace: tid, parent: sid, sampled: true, decided: true},
		{name: "w3c version 00 with extra fields is invalid", h: headers{"traceparent": tp01 + "-extra"}, w3c: true},
		{name: "w3c version ff is invalid", h: headers{"traceparent": "ff-" + tid + "-" + sid + "-01"}, w3c: true},
		{name: "w3c uppercase hex is invalid", h: headers{"traceparent": "00-" + strings.ToUpper(tid) + "-" + sid + "-01"}, w3c: true},
		{name: "w3c zero trace id is invalid", h: headers{"traceparent": "00-" + strings.Repeat("0", 32) + "-" + sid + "-01"}, w3c: true},
		{name: "w3c zero span id is invalid", h: headers{"traceparent": "00-" + tid + "-" + strings.Repeat("0", 16) + "-01"}, w3c: true},
		{name: "w3c truncated", h: headers{"traceparent": tp01[:40]}, w3c: true},
		{name: "w3c ignored when not enabled", h: headers{"traceparent": tp01}, b3: true},
		{name: "b3 single sampled", h: headers{"b3": tid + "-" + sid + "-1"}, b3: true, found: true, from: B3Single, trace: tid, parent: sid, sampled: true, decided: true},
		{name: "b3 single debug", h: headers{"b3": tid + "-" + sid + "-d-" + sid}, b3: true, found: true, from: B3Single, trace: tid, parent: sid, sampled: true, decided: true},
		{name: "b3 single deferred decision", h: headers{"b3": tid + "-" + sid}, b3: true, found: true, from: B3Single, trace: tid, parent: sid},
		{name: "b3 single 64-bit trace id", h: headers{"b3": "a3ce929d0e0e4736-" + sid + "-0"}, b3: true, found: true, from: B3Single, trace: "0000000000000000a3ce929d0e0e4736", parent: sid, decided: true},
		{name: "b3 decision only is not a context", h: headers{"b3": "1"}, b3: true},
		{name: "b3 multi", h: headers{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-Sampled": "1"}, b3: true, found: true, from: B3Multi, trace: tid, parent: sid, sampled: true, decided: true},
		{name: "b3 multi debug flag", h: headers{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-Flags": "1"}, b3: true, found: true, from: B3Multi, trace: tid, parent: sid, sampled: true, decided: true},
		{name: "b3 multi bad sampled value", h: headers{"X-B3-TraceId": tid, "X-B3-SpanId": sid, "X-B3-Sampled": "yes"}, b3: true},
		{name: "w3c wins over b3", h: headers{"traceparent": tp01, "b3": "a3ce929d0e0e4736a3ce929d0e0e4736-" + sid + "-0"}, w3c: true, b3: true, found: true, from: W3C, trace: tid, parent: sid, sampled: true, decided: true},
		{name: "bad w3c falls back to b3", h: headers{"traceparent": "garbage", "b3": tid + "-" + sid + "-1"}, w3c: true, b3: true, found: true, from: B3Single, trace: tid, parent: sid, sampled: true, decided: true},
		{name: "nothing", h: headers{}, w3c: true, b3: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Context
			found := Extract(tc.h, tc.w3c, tc.b3, &c)
			if found != tc.found {
				t.Fatalf("found = %v, want %v", found, tc.found)
			}
			if c.SpanID == ([8]byte{}) || c.TraceID == ([16]byte{}) {
				t.Fatal("span or trace id not set")
			}
			if !found {
				if c.From != None || c.ParentID != ([8]byte{}) || c.Decided {
					t.Errorf("new trace carries client state: %+v", c)
				}
				return
			}
			if got := hex.EncodeToString(c.TraceID[:]); got != tc.trace {
				t.Errorf("trace id %s, want %s", got, tc.trace)
			}
			if got := hex.EncodeToString(c.ParentID[:]); got != tc.parent {
				t.Errorf("parent %s, want %s", got, tc.parent)
			}
			if c.From != tc.from || c.Sampled() != tc.sampled || c.Decided != tc.decided || c.State != tc.state {
				t.Errorf("from %v sampled %v decided %v state %q; want %v %v %v %q", c.From, c.Sampled(), c.Decided, c.State, tc.from, tc.sampled, tc.decided, tc.state)
			}
			if c.SpanID == c.ParentID {
				t.Error("penstock's span id equals the client's")
			}
		})
	}
}

func TestAppend(t *testing.T) {
	var c Context
	copy(c.TraceID[:], hexID(tid))
	c.Flags = FlagSampled
	span := [8]byte{1, 2, 3, 4, 5, 6, 7, 8}
	if got := string(c.AppendTraceparent(nil, span)); got != "00-"+tid+"-0102030405060708-01" {
		t.Errorf("traceparent %s", got)
	}
	if got := string(c.AppendB3(nil, span)); got != tid+"-0102030405060708-1" {
		t.Errorf("b3 %s", got)
	}
	// Round trip through Extract.
	var back Context
	if !Extract(headers{"traceparent": string(c.AppendTraceparent(nil, span))}, true, false, &back) || back.ParentID != span || back.TraceID != c.TraceID {
		t.Errorf("round trip lost ids: %+v", back)
	}
}

func TestDecide(t *testing.T) {
	t.Run("client decision kept", func(t *testing.T) {
		var c Context
		Extract(headers{"traceparent": "00-" + tid + "-" + sid + "-00"}, true, false, &c)
		c.Decide(1)
		if c.Sampled() {
			t.Error("ratio overrode the client's decision")
		}
	})
	t.Run("new traces follow the ratio", func(t *testing.T) {
		kept := 0
		for range 20000 {
			var c Context
			Extract(headers{}, true, true, &c)
			c.Decide(0.25)
			if c.Sampled() != SampledByRatio(c.TraceID, 0.25) {
				t.Fatal("Decide disagrees with SampledByRatio")
			}
			if c.Sampled() {
				kept++
			}
		}
		if kept < 4500 || kept > 5500 {
			t.Errorf("kept %d of 20000 at ratio 0.25", kept)
		}
	})
	t.Run("ratio bounds", func(t *testing.T) {
		id := NewTraceID()
		if !SampledByRatio(id, 1) || SampledByRatio(id, 0) {
			t.Error("ratio 1 must keep and 0 must drop")
		}
	})
}

func TestKeepByKeyIsConsistent(t *testing.T) {
	kept := 0
	for i := range 10000 {
		k := "user-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + hex.EncodeToString([]byte{byte(i), byte(i >> 8)})
		a, b := KeepByKey(k, 10), KeepByKey(k, 10)
		if a != b {
			t.Fatal("same key, different decisions")
		}
		if a {
			kept++
		}
	}
	if kept < 800 || kept > 1200 {
		t.Errorf("kept %d of 10000 at 10%%", kept)
	}
}

func TestExtractDoesNotAllocate(t *testing.T) {
	h := headers{"traceparent": tp01, "tracestate": "a=b"}
	var c Context
	var buf [64]byte
	if n := testing.AllocsPerRun(100, func() {
		Extract(h, true, true, &c)
		c.Decide(0.5)
		c.AppendTraceparent(buf[:0], c.SpanID)
	}); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// FuzzExtract feeds arbitrary header values to the parsers: they must never
// panic, and a context they accept must write back as a valid traceparent.
func FuzzExtract(f *testing.F) {
	f.Add(tp01, "", "", "")
	f.Add("01-"+tid+"-"+sid+"-01-x", "", "", "")
	f.Add("", tid+"-"+sid+"-1-"+sid, "", "")
	f.Add("", "", tid, sid)
	f.Add("00-", "-", "x", "y")
	f.Fuzz(func(t *testing.T, tp, b3, xtid, xsid string) {
		var c Context
		found := Extract(headers{"traceparent": tp, "b3": b3, "X-B3-TraceId": xtid, "X-B3-SpanId": xsid}, true, true, &c)
		out := string(c.AppendTraceparent(nil, c.SpanID))
		var back Context
		if !Extract(headers{"traceparent": out}, true, false, &back) {
			t.Fatalf("wrote an unreadable traceparent %q (found=%v)", out, found)
		}
	})
}
