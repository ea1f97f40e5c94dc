package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestStreamsOutliveAnUpgradesDrain is the old process of a binary
// upgrade (KeepStreams, then Shutdown), on every engine and protocol that
// serves event streams: an event stream open before the drain goes on past
// drain_timeout and ends normally, and so does a WebSocket, while a plain
// request still running at drain_timeout is cut.
func TestStreamsOutliveAnUpgradesDrain(t *testing.T) {
	const events = 15
	sse := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := range events {
			fmt.Fprintf(w, "data: %d\n\n", i)
			http.NewResponseController(w).Flush()
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	}))
	ws := newUpstream(t, wsEcho(""))
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
	}))
	for _, tc := range []struct {
		name, listener string
		// client makes a client of the listener's protocol; each call a
		// new one, with connections of its own.
		client func(t *testing.T) *http.Client
		proto  string
		// sameConn sends the plain request on the event stream's
		// connection: the engine resets that stream alone.
		sameConn bool
		// webSocket opens a WebSocket too (HTTP/1.1 listeners).
		webSocket bool
	}{
		{name: "HTTP/1.1", listener: `{name: main, address: "127.0.0.1:0"}`,
			client: plainClient, proto: "HTTP/1.1", webSocket: true},
		{name: "HTTP/2 over TLS", listener: `{name: tls, address: "127.0.0.1:0", protocols: [h1, h2], tls: {self_signed: true}}`,
			client: func(*testing.T) *http.Client { return h2Client() }, proto: "HTTP/2.0"},
		{name: "HTTP/2 over TLS, plain request on the stream's connection", listener: `{name: tls, address: "127.0.0.1:0", protocols: [h1, h2], tls: {self_signed: true}}`,
			client: func(*testing.T) *http.Client { return h2Client() }, proto: "HTTP/2.0", sameConn: true},
		{name: "h2c", listener: `{name: main, address: "127.0.0.1:0", protocols: [h1, h2c]}`,
			client: func(*testing.T) *http.Client { return h2cClient() }, proto: "HTTP/2.0"},
		{name: "HTTP/3", listener: `{name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}}`,
			client: func(t *testing.T) *http.Client { c, _ := h3Client(t); return c }, proto: "HTTP/3.0"},
		{name: "engine stdhttp, HTTP/1.1", listener: `{name: main, address: "127.0.0.1:0", engine: stdhttp}`,
			client: plainClient, proto: "HTTP/1.1", webSocket: true},
		{name: "engine stdhttp, HTTP/2 over TLS", listener: `{name: tls, address: "127.0.0.1:0", engine: stdhttp, protocols: [h1, h2], tls: {self_signed: true}}`,
			client: func(*testing.T) *http.Client { return h2Client() }, proto: "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startGateway(t, fmt.Sprintf(`listeners: [%s]
upstreams:
  - {name: sse, endpoints: [{address: %s}]}
  - {name: ws, endpoints: [{address: %s}]}
  - {name: slow, endpoints: [{address: %s}]}
routes:
  - {name: sse, match: {path: /events}, upstream: sse}
  - {name: ws, match: {path: /ws}, upstream: ws}
  - {name: slow, match: {path: /slow}, upstream: slow}
shutdown: {drain_timeout: 300ms}
`, tc.listener, sse, ws, slow))
			name := "main"
			if strings.Contains(tc.listener, "name: tls") {
				name = "tls"
			}
			base := baseURL(g, name)

			streamClient := tc.client(t)
			streamClient.Timeout = 0
			resp, err := streamClient.Get(base + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.Proto != tc.proto {
				t.Fatalf("event stream over %s, want %s", resp.Proto, tc.proto)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			var wsConn *websocket.Conn
			if tc.webSocket {
				wsConn, _, err = websocket.Dial(ctx, "ws://"+g.Addr(name).String()+"/ws", nil)
				if err != nil {
					t.Fatal(err)
				}
				defer wsConn.CloseNow()
			}
			slowClient := tc.client(t)
			if tc.sameConn {
				slowClient = streamClient
			}
			slowDone := make(chan error, 1)
			go func() {
				r, err := slowClient.Get(base + "/slow")
				if err == nil {
					_, err = io.ReadAll(r.Body)
					r.Body.Close()
					if err == nil && r.StatusCode == 200 {
						err = fmt.Errorf("status %d", r.StatusCode)
					}
				}
				slowDone <- err
			}()
			time.Sleep(100 * time.Millisecond) // the slow request is in flight

			g.KeepStreams(10 * time.Second)
			shutdown := make(chan error, 1)
			start := time.Now()
			go func() { shutdown <- g.Shutdown(context.Background()) }()

			if wsConn != nil {
				// The WebSocket still echoes well past the drain timeout.
				time.Sleep(600 * time.Millisecond)
				if err := wsConn.Write(ctx, websocket.MessageText, []byte("after the drain")); err != nil {
					t.Fatalf("WebSocket write after the drain timeout: %v", err)
				}
				if _, got, err := wsConn.Read(ctx); err != nil || string(got) != "after the drain" {
					t.Fatalf("WebSocket echo after the drain timeout: %q, %v", got, err)
				}
			}
			// The plain request was cut at the drain timeout.
			select {
			case err := <-slowDone:
				if err == nil {
					t.Error("the plain request still running at drain_timeout was answered 200")
				}
			case <-time.After(5 * time.Second):
				t.Error("the plain request was not cut at drain_timeout")
			}
			// The event stream delivers every event, then ends normally.
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("event stream cut after %v: %v (got %q)", time.Since(start), err, body)
			}
			if n := strings.Count(string(body), "data: "); n != events {
				t.Fatalf("%d events, want %d: %q", n, events, body)
			}
			if wsConn != nil {
				wsConn.Close(websocket.StatusNormalClosure, "done")
			}
			select {
			case <-shutdown:
			case <-time.After(10 * time.Second):
				t.Fatal("Shutdown did not return once the streams ended")
			}
			if took := time.Since(start); took < time.Second {
				t.Errorf("Shutdown returned after %v, before the event stream could have ended", took)
			}
		})
	}
}

// plainClient is an HTTP/1.1 client with connections of its own.
func plainClient(*testing.T) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
}
