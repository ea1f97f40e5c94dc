package server_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// malformedCase is one request, as raw bytes, and what the listener must
// do with it: the status of the first response, and whether the connection
// stays open for another request (keep) or is closed after that response.
type malformedCase struct {
	name   string
	req    string
	status int
	keep   bool
}

// badBodyStatus is the answer to a request whose body framing turns out to
// be malformed once the proxy reads it: the engines report it as
// exchange.ErrBadRequestBody, and the proxy answers the client's 400
// (issue 13, finding 3). The connection closes and the upstream sees no
// complete request.
const badBodyStatus = 400

// malformedCases is the table (issue 13, acceptance point 3). Requests that
// try to hide a second request use the path /smuggled for it; the echo
// upstream fails the test if such a request ever reaches it.
func malformedCases() []malformedCase {
	const host = "Host: t\r\n"
	get := func(extra string) string { return "GET /x/a HTTP/1.1\r\n" + host + extra + "\r\n" }
	post := func(extra, body string) string { return "POST /x/a HTTP/1.1\r\n" + host + extra + "\r\n" + body }
	smuggled := "GET /smuggled HTTP/1.1\r\n" + host + "\r\n"
	chunked := "Transfer-Encoding: chunked\r\n"

	cases := []malformedCase{
		// Well-formed requests: answered, connection kept.
		{"plain GET", get(""), 200, true},
		{"HEAD", "HEAD /x/a HTTP/1.1\r\n" + host + "\r\n", 200, true},
		{"POST with Content-Length", post("Content-Length: 5\r\n", "hello"), 200, true},
		{"POST chunked", post(chunked, "5\r\nhello\r\n0\r\n\r\n"), 200, true},
		{"chunk size with leading zeros (RFC 9112 §7.1)", post(chunked, "000000000000000000000005\r\nhello\r\n0\r\n\r\n"), 200, true},
		{"chunk extension", post(chunked, "5;name=value\r\nhello\r\n0\r\n\r\n"), 200, true},
		{"BWS before chunk extension", post(chunked, "5 ;a=b\r\nhello\r\n0\r\n\r\n"), 200, true},
		{"chunked with trailer", post(chunked, "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n"), 200, true},
		{"empty lines before the request line", "\r\n\r\n" + get(""), 200, true},
		{"bare LF line endings", "GET /x/a HTTP/1.1\nHost: t\n\n", 200, true},
		{"HTTP/1.2 answered as 1.1", "GET /x/a HTTP/1.2\r\n" + host + "\r\n", 200, true},
		{"HTTP/1.0 closes", "GET /x/a HTTP/1.0\r\n\r\n", 200, false},
		{"HTTP/1.0 keep-alive", "GET /x/a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 200, true},
		{"Connection: close", get("Connection: close\r\n"), 200, false},
		{"obs-text in a value", get("X-A: caf\xc3\xa9\r\n"), 200, true},
		{"tab in a value", get("X-A: a\tb\r\n"), 200, true},
		{"empty value", get("X-A:\r\n"), 200, true},
		{"Expect: 100-continue", post("Content-Length: 5\r\nExpect: 100-continue\r\n", "hello"), 200, true},
		{"Content-Length: 0 on GET", get("Content-Length: 0\r\n"), 200, true},
		{"repeated identical Content-Length", post("Content-Length: 5\r\nContent-Length: 5\r\n", "hello"), 200, true},
		{"Transfer-Encoding in mixed case", post("Transfer-Encoding: Chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), 200, true},
		{"lower-case method is another method", "get /x/a HTTP/1.1\r\n" + host + "\r\n", 200, true},
		{"query string", "GET /x/a?b=c&d HTTP/1.1\r\n" + host + "\r\n", 200, true},
		{"absolute-form target", "GET http://t/x/a HTTP/1.1\r\n" + host + "\r\n", 200, true},
		{"Upgrade: h2c is not followed", get("Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n"), 200, true},
		{"100 header fields", get(strings.Repeat("X-F: v\r\n", 100)), 200, true},

		// Request line.
		{"HTTP/0.9 request line", "GET /x/a\r\n", 400, false},
		{"HTTP/2.0 request line", "GET /x/a HTTP/2.0\r\n" + host + "\r\n", 505, false},
		{"HTTP/3.0 request line", "GET /x/a HTTP/3.0\r\n" + host + "\r\n", 505, false},
		{"lower-case version", "GET /x/a http/1.1\r\n" + host + "\r\n", 400, false},
		{"version without minor", "GET /x/a HTTP/1\r\n" + host + "\r\n", 400, false},
		{"version with two-digit minor", "GET /x/a HTTP/1.10\r\n" + host + "\r\n", 400, false},
		{"space after the version", "GET /x/a HTTP/1.1 \r\n" + host + "\r\n", 400, false},
		{"two spaces after the method", "GET  /x/a HTTP/1.1\r\n" + host + "\r\n", 400, false},
		{"tab as separator", "GET\t/x/a HTTP/1.1\r\n" + host + "\r\n", 400, false},
		{"no target", "GET HTTP/1.1\r\n" + host + "\r\n", 400, false},
		{"leading space", " GET /x/a HTTP/1.1\r\n" + host + "\r\n", 400, false},
		{"fragment in target", "GET /x/a#f HTTP/1.1\r\n" + host + "\r\n", 400, false},
		{"control character in target", "GET /x/\x01 HTTP/1.1\r\n" + host + "\r\n", 400, false},
		{"DEL in target", "GET /x/\x7f HTTP/1.1\r\n" + host + "\r\n", 400, false},
		{"dot segment", "GET /x/../admin HTTP/1.1\r\n" + host + "\r\n", 400, true},
		{"target without leading slash", "GET x/a HTTP/1.1\r\n" + host + "\r\n", 400, false},
		{"64 KiB target", "GET /x/" + strings.Repeat("a", 64<<10) + " HTTP/1.1\r\n" + host + "\r\n", 414, false},
		{"lines ended by bare CR", "GET /x/a HTTP/1.1\r" + "Host: t\r\r", 400, false},
		{"bare CR in the request line", "GET /x/a\rHTTP/1.1\r\n" + host + "\r\n", 400, false},

		// Host.
		{"no Host in HTTP/1.1", "GET /x/a HTTP/1.1\r\n\r\n", 400, false},
		{"two Host fields", get("Host: u\r\n"), 400, false},
		{"Host with a space", "GET /x/a HTTP/1.1\r\nHost: t u\r\n\r\n", 400, false},
		{"Host with a slash", "GET /x/a HTTP/1.1\r\nHost: t/u\r\n\r\n", 400, false},
		{"Host with userinfo", "GET /x/a HTTP/1.1\r\nHost: u@t\r\n\r\n", 400, false},

		// Field lines.
		{"space before the colon", get("X-A : 1\r\n"), 400, false},
		{"space before the colon of Host", "GET /x/a HTTP/1.1\r\nHost : t\r\n\r\n", 400, false},
		{"obs-fold", get("X-A: a\r\n b\r\n"), 400, false},
		{"obs-fold with tab", get("X-A: a\r\n\tb\r\n"), 400, false},
		{"field line without colon", get("X-A\r\n"), 400, false},
		{"empty field name", get(": v\r\n"), 400, false},
		{"bare CR in a value", get("X-A: a\rb\r\n"), 400, false},
		{"257 header fields (431)", get(strings.Repeat("X-F: v\r\n", 257)), 431, false},
		{"header section over 64 KiB (431)", get("X-A: " + strings.Repeat("v", 70<<10) + "\r\n"), 431, false},

		// Content-Length.
		{"Content-Length and Transfer-Encoding", post("Content-Length: 5\r\n"+chunked, "0\r\n\r\n"+smuggled), 400, false},
		{"Transfer-Encoding and Content-Length", post(chunked+"Content-Length: 40\r\n", "0\r\n\r\n"+smuggled), 400, false},
		{"two different Content-Lengths", post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), 400, false},
		{"Content-Length list", post("Content-Length: 5, 6\r\n", "hello!"), 400, false},
		{"negative Content-Length", post("Content-Length: -1\r\n", ""), 400, false},
		{"signed Content-Length", post("Content-Length: +5\r\n", "hello"), 400, false},
		{"hex Content-Length", post("Content-Length: 0x5\r\n", "hello"), 400, false},
		{"Content-Length with inner space", post("Content-Length: 1 0\r\n", "helloworld"), 400, false},
		{"overflowing Content-Length", post("Content-Length: 99999999999999999999\r\n", "x"), 400, false},
		{"empty Content-Length", post("Content-Length:\r\n", ""), 400, false},

		// Transfer-Encoding.
		{"chunked twice", post("Transfer-Encoding: chunked, chunked\r\n", "0\r\n\r\n"), 400, false},
		{"chunked not last", post("Transfer-Encoding: chunked, gzip\r\n", "0\r\n\r\n"), 400, false},
		{"gzip, chunked", post("Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n"), 501, false},
		{"identity", post("Transfer-Encoding: identity\r\n", ""), 400, false},
		{"xchunked", post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"+smuggled), 400, false},
		{"chunked with a parameter-like suffix", post("Transfer-Encoding: chunked;x\r\n", "0\r\n\r\n"+smuggled), 400, false},
		{"Transfer-Encoding in HTTP/1.0", "POST /x/a HTTP/1.0\r\n" + chunked + "\r\n0\r\n\r\n" + smuggled, 400, false},
		{"empty Transfer-Encoding", post("Transfer-Encoding:\r\n", "0\r\n\r\n"+smuggled), 400, false},
		{"Transfer-Encoding split over two lines", post("Transfer-Encoding: gzip\r\n"+chunked, "0\r\n\r\n"), 501, false},
		{"vertical tab before chunked", post("Transfer-Encoding: \x0bchunked\r\n", "0\r\n\r\n"+smuggled), 400, false},
		{"obs-fold into Transfer-Encoding", post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n"+smuggled), 400, false},

		// Chunked body framing: refused once the body is read.
		{"chunk size 0x5", post(chunked, "0x5\r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"chunk size +5", post(chunked, "+5\r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"chunk size -5", post(chunked, "-5\r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"chunk size fffffffffffffff5", post(chunked, "fffffffffffffff5\r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"overflowing chunk size", post(chunked, "10000000000000005\r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"chunk size followed by a space", post(chunked, "5 \r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"chunk size followed by garbage", post(chunked, "5x\r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"empty chunk size", post(chunked, "\r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"chunk data not followed by CRLF", post(chunked, "5\r\nhelloXX0\r\n\r\n"), badBodyStatus, false},
		{"chunk data longer than its size", post(chunked, "3\r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"bare LF after chunk size", post(chunked, "5\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"bare CR after chunk size", post(chunked, "5\rhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"control character in chunk extension", post(chunked, "5;a\x01\r\nhello\r\n0\r\n\r\n"), badBodyStatus, false},
		{"obs-fold in trailer", post(chunked, "5\r\nhello\r\n0\r\nX-T: 1\r\n folded\r\n\r\n"), badBodyStatus, false},
		{"trailer without colon", post(chunked, "5\r\nhello\r\n0\r\nX-T\r\n\r\n"), badBodyStatus, false},
		{"chunked body hiding a request in a bad size", post(chunked, "0x0\r\n\r\n"+smuggled), badBodyStatus, false},

		// Expectations and methods.
		{"unknown expectation", get("Expect: something\r\n"), 417, false},
		{"method with a bracket", "G[T /x/a HTTP/1.1\r\n" + host + "\r\n", 400, false},
		{"method with NUL", "G\x00T /x/a HTTP/1.1\r\n" + host + "\r\n", 400, false},
	}
	// Every character a field name may not hold (RFC 9110 §5.1: token).
	for _, c := range "\"(),/;<=>?@[\\]{}\x00\x01\x7f\x80" {
		cases = append(cases, malformedCase{fmt.Sprintf("field name with %q", c), get("X" + string(c) + "A: v\r\n"), 400, false})
	}
	// Every control character a field value may not hold.
	for _, c := range []byte{0x00, 0x01, 0x08, 0x0b, 0x0c, 0x1b, 0x1f, 0x7f} {
		cases = append(cases, malformedCase{fmt.Sprintf("field value with 0x%02x", c), get("X-A: a" + string(c) + "b\r\n"), 400, false})
	}
	return cases
}

// echoUpstream answers every request with its path and body, and fails t if
// a request hidden by a malformed one (path /smuggled) or an unexpected
// method reaches it.
func echoUpstream(t *testing.T) string {
	t.Helper()
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if strings.Contains(r.URL.Path, "smuggled") {
			mu.Lock()
			t.Errorf("a hidden request reached the upstream: %s %s", r.Method, r.URL)
			mu.Unlock()
		}
		if err != nil {
			// A body the gateway cut short: the client's fault, never a
			// request the upstream must act on.
			w.WriteHeader(499)
			return
		}
		fmt.Fprintf(w, "%s %s %q", r.Method, r.URL.Path, body)
	}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// malformedEngines are the listener engines the table runs against.
var malformedEngines = []string{"native", "stdhttp"}

// TestMalformedRequests sends each case of the table over a real socket to
// every listener engine and checks the status, whether the connection is
// kept, and that nothing ambiguous reaches the upstream.
func TestMalformedRequests(t *testing.T) {
	up := echoUpstream(t)
	cases := malformedCases()
	if len(cases) < 100 {
		t.Fatalf("%d cases, want at least 100", len(cases))
	}
	for _, engine := range malformedEngines {
		t.Run(engine, func(t *testing.T) {
			g := startGateway(t, fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0", engine: %s, limits: {read_header_timeout: 30s}}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /x}, upstream: up}]
access_log: {enabled: false}
`, engine, up))
			addr := g.Addr("main").String()
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) { checkMalformed(t, addr, tc) })
			}
		})
	}
}

func checkMalformed(t *testing.T, addr string, tc malformedCase) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A bound, not an expectation: every case is answered at once (the
	// header timeout is 30 s).
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, tc.req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	method, _, _ := strings.Cut(strings.TrimLeft(tc.req, "\r\n"), " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	for err == nil && resp.StatusCode == http.StatusContinue {
		resp, err = http.ReadResponse(br, &http.Request{Method: method})
	}
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != tc.status {
		t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
	}
	if tc.keep {
		if resp.Close {
			t.Errorf("response says Connection: close; want the connection kept")
		}
		io.WriteString(nc, "GET /x/after HTTP/1.1\r\nHost: t\r\n\r\n")
		next, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("connection not kept: %v", err)
		}
		next.Body.Close()
		if next.StatusCode != 200 {
			t.Errorf("next request on the connection: status %d", next.StatusCode)
		}
		return
	}
	// Closed: whatever else the server sends, the connection ends.
	_, err = io.Copy(io.Discard, br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("connection still open after the response; want it closed")
	}
}
