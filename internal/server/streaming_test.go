package server_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestServerSentEventsFlowAsTheyArrive checks that an event reaches the
// client while the upstream is still holding the stream open: the upstream
// sends event 1 and then waits until the client has read it before sending
// event 2. A gateway that buffered the stream would deadlock here.
func TestServerSentEventsFlowAsTheyArrive(t *testing.T) {
	gotFirst := make(chan struct{})
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: one\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-gotFirst:
		case <-time.After(5 * time.Second):
			return
		}
		fmt.Fprint(w, "data: two\n\n")
	}))
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0", protocols: [h1, h2c]}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: sse, match: {path: /events}, upstream: up}]
`, up))

	for _, tc := range []struct {
		name string
		c    *http.Client
	}{{"HTTP/1.1", client}, {"h2c", h2cClient()}} {
		t.Run(tc.name, func(t *testing.T) {
			gotFirst = make(chan struct{})
			resp, err := tc.c.Get(baseURL(g, "main") + "/events")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			first := make(chan string, 1)
			go func() {
				line, _ := br.ReadString('\n')
				first <- line
			}()
			select {
			case line := <-first:
				if line != "data: one\n" {
					t.Fatalf("first line %q", line)
				}
			case <-time.After(3 * time.Second):
				t.Fatal("first event did not arrive while the stream was open: the response is buffered")
			}
			close(gotFirst)
			rest, _ := io.ReadAll(br)
			if !strings.Contains(string(rest), "data: two") {
				t.Errorf("second event missing: %q", rest)
			}
		})
	}
}

// TestWebSocketEchoThroughProxy upgrades through penstock and echoes
// messages both ways.
func TestWebSocketEchoThroughProxy(t *testing.T) {
	up := newUpstream(t, wsEcho("echo: "))
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: ws, match: {path: /ws}, upstream: up}]
`, up))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+g.Addr("main").String()+"/ws", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.CloseNow()
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("101 response carries no X-Request-Id")
	}
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != "echo: "+msg {
			t.Errorf("got %q", got)
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// TestBodiesStreamBothWays sends a chunked 8 MiB upload and gets an 8 MiB
// download, checking the bytes end to end.
func TestBodiesStreamBothWays(t *testing.T) {
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("X-Upload-Sha256", fmt.Sprintf("%x", h.Sum(nil)))
		w.Header().Set("X-Upload-Bytes", fmt.Sprint(n))
		// Echo the digest, then stream 8 MiB of a known pattern.
		chunk := make([]byte, 64<<10)
		for i := range chunk {
			chunk[i] = byte(i)
		}
		for range 128 {
			w.Write(chunk)
		}
	}))
	g := startGateway(t, lines(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: up, match: {path: /upload}, upstream: up, max_request_body: 16MiB}]
`, up))
	payload := make([]byte, 8<<20)
	rand.Read(payload)
	want := fmt.Sprintf("%x", sha256.Sum256(payload))
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(payload); off += 100_000 {
			pw.Write(payload[off:min(off+100_000, len(payload))])
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("POST", baseURL(g, "main")+"/upload", pr) // unknown length: chunked
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	if got := resp.Header.Get("X-Upload-Sha256"); got != want {
		t.Errorf("upstream got a different upload (%s bytes)", resp.Header.Get("X-Upload-Bytes"))
	}
	if n != 8<<20 {
		t.Errorf("downloaded %d bytes, want %d", n, 8<<20)
	}
}

// wsEcho is a WebSocket upstream that answers each message with prefix and
// the message.
func wsEcho(prefix string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(prefix), msg...)); err != nil {
				return
			}
		}
	})
}
