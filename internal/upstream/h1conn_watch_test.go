//go:build linux

package upstream_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/upstream"
)

// eventually reports whether cond becomes true within two seconds.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

const okResponse = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// keepAlive answers every request on the connection with okResponse.
func keepAlive(c net.Conn, br *bufio.Reader) {
	for {
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, okResponse)
	}
}

func TestH1ClientIdleHangUpWatch(t *testing.T) {
	// Each upstream answers the first request on a connection, then does
	// something to the idle connection; the second request, a POST (which
	// would not be retried), must go on a new connection and succeed.
	answerThen := func(then func(c net.Conn)) func(net.Conn, *bufio.Reader) {
		return func(c net.Conn, br *bufio.Reader) {
			if _, err := readRequest(br); err != nil {
				return
			}
			io.WriteString(c, okResponse)
			then(c)
			// Stay open until the client closes, in case then did not
			// close.
			io.Copy(io.Discard, c)
		}
	}
	tests := []struct {
		name      string
		serve     func(net.Conn, *bufio.Reader)
		idle      time.Duration // wait before the second request
		hungUp    bool          // the watch must report the connection closed
		wantProbe int64
	}{
		{name: "upstream closes (FIN): seen by the watch, no probe read", hungUp: true,
			serve: answerThen(func(c net.Conn) { c.Close() })},
		{name: "upstream resets (RST): seen by the watch, no probe read", hungUp: true,
			serve: answerThen(func(c net.Conn) { c.(*net.TCPConn).SetLinger(0); c.Close() })},
		{name: "upstream sends an unsolicited 408 and closes: seen by the watch", hungUp: true,
			serve: answerThen(func(c net.Conn) {
				io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
				c.Close()
			})},
		{name: "upstream speaks out of turn without closing: caught by the probe after a second idle",
			idle: 1100 * time.Millisecond, wantProbe: 1,
			serve: answerThen(func(c net.Conn) {
				// Later than the response, so that the client's buffer
				// does not take both at once.
				time.Sleep(50 * time.Millisecond)
				io.WriteString(c, "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n")
			})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, accepted := rawUpstream(t, tt.serve)
			c := h1Pool(t, addr, nil).Endpoints[0].Client().(*upstream.H1Client)
			if r, err := roundTrip(context.Background(), c, "GET", "/", nil, 0); err != nil || r.body != "ok" {
				t.Fatalf("first request: %+v, %v", r, err)
			}
			if watched, _, raw := upstream.IdleWatch(c); watched != 1 || !raw {
				t.Fatalf("idle connection: watched %d, raw I/O %v; want 1, true", watched, raw)
			}
			if tt.hungUp && !eventually(func() bool { _, h, _ := upstream.IdleWatch(c); return h == 1 }) {
				t.Fatal("the watch did not report the upstream's hang-up within 2s")
			}
			time.Sleep(tt.idle)
			r, err := roundTrip(context.Background(), c, "POST", "/", strings.NewReader("x"), 1)
			if err != nil || r.status != 200 || r.body != "ok" {
				t.Fatalf("POST after the upstream acted: %+v, %v", r, err)
			}
			if n := accepted.Load(); n != 2 {
				t.Errorf("upstream accepted %d connections, want 2", n)
			}
			if n := upstream.ProbeReads(c); n != tt.wantProbe {
				t.Errorf("%d probe reads, want %d", n, tt.wantProbe)
			}
		})
	}
}

// A connection whose descriptor number was that of a connection the
// upstream closed must not be taken for closed.
func TestH1ClientReusedDescriptorNumberIsNotHungUp(t *testing.T) {
	var first atomic.Bool
	first.Store(true)
	addr, accepted := rawUpstream(t, func(c net.Conn, br *bufio.Reader) {
		if first.CompareAndSwap(true, false) {
			// Only the first connection is closed after one answer.
			if _, err := readRequest(br); err == nil {
				io.WriteString(c, okResponse)
			}
			return
		}
		keepAlive(c, br)
	})
	c := h1Pool(t, addr, nil).Endpoints[0].Client().(*upstream.H1Client)
	get := func(what string) {
		t.Helper()
		if r, err := roundTrip(context.Background(), c, "GET", "/", nil, 0); err != nil || r.body != "ok" {
			t.Fatalf("%s: %+v, %v", what, r, err)
		}
	}
	get("first request")
	oldFDs := upstream.IdleFDs(c)
	if !eventually(func() bool { _, h, _ := upstream.IdleWatch(c); return h == 1 }) {
		t.Fatal("the watch did not report the upstream's hang-up within 2s")
	}
	get("request after the hang-up")
	newFDs := upstream.IdleFDs(c)
	if len(oldFDs) != 1 || len(newFDs) != 1 || oldFDs[0] != newFDs[0] {
		t.Skipf("descriptor numbers %v then %v: the kernel did not reuse the number (internal/epoll tests the reuse with dup3)", oldFDs, newFDs)
	}
	time.Sleep(20 * time.Millisecond)
	if _, h, _ := upstream.IdleWatch(c); h != 0 {
		t.Fatal("the new connection is reported hung up")
	}
	get("request on the new connection")
	if n := accepted.Load(); n != 2 {
		t.Errorf("upstream accepted %d connections, want 2", n)
	}
	if n := upstream.ProbeReads(c); n != 0 {
		t.Errorf("%d probe reads, want 0", n)
	}
}

