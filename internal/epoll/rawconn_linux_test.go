package epoll_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/epoll"
)

func TestRawConn(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, raw net.Conn, peer *net.TCPConn)
	}{
		{"reads and writes both ways", func(t *testing.T, raw net.Conn, peer *net.TCPConn) {
			if _, err := raw.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4)
			if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "ping" {
				t.Fatalf("peer read %q, %v", buf, err)
			}
			peer.Write([]byte("pong"))
			if _, err := io.ReadFull(raw, buf); err != nil || string(buf) != "pong" {
				t.Fatalf("read %q, %v", buf, err)
			}
		}},
		{"a write larger than the socket buffers waits for room", func(t *testing.T, raw net.Conn, peer *net.TCPConn) {
			big := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
			done := make(chan error, 1)
			go func() {
				n, err := raw.Write(big)
				if err == nil && n != len(big) {
					err = io.ErrShortWrite
				}
				done <- err
			}()
			got, err := io.ReadAll(io.LimitReader(peer, int64(len(big))))
			if err != nil || !bytes.Equal(got, big) {
				t.Fatalf("peer read %d bytes, %v", len(got), err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}},
		{"the peer's close reads as EOF", func(t *testing.T, raw net.Conn, peer *net.TCPConn) {
			peer.Close()
			if n, err := raw.Read(make([]byte, 8)); n != 0 || err != io.EOF {
				t.Fatalf("read %d, %v; want 0, EOF", n, err)
			}
		}},
		{"a read deadline ends a read that waits", func(t *testing.T, raw net.Conn, peer *net.TCPConn) {
			raw.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			_, err := raw.Read(make([]byte, 8))
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read: %v; want a deadline error", err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Fatalf("read: %v is not a net.Error timeout", err)
			}
		}},
		{"Close from another goroutine ends a read that waits", func(t *testing.T, raw net.Conn, peer *net.TCPConn) {
			done := make(chan error, 1)
			go func() {
				_, err := raw.Read(make([]byte, 8))
				done <- err
			}()
			time.Sleep(10 * time.Millisecond)
			raw.Close()
			select {
			case err := <-done:
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("read: %v; want net.ErrClosed", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("read still waits after Close")
			}
		}},
		{"CloseWrite reaches the socket", func(t *testing.T, raw net.Conn, peer *net.TCPConn) {
			cw, ok := raw.(interface{ CloseWrite() error })
			if !ok {
				t.Fatal("no CloseWrite")
			}
			raw.Write([]byte("last"))
			cw.CloseWrite()
			got, err := io.ReadAll(peer)
			if err != nil || string(got) != "last" {
				t.Fatalf("peer read %q, %v", got, err)
			}
		}},
		{"a write to a reset connection fails", func(t *testing.T, raw net.Conn, peer *net.TCPConn) {
			peer.SetLinger(0)
			peer.Close()
			var err error
			for i := 0; i < 100 && err == nil; i++ {
				_, err = raw.Write(make([]byte, 1024))
				time.Sleep(time.Millisecond)
			}
			if err == nil {
				t.Fatal("writes to a reset connection kept succeeding")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, s := tcpPair(t)
			raw := epoll.RawConn(s)
			if _, ok := raw.(*net.TCPConn); ok {
				t.Fatal("RawConn returned the TCP connection itself")
			}
			tc.run(t, raw, c)
		})
	}
}

// TestRawConnTLS runs a TLS connection over RawConn, as the engine does:
// the handshake, records both ways and the close alert.
func TestRawConnTLS(t *testing.T) {
	c, s := tcpPair(t)
	srv := tls.Server(epoll.RawConn(s), &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	cli := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 5)
		if _, err := io.ReadFull(srv, buf); err != nil {
			done <- err
			return
		}
		_, err := srv.Write(append(buf, " back"...))
		srv.Close()
		done <- err
	}()
	if _, err := cli.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(cli)
	if err != nil || string(got) != "hello back" {
		t.Fatalf("client read %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRawConnOthersUnchanged(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if epoll.RawConn(a) != a {
		t.Fatal("a connection that is not TCP was wrapped")
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
