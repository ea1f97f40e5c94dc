package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestStreamsSurviveReload opens a server-sent event stream and a WebSocket,
// reloads (with a config whose routes and pools for them are unchanged, and
// then with one that changes an unrelated route), and checks both keep
// delivering. A reload that changes their upstream blocks in settings that
// do not touch established connections (balancing, passive health, pool
// sizes) leaves them running past reload.stream_grace. Then a reload that
// removes their upstream ends them after reload.stream_grace.
func TestStreamsSurviveReload(t *testing.T) {
	tick := make(chan struct{})
	sse := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		for i := 0; ; i++ {
			select {
			case <-tick:
			case <-r.Context().Done():
				return
			}
			fmt.Fprintf(w, "data: %d\n\n", i)
			http.NewResponseController(w).Flush()
		}
	}))
	ws := newUpstream(t, wsEcho(""))
	other := newRecorder(t, "other")
	cfgTuned := func(extra, tune string) string {
		return fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: sse, endpoints: [{address: %s}]%s}
  - {name: ws, endpoints: [{address: %s}]%s}
  - {name: other, endpoints: [{address: %s}]}
routes:
  - {name: sse, match: {path: /events}, upstream: sse}
  - {name: ws, match: {path: /ws}, upstream: ws}
%s
reload: {stream_grace: 300ms}
`, sse, tune, ws, tune, other.addr(), extra)
	}
	cfg := func(extra string) string { return cfgTuned(extra, "") }
	g := startGateway(t, cfg("  - {name: o1, match: {path: /o1}, upstream: other}"))

	resp, err := client.Get(baseURL(g, "main") + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := bufio.NewReader(resp.Body)
	nextEvent := func() (string, error) {
		tick <- struct{}{}
		line, err := events.ReadString('\n')
		events.ReadString('\n') // blank line after each event
		return strings.TrimSpace(line), err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	wsConn, _, err := websocket.Dial(ctx, "ws://"+g.Addr("main").String()+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wsConn.CloseNow()
	echo := func(msg string) error {
		if err := wsConn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			return err
		}
		_, got, err := wsConn.Read(ctx)
		if err == nil && string(got) != msg {
			err = fmt.Errorf("echo %q, want %q", got, msg)
		}
		return err
	}

	for i, extra := range []string{
		"  - {name: o2, match: {path: /o2}, upstream: other}",
		"  - {name: o1, match: {path: /o1}, upstream: other}",
	} {
		if ev, err := nextEvent(); err != nil {
			t.Fatalf("before reload %d: %v", i, err)
		} else if ev != fmt.Sprintf("data: %d", i) {
			t.Fatalf("event %q", ev)
		}
		if err := g.Reload(mustConfig(t, cfg(extra))); err != nil {
			t.Fatal(err)
		}
		if err := echo(fmt.Sprintf("after reload %d", i)); err != nil {
			t.Fatalf("WebSocket after reload %d: %v", i, err)
		}
	}
	if ev, err := nextEvent(); err != nil || ev != "data: 2" {
		t.Fatalf("SSE after reloads: %q, %v", ev, err)
	}

	// Tune the streams' own upstream blocks: new pools, same connections.
	tuned := cfgTuned("  - {name: o1, match: {path: /o1}, upstream: other}",
		", balancing: least_request, passive_health: {max_fails: 3}, pool: {max_idle_per_endpoint: 8}")
	if err := g.Reload(mustConfig(t, tuned)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(900 * time.Millisecond) // three times stream_grace
	if err := echo("after tuning the upstream"); err != nil {
		t.Fatalf("WebSocket cut by a reload that only tuned its upstream: %v", err)
	}
	if ev, err := nextEvent(); err != nil || ev != "data: 3" {
		t.Fatalf("SSE after a reload that only tuned its upstream: %q, %v", ev, err)
	}

	// Remove the streams' upstreams: after stream_grace their connections
	// are closed.
	removed := fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: other, endpoints: [{address: %s}]}]
routes: [{name: o1, match: {path: /o1}, upstream: other}]
reload: {stream_grace: 300ms}
`, other.addr())
	if err := g.Reload(mustConfig(t, removed)); err != nil {
		t.Fatal(err)
	}
	if err := echo("still within grace"); err != nil {
		t.Fatalf("WebSocket closed before stream_grace: %v", err)
	}
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, events)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("SSE stream on a removed upstream still open 5s after stream_grace")
	}
	wsCtx, wsCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wsCancel()
	if _, _, err := wsConn.Read(wsCtx); err == nil || wsCtx.Err() != nil {
		t.Errorf("WebSocket on a removed upstream not closed after stream_grace (err %v)", err)
	}
}
