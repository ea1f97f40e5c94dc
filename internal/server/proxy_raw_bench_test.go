package server_test

import (
	"bufio"
	"bytes"
	"net"
	"strconv"
	"testing"
)

// rawUpstream answers every HTTP/1.1 request on a keep-alive connection with
// the same small JSON response, reading and writing through fixed buffers: it
// allocates nothing per request, so a benchmark through it counts only what
// the proxy allocates.
func rawUpstream(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	body := `{"model":"resnet50","outputs":[0.91,0.07,0.02],"compute_ms":0.1}` + "\n"
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
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
					// A GET without a body: the head ends at the empty line.
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
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

// rawGet sends keep-alive GETs over one connection and reads each response
// by its Content-Length, allocating nothing per request.
func rawGet(b *testing.B, addr, path string) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: bench\r\nUser-Agent: raw\r\n\r\n")
	br := bufio.NewReaderSize(c, 4096)
	var body [4096]byte
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		status, err := br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) {
			b.Fatalf("status line %q", status)
		}
		n := -1
		for {
			line, err := br.ReadSlice('\n')
			if err != nil {
				b.Fatal(err)
			}
			if len(line) <= 2 {
				break
			}
			if name, value, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
				n, _ = strconv.Atoi(string(bytes.TrimSpace(value))) // no allocation: the conversion does not escape
			}
		}
		if n < 0 || n > len(body) {
			b.Fatalf("response without a usable Content-Length (%d)", n)
		}
		for read := 0; read < n; {
			m, err := br.Read(body[read:n])
			if err != nil {
				b.Fatal(err)
			}
			read += m
		}
	}
}

// BenchmarkProxyZeroAlloc proxies one small keep-alive HTTP/1.1 request
// through penstock (native engine, native upstream client, metrics on,
// access log and tracing off) between a client and an upstream that
// allocate nothing themselves: allocs/op is penstock's own, and is 0.
// "direct" is the same client against the upstream, for the time penstock
// adds.
func BenchmarkProxyZeroAlloc(b *testing.B) {
	up := rawUpstream(b)
	b.Run("direct", func(b *testing.B) { rawGet(b, up, "/v1/models/resnet50/predict") })
	b.Run("penstock", func(b *testing.B) {
		g := startGatewayTB(b, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: predict, match: {path: "/v1/models/:model/predict"}, upstream: up}]
access_log: {enabled: false}
logging: {level: error}
`, up))
		rawGet(b, g.Addr("main").String(), "/v1/models/resnet50/predict")
	})
}
