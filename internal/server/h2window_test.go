package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHTTP2ZeroWindowStreamsAreReset: a client that announces a zero
// initial flow-control window and never opens it holds every response it
// asks for; past limits.send_timeout each such stream is reset, counted,
// and its handler and upstream request are freed. Without the bound the
// streams stayed forever (5,000 streams on 20 connections: +90 MiB, 5,000
// goroutines, nothing released after 300 s).
func TestHTTP2ZeroWindowStreamsAreReset(t *testing.T) {
	big := strings.Repeat("x", 256<<10)
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }))
	o := startObserved(t, lines(`listeners:
  - name: tls
    address: "127.0.0.1:0"
    protocols: [h2]
    tls: {self_signed: true}
    limits: {send_timeout: 1s}
  - name: plain
    address: "127.0.0.1:0"
    protocols: [h1, h2c]
    limits: {send_timeout: 1s}
upstreams: [{name: big, endpoints: [{address: %s}]}]
routes: [{name: big, match: {path: /big}, upstream: big}]
`, up))
	const streams = 20
	for _, listener := range []string{"plain", "tls"} {
		t.Run(listener, func(t *testing.T) {
			conn, fr := h2Conn(t, o.g, listener)
			// h2Conn sent empty SETTINGS; these close the window for every
			// stream, and no WINDOW_UPDATE ever follows.
			if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
				t.Fatal(err)
			}
			scheme := "http"
			if listener == "tls" {
				scheme = "https"
			}
			for i := range streams {
				block := headerBlock(":method", "GET", ":scheme", scheme, ":authority", "x", ":path", "/big")
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
			}
			end := watchConn(conn, fr)
			deadline := time.Now().Add(20 * time.Second)
			for end.resets.Load() < streams && time.Now().Before(deadline) {
				select {
				case <-end.done:
					t.Fatalf("connection ended (%v) after %d stream resets, want %d resets and the connection kept", end, end.resets.Load(), streams)
				case <-time.After(50 * time.Millisecond):
				}
			}
			if got := end.resets.Load(); got != streams {
				t.Fatalf("%d of %d streams blocked on a zero window were reset, want all after send_timeout", got, streams)
			}
		})
	}
	waitFor(t, "the send timeouts to be counted", func() bool {
		return exactSeriesValue(t, o.reg, "penstock_send_timeouts_total", "listener=plain") == streams &&
			exactSeriesValue(t, o.reg, "penstock_send_timeouts_total", "listener=tls") == streams
	})
}
