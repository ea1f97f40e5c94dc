package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/quic-go/quic-go/http3"
)

// TestBinaryUpgradeKeepsStreams opens server-sent event streams over
// HTTP/1.1, h2c, HTTP/2 over TLS and HTTP/3, and a WebSocket, then
// upgrades the binary with a drain_timeout far shorter than the streams:
// every stream goes on past the drain timeout on the old process and ends
// normally with all its events, the WebSocket still echoes, new requests go
// to the new process, and the old process exits once the streams are done.
func TestBinaryUpgradeKeepsStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const events = 25
	up := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/events":
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
		case "/ws":
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
				if c.Write(r.Context(), typ, msg) != nil {
					return
				}
			}
		default:
			io.WriteString(w, "ok")
		}
	})}
	upLn := listenLoopback(t)
	go up.Serve(upLn)
	t.Cleanup(func() { up.Close() })

	plain, secure := freeAddr(t), freeAddr(t)
	p := startServed(t, `listeners:
  - {name: plain, address: "`+plain+`", protocols: [h1, h2c]}
  - {name: tls, address: "`+secure+`", protocols: [h1, h2, h3], tls: {self_signed: true}}
upstreams: [{name: up, endpoints: [{address: "`+upLn.Addr().String()+`"}]}]
routes: [{name: all, match: {path_prefix: /}, upstream: up}]
shutdown: {drain_timeout: 300ms}
logging: {format: text}
`)
	old, pidFile, logs := p.pid, p.pidFile, p.logs

	var h1, h2c, h2 http.Protocols
	h1.SetHTTP1(true)
	h2c.SetUnencryptedHTTP2(true)
	h2.SetHTTP2(true)
	insecure := &tls.Config{InsecureSkipVerify: true}
	h3 := &http3.Transport{TLSClientConfig: insecure}
	defer h3.Close()
	streams := []struct {
		name, url, proto string
		rt               http.RoundTripper
	}{
		{"HTTP/1.1", "http://" + plain, "HTTP/1.1", &http.Transport{Protocols: &h1}},
		{"h2c", "http://" + plain, "HTTP/2.0", &http.Transport{Protocols: &h2c}},
		{"HTTP/2", "https://" + secure, "HTTP/2.0", &http.Transport{Protocols: &h2, TLSClientConfig: insecure}},
		{"HTTP/3", "https://" + secure, "HTTP/3.0", h3},
	}
	type result struct {
		name string
		n    int
		err  error
	}
	results := make(chan result, len(streams))
	for _, s := range streams {
		resp, err := (&http.Client{Transport: s.rt}).Get(s.url + "/events")
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if resp.Proto != s.proto {
			t.Fatalf("%s: event stream over %s", s.name, resp.Proto)
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil { // the first event: the stream runs on the old process
			t.Fatalf("%s: first event: %v", s.name, err)
		}
		go func() {
			defer resp.Body.Close()
			b, err := io.ReadAll(br)
			results <- result{s.name, 1 + strings.Count(string(b), "data: "), err}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws://"+plain+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()

	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	if !waitFor(20*time.Second, func() bool { next := readPid(t, pidFile); return next != old && next != 0 }) {
		t.Fatalf("no new process\n%s", logs())
	}
	// Well past drain_timeout: the old process still serves the streams,
	// the new one serves new requests.
	time.Sleep(time.Second)
	if !alive(old) {
		t.Fatalf("the old process exited before its streams ended\n%s", logs())
	}
	if err := ws.Write(ctx, websocket.MessageText, []byte("after the drain")); err != nil {
		t.Fatalf("WebSocket write after the drain timeout: %v", err)
	}
	if _, got, err := ws.Read(ctx); err != nil || string(got) != "after the drain" {
		t.Fatalf("WebSocket echo after the drain timeout: %q, %v", got, err)
	}
	resp, err := http.Get("http://" + plain + "/x")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a new request during the old process's stream drain: %v", err)
	}
	resp.Body.Close()

	for range streams {
		r := <-results
		if r.err != nil || r.n != events {
			t.Errorf("%s event stream: %d of %d events, error %v", r.name, r.n, events, r.err)
		}
	}
	ws.Close(websocket.StatusNormalClosure, "done")
	if !waitFor(20*time.Second, func() bool { return !alive(old) }) {
		t.Fatalf("old process %d did not exit once its streams ended\n%s", old, logs())
	}
}
