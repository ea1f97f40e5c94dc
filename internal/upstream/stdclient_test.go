package upstream_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
	"unsafe"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// TestStdClientOwnsRequestStrings: the engines hand a request's path, query
// and host as strings over their connection buffers, valid only while the
// exchange lasts, but net/http's HTTP/2 client keeps :path and :authority
// in its HPACK table for the connection's life. Here one buffer carries
// every request's target, rewritten for the next as an HTTP/1.1 connection
// does, with enough distinct paths that the table evicts: a client that
// kept the engine's strings would corrupt its table (and panic: "id <=
// evictCount").
func TestStdClientOwnsRequestStrings(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.URL.Path, "?", r.URL.RawQuery, "@", r.Host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	u := config.Upstream{Name: "up", Endpoints: []config.Endpoint{{Address: ln.Addr().String()}}, Protocol: "h2c", Balancing: "round_robin",
		Pool: config.Pool{MaxIdlePerEndpoint: 4, IdleTimeout: config.Duration(time.Minute)}}
	p, err := upstream.NewPool(&u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)

	var buf [128]byte
	view := func(s string) string {
		n := copy(buf[:], s)
		return unsafe.String(&buf[0], n)
	}
	for i := range 400 {
		// The target first, then the host, in the one buffer.
		path := fmt.Sprintf("/models/%040d/predict", i%97)
		query := fmt.Sprintf("v=%d", i%89)
		host := fmt.Sprintf("h%d.test", i%83)
		all := view(path + query + host)
		req := upstream.Request{Method: "GET", Path: all[:len(path)], Query: all[len(path) : len(path)+len(query)], Host: all[len(path)+len(query):]}
		var resp upstream.Response
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := p.Endpoints[0].Client().RoundTrip(ctx, &req, &resp); err != nil {
			cancel()
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(&resp)
		resp.Close()
		cancel()
		if want := path + "?" + query + "@" + host; err != nil || string(body) != want {
			t.Fatalf("request %d: upstream saw %q (%v), want %q", i, body, err, want)
		}
		// The connection's buffer moves on to other bytes.
		for j := range buf {
			buf[j] = 'x'
		}
	}
}
