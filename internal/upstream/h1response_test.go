package upstream

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// parseAll reads one response for method from raw, body included, the way
// the proxy would: head, then Read to io.EOF.
func parseAll(raw, method string) (*Response, string, error) {
	var r Response
	br := bufio.NewReaderSize(strings.NewReader(raw), 4096)
	if err := r.readHead(br, method); err != nil {
		return &r, "", err
	}
	body, err := io.ReadAll(&r)
	return &r, string(body), err
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		raw       string
		status    int
		body      string
		length    int64
		keepAlive bool
		trailer   string // "name: value" of the one trailer expected, if any
	}{
		{name: "Content-Length body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", status: 200, body: "hello", length: 5, keepAlive: true},
		{name: "bytes after the Content-Length body are not part of it", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhello", status: 200, body: "he", length: 2, keepAlive: true},
		{name: "empty reason phrase", raw: "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", status: 200, length: 0, keepAlive: true},
		{name: "no reason phrase and no space", raw: "HTTP/1.1 204\r\n\r\n", status: 204, keepAlive: true},
		{name: "bare LF line endings are accepted in the head", raw: "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", status: 200, body: "ok", length: 2, keepAlive: true},
		{name: "chunked body", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", status: 200, body: "hello world", length: -1, keepAlive: true},
		{name: "chunked with extensions and uppercase hex", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA;name=v\r\n0123456789\r\n0 ;last\r\n\r\n", status: 200, body: "0123456789", length: -1, keepAlive: true},
		{name: "chunked with trailers", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n", status: 200, body: "ok", length: -1, keepAlive: true, trailer: "X-Sum: 42"},
		{name: "close-delimited body", raw: "HTTP/1.1 200 OK\r\n\r\nuntil the end", status: 200, body: "until the end", length: -1, keepAlive: false},
		{name: "Connection: close", raw: "HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x", length: 1, keepAlive: false},
		{name: "HTTP/1.0 is not kept alive", raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x", length: 1, keepAlive: false},
		{name: "HEAD has no body whatever Content-Length says", method: "HEAD", raw: "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", status: 200, length: 0, keepAlive: true},
		{name: "304 has no body", raw: "HTTP/1.1 304 Not Modified\r\nContent-Length: 42\r\n\r\n", status: 304, keepAlive: true},
		{name: "204 has no body", raw: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, keepAlive: true},
		{name: "repeated identical Content-Length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2, 2\r\n\r\nok", status: 200, body: "ok", length: 2, keepAlive: true},
		{name: "103 is returned on its own", raw: "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", status: 103, keepAlive: true},
		{name: "101 is never kept alive", raw: "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", status: 101, keepAlive: false},
		{name: "obs-text in a value is kept", raw: "HTTP/1.1 200 OK\r\nX-Name: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n", status: 200, keepAlive: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = "GET"
			}
			r, body, err := parseAll(tt.raw, method)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if r.Status != tt.status || body != tt.body || r.ContentLength != tt.length || r.keepAlive != tt.keepAlive {
				t.Errorf("got status %d body %q length %d keep-alive %v; want %d %q %d %v",
					r.Status, body, r.ContentLength, r.keepAlive, tt.status, tt.body, tt.length, tt.keepAlive)
			}
			if tt.trailer != "" {
				name, value, _ := strings.Cut(tt.trailer, ": ")
				if got, _ := r.Trailer.Get(name); got != value {
					t.Errorf("trailer %s = %q, want %q", name, got, value)
				}
			}
		})
	}
}

func TestParseResponseRejects(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want error
	}{
		{name: "Content-Length and Transfer-Encoding", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: errCLAndTE},
		{name: "Transfer-Encoding before Content-Length", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", want: errCLAndTE},
		{name: "conflicting Content-Length fields", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", want: errBadContentLength},
		{name: "conflicting Content-Length list", raw: "HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabcd", want: errBadContentLength},
		{name: "signed Content-Length", raw: "HTTP/1.1 200 OK\r\nContent-Length: +3\r\n\r\nabc", want: errBadContentLength},
		{name: "negative Content-Length", raw: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", want: errBadContentLength},
		{name: "hex Content-Length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n", want: errBadContentLength},
		{name: "empty Content-Length", raw: "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n", want: errBadContentLength},
		{name: "overflowing Content-Length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", want: errBadContentLength},
		{name: "Transfer-Encoding other than chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", want: errBadTE},
		{name: "chunked not last", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", want: errBadTE},
		{name: "chunked twice", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", want: errBadTE},
		{name: "misspelt chunked", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n", want: errBadTE},
		{name: "empty Transfer-Encoding", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n", want: errBadTE},
		{name: "Transfer-Encoding in HTTP/1.0", raw: "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", want: errTEInHTTP10},
		{name: "obs-fold", raw: "HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n", want: errObsFold},
		{name: "obs-fold with a tab", raw: "HTTP/1.1 200 OK\r\nX-A: 1\r\n\t2\r\n\r\n", want: errObsFold},
		{name: "bare CR in a value", raw: "HTTP/1.1 200 OK\r\nX-A: 1\r2\r\nContent-Length: 0\r\n\r\n", want: errBareCR},
		{name: "bare CR as a line end", raw: "HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n", want: errBareCR},
		{name: "whitespace before the colon", raw: "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", want: errBadFieldName},
		{name: "empty field name", raw: "HTTP/1.1 200 OK\r\n: x\r\n\r\n", want: errBadFieldName},
		{name: "no colon", raw: "HTTP/1.1 200 OK\r\nContent-Length\r\n\r\n", want: errBadFieldName},
		{name: "NUL in a value", raw: "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n\r\n", want: errBadFieldValue},
		{name: "HTTP/2 status line", raw: "HTTP/2 200 OK\r\n\r\n", want: errBadStatusLine},
		{name: "HTTP/1.2", raw: "HTTP/1.2 200 OK\r\n\r\n", want: errBadStatusLine},
		{name: "two-digit status", raw: "HTTP/1.1 20 OK\r\n\r\n", want: errBadStatusLine},
		{name: "status below 100", raw: "HTTP/1.1 099 Odd\r\n\r\n", want: errBadStatusLine},
		{name: "four-digit status", raw: "HTTP/1.1 2000 OK\r\n\r\n", want: errBadStatusLine},
		{name: "lowercase protocol", raw: "http/1.1 200 OK\r\n\r\n", want: errBadStatusLine},
		{name: "control character in the reason", raw: "HTTP/1.1 200 O\x01K\r\n\r\n", want: errBadStatusLine},
		{name: "no status line at all", raw: "hello\r\n\r\n", want: errBadStatusLine},
		{name: "head cut short", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n", want: errTruncatedHead},
		{name: "status line cut short", raw: "HTTP/1.1 200 O", want: errTruncatedHead},
		{name: "nothing received", raw: "", want: io.EOF},
		{name: "too many fields", raw: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", maxResponseFields+1) + "\r\n", want: errTooManyFields},
		{name: "a head larger than the limit", raw: "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Long: "+strings.Repeat("a", 1000)+"\r\n", 70) + "\r\n", want: errHeadTooLarge},
		{name: "a line longer than the read buffer", raw: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", want: errHeadTooLarge},
		{name: "body shorter than Content-Length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", want: errTruncatedBody},
		{name: "chunk size not hex", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", want: errBadChunkSize},
		{name: "chunk size with a sign", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n", want: errBadChunkSize},
		{name: "chunk size with a 0x prefix", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", want: errBadChunkSize},
		{name: "empty chunk size", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\nhello\r\n0\r\n\r\n", want: errBadChunkSize},
		{name: "overflowing chunk size", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", want: errBadChunkSize},
		{name: "chunk size line ended by a bare LF", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", want: errBadChunkSize},
		{name: "garbage after the chunk size", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n0\r\n\r\n", want: errBadChunkSize},
		{name: "control character in a chunk extension", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a\x00\r\nhello\r\n0\r\n\r\n", want: errBadChunkSize},
		{name: "chunk data longer than its size", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", want: errBadChunkEnd},
		{name: "chunk data followed by a bare LF", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n", want: errBadChunkEnd},
		{name: "chunked body cut short", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", want: errTruncatedBody},
		{name: "chunked body without the last chunk", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", want: errTruncatedBody},
		{name: "trailer section cut short", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\r\n", want: errTruncatedBody},
		{name: "obs-fold in a trailer", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Sum: 1\r\n 2\r\n\r\n", want: errObsFold},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseAll(tt.raw, "GET")
			if !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

// checkResponse parses data as one response and its body; it must never
// panic, and whatever it accepts must be self-consistent.
func checkResponse(t *testing.T, data []byte, method string) {
	var r Response
	br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	if err := r.readHead(br, method); err != nil {
		return
	}
	if r.Status < 100 || r.Status > 999 {
		t.Fatalf("accepted status %d", r.Status)
	}
	hasCL, hasTE := r.Header.Has("Content-Length"), r.Header.Has("Transfer-Encoding")
	if hasCL && hasTE {
		t.Fatalf("accepted both Content-Length and Transfer-Encoding")
	}
	r.Header.Range(func(name, value string) bool {
		if strings.ContainsAny(name, " \t\r\n:") || strings.ContainsAny(value, "\r\n\x00") {
			t.Fatalf("accepted field %q: %q", name, value)
		}
		return true
	})
	buf := make([]byte, 7)
	var n int64
	var body []byte
	for {
		m, err := r.Read(buf)
		n += int64(m)
		body = append(body, buf[:m]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
		if m == 0 {
			t.Fatal("Read returned 0 bytes and no error")
		}
	}
	// Differential check: a complete final response that net/http also
	// reads must have the same status and body there. A framing
	// disagreement between two HTTP implementations is what smuggling is
	// made of.
	if r.Status >= 200 && method == "GET" {
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), nil)
		if err == nil {
			theirs, err := io.ReadAll(resp.Body)
			if err == nil && (resp.StatusCode != r.Status || !bytes.Equal(theirs, body)) {
				t.Fatalf("net/http reads %d %q, penstock %d %q", resp.StatusCode, theirs, r.Status, body)
			}
		}
	}
	if r.ContentLength >= 0 && r.kind == bodyNone && n != r.ContentLength && method != "HEAD" && r.Status >= 200 && r.Status != 204 && r.Status != 304 {
		t.Fatalf("read %d body bytes, Content-Length %d", n, r.ContentLength)
	}
}

func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nclose-delimited",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		checkResponse(t, data, method)
	})
}

// FuzzChunkedResponse fuzzes the chunked body decoder behind a fixed head.
func FuzzChunkedResponse(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n0\r\nTrailer: v\r\n\r\n",
		"ffffffffffffffff\r\n",
		"5\nhello\n0\n\n",
		"0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		raw := append([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), body...)
		var r Response
		br := bufio.NewReaderSize(bytes.NewReader(raw), 4096)
		if err := r.readHead(br, "GET"); err != nil {
			t.Fatalf("fixed head rejected: %v", err)
		}
		got, err := io.ReadAll(&r)
		if err != nil {
			return
		}
		// Whatever was accepted must re-encode to a chunked body the
		// decoder reads back to the same bytes.
		var enc bytes.Buffer
		if len(got) > 0 {
			enc.WriteString(strings.ToUpper(strings.TrimLeft(string(appendHex(nil, len(got))), "0")))
			enc.WriteString("\r\n")
			enc.Write(got)
			enc.WriteString("\r\n")
		}
		enc.WriteString("0\r\n\r\n")
		var r2 Response
		br2 := bufio.NewReader(io.MultiReader(strings.NewReader("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), &enc))
		if err := r2.readHead(br2, "GET"); err != nil {
			t.Fatal(err)
		}
		again, err := io.ReadAll(&r2)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("round trip: %q, %v; want %q", again, err, got)
		}
	})
}

func appendHex(b []byte, n int) []byte {
	const digits = "0123456789abcdef"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[n&15]
		n >>= 4
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}
