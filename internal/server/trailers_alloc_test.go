package server_test

import (
	"bufio"
	"bytes"
	"net"
	"testing"
)

// chunkedUpstream reads chunked POSTs to their last chunk and trailer
// section and answers each with a fixed response, allocating nothing.
func chunkedUpstream(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// The head, then chunk lines up to the last chunk
					// ("0"), then trailer lines up to the empty one.
					last := false
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if bytes.Equal(line, []byte("0\r\n")) {
							last = true
						} else if last && len(line) <= 2 {
							break
						}
					}
					if _, err := c.Write(resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TestChunkedRequestAllocs checks what a chunked request body costs on the
// native engine and client: one allocation without trailers (the body
// limit's wrapper of a body of unknown length, as before trailers were
// carried), and two more with one (the trailer section kept for the
// upstream).
func TestChunkedRequestAllocs(t *testing.T) {
	if raceDetector {
		t.Skip("allocation counts differ under the race detector; run without -race")
	}
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path: /c}, upstream: up}]
access_log: {enabled: false}
logging: {level: error}
`, chunkedUpstream(t)))
	for _, tc := range []struct {
		name string
		max  float64
		req  string
	}{
		{"no trailers", 1, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
		{"with a trailer", 3, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 42\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", g.Addr("main").String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			req := []byte(tc.req)
			var body [2]byte
			roundTrip := func() {
				if _, err := c.Write(req); err != nil {
					t.Fatal(err)
				}
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						t.Fatal(err)
					}
					if len(line) <= 2 {
						break
					}
				}
				if _, err := br.Read(body[:]); err != nil || string(body[:]) != "ok" {
					t.Fatalf("body %q, %v", body, err)
				}
			}
			for range 50 { // warm the pools
				roundTrip()
			}
			if allocs := testing.AllocsPerRun(200, roundTrip); allocs > tc.max {
				t.Errorf("%.2f allocations per request, want at most %v", allocs, tc.max)
			}
		})
	}
}
