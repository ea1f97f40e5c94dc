package h3

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/testpki"
)

// handlerFunc adapts a function to exchange.Handler.
type handlerFunc func(x *exchange.Exchange)

func (f handlerFunc) ServeExchange(x *exchange.Exchange) { f(x) }

// startServer serves h over HTTP/3 on a loopback socket and returns the
// server and a URL for it.
func startServer(t *testing.T, h exchange.Handler) (*Server, string) {
	t.Helper()
	sock, err := Listen(context.Background(), "127.0.0.1:0", nil, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	cert := testpki.NewCA(t, "h3 test CA").Server(t, "localhost", "127.0.0.1")
	s := NewServer(sock, Options{
		TLS:                &tls.Config{Certificates: []tls.Certificate{cert.Pair}},
		MaxIdleTimeout:     time.Minute,
		IdleTimeout:        time.Minute,
		MaxIncomingStreams: 100,
	}, h)
	served := make(chan error, 1)
	go func() { served <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		<-served
	})
	return s, "https://" + sock.Addr().String() + "/"
}

func h3Client(t *testing.T) *http.Client {
	tr := &http3.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A client that keeps its connection open and idle must not hold a shutdown
// for the whole drain timeout: the connection is closed once the GOAWAY is
// out (it had no request for longer than idleSettle here). quic-go's own
// HTTP/3 client closes its idle connections when it reads the GOAWAY, so the
// idle client here is a bare QUIC connection that never sends a request, as
// a client that ignores GOAWAY (or one that only keeps a connection warm)
// would.
func TestShutdownClosesIdleConnections(t *testing.T) {
	s, url := startServer(t, handlerFunc(func(x *exchange.Exchange) { x.W.Write([]byte("ok")) }))
	if got := get(t, h3Client(t), url); got != "ok" {
		t.Fatalf("body %q", got)
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "https://"), "/")
	conn, err := quic.DialAddr(context.Background(), addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{http3.NextProtoH3}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	time.Sleep(idleSettle + 100*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v with idle client connections, want nil before the drain timeout", err)
	}
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the idle connection is still open after Shutdown")
	}
}

// A request in flight when the shutdown begins finishes with its whole
// response; its connection is closed after it, and Shutdown returns without
// waiting for the drain timeout.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	s, url := startServer(t, handlerFunc(func(x *exchange.Exchange) {
		close(started)
		<-release
		x.W.Write([]byte("finished"))
	}))
	c := h3Client(t)
	body := make(chan string, 1)
	go func() {
		resp, err := c.Get(url)
		if err != nil {
			body <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			body <- "error: " + err.Error()
			return
		}
		body <- string(b)
	}()
	<-started

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	time.Sleep(3 * goawayLead) // Shutdown has looked at the connection and left it alone
	close(release)
	if got := <-body; got != "finished" {
		t.Fatalf("response %q, want the whole body", got)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown = %v, want nil before the drain timeout", err)
	}
}
