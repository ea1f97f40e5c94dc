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
// upgrade (KeepStreams, then Shutdown): an event stream and a WebSocket
// open before the drain go on past drain_timeout and end normally, while a
// plain request still running at drain_timeout is cut.
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
	g := startGateway(t, fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: sse, endpoints: [{address: %s}]}
  - {name: ws, endpoints: [{address: %s}]}
  - {name: slow, endpoints: [{address: %s}]}
routes:
  - {name: sse, match: {path: /events}, upstream: sse}
  - {name: ws, match: {path: /ws}, upstream: ws}
  - {name: slow, match: {path: /slow}, upstream: slow}
shutdown: {drain_timeout: 300ms}
`, sse, ws, slow))
	base := baseURL(g, "main")

	resp, err := http.Get(base + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wsConn, _, err := websocket.Dial(ctx, "ws://"+g.Addr("main").String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wsConn.CloseNow()
	slowDone := make(chan error, 1)
	go func() {
		r, err := http.Get(base + "/slow")
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

	// The WebSocket still echoes well past the drain timeout.
	time.Sleep(600 * time.Millisecond)
	if err := wsConn.Write(ctx, websocket.MessageText, []byte("after the drain")); err != nil {
		t.Fatalf("WebSocket write after the drain timeout: %v", err)
	}
	if _, got, err := wsConn.Read(ctx); err != nil || string(got) != "after the drain" {
		t.Fatalf("WebSocket echo after the drain timeout: %q, %v", got, err)
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
	wsConn.Close(websocket.StatusNormalClosure, "done")
	select {
	case <-shutdown:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return once the streams ended")
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("Shutdown returned after %v, before the event stream could have ended", took)
	}
}
