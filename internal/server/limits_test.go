package server_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestListenerProtections checks the per-connection limits: slow header
// senders and idle keep-alive connections are cut, and HTTP/2 clients are
// told the stream limit.
func TestListenerProtections(t *testing.T) {
	rec := newRecorder(t, "up")
	g := startGateway(t, lines(`listeners:
  - name: main
    address: "127.0.0.1:0"
    protocols: [h1, h2c]
    limits: {read_header_timeout: 300ms, idle_timeout: 300ms, max_concurrent_streams: 7}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, rec.addr()))
	addr := g.Addr("main").String()

	// closedWithin reports whether the server closes conn within d.
	closedWithin := func(conn net.Conn, r io.Reader, d time.Duration) bool {
		conn.SetReadDeadline(time.Now().Add(d))
		_, err := io.Copy(io.Discard, r)
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}

	t.Run("slow headers are cut after read_header_timeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n") // and never the final CRLF
		if !closedWithin(conn, conn, 5*time.Second) {
			t.Error("connection with incomplete headers still open after 5s")
		}
	})
	t.Run("idle keep-alive connection closed after idle_timeout", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if !closedWithin(conn, br, 5*time.Second) {
			t.Error("idle connection still open after 5s")
		}
	})
	t.Run("HTTP/2 SETTINGS carry max_concurrent_streams", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, http2.ClientPreface)
		fr := http2.NewFramer(conn, conn)
		fr.WriteSettings()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		sf, ok := f.(*http2.SettingsFrame)
		if !ok {
			t.Fatalf("first frame %T, want SETTINGS", f)
		}
		v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
		if !ok || v != 7 {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (present %v), want 7", v, ok)
		}
	})
	t.Run("malformed request line gets 400", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		io.WriteString(conn, "GET /a b c\r\nHost: x\r\n\r\n")
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, _ := bufio.NewReader(conn).ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 400") {
			t.Errorf("status line %q, want 400", line)
		}
	})
}
