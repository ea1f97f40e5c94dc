package loadtest

import (
	"bytes"
	"strings"
	"testing"
	"testing/iotest"
)

// parse reads the responses of stream, as the HTTP/1.1 client would after
// sending requests on one connection.
func parse(stream string, head bool, n int) (statuses []int, h *h1Conn, err error) {
	h = &h1Conn{rd: strings.NewReader(stream), buf: make([]byte, h1BufSize)}
	for range n {
		var out outcome
		if err = h.readResponse(head, &out); err != nil {
			return statuses, h, err
		}
		statuses = append(statuses, out.status)
	}
	return statuses, h, nil
}

func TestH1Responses(t *testing.T) {
	cases := []struct {
		name     string
		stream   string
		head     bool
		want     []int
		dead     bool   // the connection must not be reused
		err      string // kind of error expected, if any
		leftover string // bytes that must remain unread
	}{
		{name: "content-length", stream: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", want: []int{200}},
		{name: "two responses in a row", stream: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n", want: []int{200, 404}},
		{name: "chunked with extensions and trailers", stream: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", want: []int{200, 201}},
		{name: "chunked wins over content-length", stream: "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", want: []int{200}},
		{name: "connection close", stream: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", want: []int{200}, dead: true},
		{name: "HTTP/1.0 closes", stream: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", want: []int{200}, dead: true},
		{name: "HTTP/1.0 keep-alive", stream: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", want: []int{200}},
		{name: "HEAD has no body", stream: "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", head: true, want: []int{200, 200}},
		{name: "204 has no body", stream: "HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n", want: []int{204}},
		{name: "interim 100 is skipped", stream: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", want: []int{200}},
		{name: "body to end of connection", stream: "HTTP/1.1 200 OK\r\n\r\nall of this", want: []int{200}, dead: true},
		{name: "bare LF line endings", stream: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", want: []int{200}},
		{name: "bytes after the body stay", stream: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", want: []int{200}, leftover: "EXTRA"},
		{name: "malformed status", stream: "HTTP/1.1 2x0 OK\r\n\r\n", err: "protocol"},
		{name: "not HTTP", stream: "SSH-2.0-OpenSSH\r\n\r\n", err: "protocol"},
		{name: "header without colon", stream: "HTTP/1.1 200 OK\r\nbogus\r\n\r\n", err: "protocol"},
		{name: "bad content-length", stream: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", err: "protocol"},
		{name: "bad chunk size", stream: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", err: "protocol"},
		{name: "truncated body", stream: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", err: "closed"},
		{name: "head too large", stream: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", h1BufSize) + "\r\n\r\n", err: "protocol"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := max(len(tc.want), 1)
			got, h, err := parse(tc.stream, tc.head, n)
			if tc.err != "" {
				if err == nil || classify(err).String() != tc.err {
					t.Fatalf("err = %v, want a %s error", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v (statuses %v)", err, got)
			}
			if !slicesEqual(got, tc.want) {
				t.Errorf("statuses %v, want %v", got, tc.want)
			}
			if h.dead != tc.dead {
				t.Errorf("dead = %v, want %v", h.dead, tc.dead)
			}
			if left := string(h.buf[h.r:h.w]); left != tc.leftover {
				t.Errorf("unread %q, want %q", left, tc.leftover)
			}
		})
	}
}

// A response read one byte at a time parses like one read at once.
func TestH1OneByteReads(t *testing.T) {
	stream := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 202 Accepted\r\nContent-Length: 3\r\n\r\nabc"
	h := &h1Conn{rd: iotest.OneByteReader(strings.NewReader(stream)), buf: make([]byte, 64)}
	for _, want := range []int{200, 202} {
		var out outcome
		if err := h.readResponse(false, &out); err != nil || out.status != want {
			t.Fatalf("status %d, err %v; want %d", out.status, err, want)
		}
	}
}

func slicesEqual(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// The response parser never panics or loops on any input, and never
// reads past what it was given.
func FuzzH1Response(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h := &h1Conn{rd: bytes.NewReader(data), buf: make([]byte, 256)}
		for range 8 {
			var out outcome
			if err := h.readResponse(false, &out); err != nil {
				return
			}
			if out.status < 100 || out.status > 999 {
				t.Fatalf("status %d accepted", out.status)
			}
			if h.n > int64(len(data)) {
				t.Fatalf("read %d bytes of %d", h.n, len(data))
			}
		}
	})
}

// Parsing a response allocates nothing.
func TestH1ParseAllocs(t *testing.T) {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}")
	r := bytes.NewReader(resp)
	h := &h1Conn{rd: r, buf: make([]byte, h1BufSize)}
	allocs := testing.AllocsPerRun(100, func() {
		r.Reset(resp)
		var out outcome
		if err := h.readResponse(false, &out); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per response, want 0", allocs)
	}
}
