package upstream_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// minimalUpstream answers every request on a keep-alive connection with the
// same 64-byte JSON body, doing as little work as possible so that the
// figures are the client's.
func minimalUpstream(b *testing.B) string {
	body := `{"model":"resnet50","outputs":[0.91,0.07,0.02],"compute_ms":0.1}` + "\n"
	response := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	addr, _ := rawUpstream(b, func(c net.Conn, br *bufio.Reader) {
		for {
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					return
				}
				if len(line) <= 2 {
					break
				}
			}
			if _, err := c.Write(response); err != nil {
				return
			}
		}
	})
	return addr
}

// BenchmarkH1Client is one small GET round trip over a warm loopback
// keep-alive connection, with penstock's client and, for comparison, with
// net/http's Transport used the way the forwarder used it before (a new
// *http.Request per request).
func BenchmarkH1Client(b *testing.B) {
	addr := minimalUpstream(b)
	const path = "/v1/models/resnet50/predict"
	b.Run("native", func(b *testing.B) {
		benchNative(b, addr, path, context.Background())
	})
	b.Run("native-cancellable-context", func(b *testing.B) {
		// The proxy passes the client connection's context, which can be
		// cancelled: watching it costs an AfterFunc registration.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		benchNative(b, addr, path, ctx)
	})
	b.Run("net/http.Transport", func(b *testing.B) {
		t := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
		defer t.CloseIdleConnections()
		buf := make([]byte, 4096)
		b.ReportAllocs()
		for b.Loop() {
			req, err := http.NewRequest("GET", "http://"+addr+path, nil)
			if err != nil {
				b.Fatal(err)
			}
			req.Host = "example.test"
			req.Header["Accept"] = []string{"application/json"}
			req.Header["X-Request-Id"] = []string{"0b410d6da1b7b084d5d32e3de1d4a5af"}
			resp, err := t.RoundTrip(req)
			if err != nil {
				b.Fatal(err)
			}
			for {
				_, err := resp.Body.Read(buf)
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			resp.Body.Close()
		}
	})
}

func benchNative(b *testing.B, addr, path string, ctx context.Context) {
	c := h1Pool(b, addr, nil).Endpoints[0].Client().(*upstream.H1Client)
	var h exchange.Header
	h.Add("Accept", "application/json")
	h.Add("X-Request-Id", "0b410d6da1b7b084d5d32e3de1d4a5af")
	req := &upstream.Request{Method: "GET", Path: path, Host: "example.test", Header: &h}
	var resp upstream.Response
	buf := make([]byte, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.RoundTrip(ctx, req, &resp); err != nil {
			b.Fatal(err)
		}
		for {
			_, err := resp.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
		resp.Close()
	}
}