// TestH1ClientReadsPerRequest counts the read system calls of a warm
// keep-alive exchange: one, that reads the response. The request is written
// inside a read that then waits for the response, so no read finds nothing
// (EAGAIN), and the reuse check reads nothing.
func TestH1ClientReadsPerRequest(t *testing.T) {
	addr, accepted := rawUpstream(t, keepAlive)
	c := h1Pool(t, addr, nil).Endpoints[0].Client().(*upstream.H1Client)
	const n = 200
	var before int
	for i := range n + 1 {
		if r, err := roundTrip(context.Background(), c, "GET", "/", nil, 0); err != nil || r.body != "ok" {
			t.Fatalf("request %d: %+v, %v", i, r, err)
		}
		if i == 0 {
			before = upstream.IdleSocketReads(c)
		}
	}
	reads := float64(upstream.IdleSocketReads(c)-before) / n
	t.Logf("%.2f read system calls per request, %d probe reads", reads, upstream.ProbeReads(c))
	// The request is written inside a read that waits for the response
	// (rawSocket.writeAwait), so the one read finds it.
	if reads > 1.05 {
		t.Errorf("%.2f reads per request, want 1", reads)
	}
	if p := upstream.ProbeReads(c); p != 0 {
		t.Errorf("%d probe reads, want 0", p)
	}
	if a := accepted.Load(); a != 1 {
		t.Errorf("upstream accepted %d connections, want 1", a)
	}
}

func TestH1ClientRetries408OnReusedConnection(t *testing.T) {
	const timedOut = "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
	// secondTimesOut answers the first request on a connection and times
	// out the second, as an upstream whose keep-alive timeout struck as
	// the request arrived; alwaysTimesOut answers 408 at once.
	secondTimesOut := func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err != nil {
			return
		}
		io.WriteString(c, okResponse)
		if _, err := readRequest(br); err == nil {
			io.WriteString(c, timedOut)
		}
	}
	alwaysTimesOut := func(c net.Conn, br *bufio.Reader) {
		if _, err := readRequest(br); err == nil {
			io.WriteString(c, timedOut)
		}
	}
	tests := []struct {
		name         string
		serve        func(net.Conn, *bufio.Reader)
		method       string
		body         string
		wantStatus   int
		wantAccepted int32
	}{
		{name: "GET on a reused connection is retried on a new one", serve: secondTimesOut,
			method: "GET", wantStatus: 200, wantAccepted: 2},
		{name: "PUT with a body already sent is not: the 408 is relayed", serve: secondTimesOut,
			method: "PUT", body: "x", wantStatus: 408, wantAccepted: 1},
		{name: "POST is not retried: the 408 is relayed", serve: secondTimesOut,
			method: "POST", wantStatus: 408, wantAccepted: 1},
		{name: "a 408 on a new connection is the upstream's answer", serve: alwaysTimesOut,
			method: "GET", wantStatus: 408, wantAccepted: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, accepted := rawUpstream(t, tt.serve)
			c := h1Pool(t, addr, nil).Endpoints[0].Client().(*upstream.H1Client)
			if r, err := roundTrip(context.Background(), c, "GET", "/", nil, 0); err != nil {
				t.Fatalf("first request: %+v, %v", r, err)
			}
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			r, err := roundTrip(context.Background(), c, tt.method, "/", body, int64(len(tt.body)))
			if err != nil || r.status != tt.wantStatus {
				t.Fatalf("second request: %+v, %v; want status %d", r, err, tt.wantStatus)
			}
			if n := accepted.Load(); n != tt.wantAccepted {
				t.Errorf("upstream accepted %d connections, want %d", n, tt.wantAccepted)
			}
		})
	}
}
