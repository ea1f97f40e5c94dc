package upstream_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// clients are the two Client implementations, as pools configure them.
var clients = []struct {
	name   string
	adjust func(u *config.Upstream)
}{
	{"native", nil},
	{"stdhttp", func(u *config.Upstream) { u.Client = config.ClientStdHTTP }},
}

// clientPool compiles a one-endpoint h1 pool for addr with the given client.
func clientPool(t *testing.T, addr string, adjust func(u *config.Upstream)) *upstream.Pool {
	t.Helper()
	u := config.Upstream{Name: "up", Endpoints: []config.Endpoint{{Address: addr}}, Protocol: "h1", Balancing: "round_robin",
		Pool: config.Pool{MaxIdlePerEndpoint: 64, IdleTimeout: config.Duration(time.Minute)}}
	if adjust != nil {
		adjust(&u)
	}
	p, err := upstream.NewPool(&u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// TestClientErrorKinds: both clients report each way an exchange can fail as
// the same upstream.Error kind, at RoundTrip or, for the body, at Read.
func TestClientErrorKinds(t *testing.T) {
	refused := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	serving := func(serve func(c net.Conn, br *bufio.Reader)) func(t *testing.T) string {
		return func(t *testing.T) string {
			addr, _ := rawUpstream(t, serve)
			return addr
		}
	}
	answer := func(raw string) func(c net.Conn, br *bufio.Reader) {
		return func(c net.Conn, br *bufio.Reader) {
			if _, err := readRequest(br); err == nil {
				io.WriteString(c, raw)
			}
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name     string
		upstream func(t *testing.T) string
		ctx      context.Context
		req      upstream.Request
		// deadline sets req.Deadline this long after the subtest starts.
		deadline time.Duration
		// atRead: RoundTrip succeeds and reading the body fails.
		atRead bool
		want   upstream.ErrorKind
	}{
		{name: "connection refused", upstream: refused, want: upstream.KindConnect},
		{name: "response header timeout", upstream: serving(func(c net.Conn, br *bufio.Reader) {
			readRequest(br)
			time.Sleep(time.Second)
		}), req: upstream.Request{ResponseHeaderTimeout: 50 * time.Millisecond}, want: upstream.KindTimeout},
		{name: "closed before any response byte", upstream: serving(func(c net.Conn, br *bufio.Reader) {
			readRequest(br)
		}), want: upstream.KindReset},
		{name: "malformed response head", upstream: serving(answer("HTTP/1.1 2x0 OK\r\n\r\n")), want: upstream.KindProtocol},
		{name: "body cut short", upstream: serving(answer("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")),
			atRead: true, want: upstream.KindTruncated},
		{name: "request deadline inside the body", upstream: serving(func(c net.Conn, br *bufio.Reader) {
			answer("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")(c, br)
			time.Sleep(time.Second)
		}), deadline: 300 * time.Millisecond, atRead: true, want: upstream.KindTimeout},
		{name: "client body fails", upstream: serving(answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")),
			req:  upstream.Request{Method: "POST", Body: iotest.ErrReader(errors.New("client went wrong")), ContentLength: -1},
			want: upstream.KindClientBody},
		{name: "context ended before sending", upstream: serving(answer("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")),
			ctx: cancelled, want: upstream.KindCanceled},
	}
	for _, c := range clients {
		for _, tt := range tests {
			t.Run(c.name+"/"+tt.name, func(t *testing.T) {
				p := clientPool(t, tt.upstream(t), c.adjust)
				ctx := tt.ctx
				if ctx == nil {
					ctx = context.Background()
				}
				req := tt.req
				if req.Method == "" {
					req.Method = "GET"
				}
				if tt.deadline > 0 {
					req.Deadline = time.Now().Add(tt.deadline)
				}
				var resp upstream.Response
				err := p.Endpoints[0].Client().RoundTrip(ctx, &req, &resp)
				if tt.atRead {
					if err != nil {
						t.Fatalf("RoundTrip: %v", err)
					}
					_, err = io.ReadAll(&resp)
					resp.Close()
				}
				var ue *upstream.Error
				if !errors.As(err, &ue) || ue.Kind != tt.want {
					t.Fatalf("error = %v (%T), want an upstream.Error of kind %v", err, err, tt.want)
				}
				if ue.ErrorType() != tt.want.String() || !strings.Contains(ue.Error(), tt.want.String()) {
					t.Errorf("error %q (type %q) does not name its kind %q", ue, ue.ErrorType(), tt.want)
				}
			})
		}
	}
}

// TestCancelledRequestKeepsPooledConnection: a request whose context ended
// before it was sent (an HTTP/2 client's rapid reset) leaves the pooled
// connection alone, so a flood of them costs the upstream no new
// connections.
func TestCancelledRequestKeepsPooledConnection(t *testing.T) {
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			addr, accepted := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
				for {
					if _, err := readRequest(br); err != nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				}
			})
			client := clientPool(t, addr, c.adjust).Endpoints[0].Client()
			get := func(ctx context.Context) error {
				var resp upstream.Response
				err := client.RoundTrip(ctx, &upstream.Request{Method: "GET", Path: "/"}, &resp)
				if err == nil {
					_, err = io.ReadAll(&resp)
					resp.Close()
				}
				return err
			}
			if err := get(context.Background()); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			for range 5 {
				if err := get(ctx); upstream.KindOf(err) != upstream.KindCanceled {
					t.Fatalf("cancelled request: %v, want KindCanceled", err)
				}
			}
			if err := get(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := accepted.Load(); n != 1 {
				t.Errorf("upstream accepted %d connections, want 1 (the cancelled requests closed pooled ones)", n)
			}
		})
	}
}
