package upstream

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"testing"
	"time"
)

// The cold gate lets the first request through with a trace, holds the
// others until that request has its connection, and lets a held request go
// when its own context ends.
func TestColdGate(t *testing.T) {
	var g coldGate
	req := func(ctx context.Context) *http.Request {
		r, _ := http.NewRequestWithContext(ctx, "GET", "http://x/", nil)
		return r
	}
	first, open := g.enter(req(context.Background()))
	trace := httptrace.ContextClientTrace(first.Context())
	if trace == nil || trace.GotConn == nil {
		t.Fatal("the first request is not traced for its connection")
	}

	released := make(chan struct{})
	go func() {
		g.enter(req(context.Background()))
		close(released)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan struct{})
	go func() {
		g.enter(req(ctx))
		close(gaveUp)
	}()
	select {
	case <-released:
		t.Fatal("a second request went through before the first had a connection")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case <-gaveUp:
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting request whose context ended still waits")
	}
	trace.GotConn(httptrace.GotConnInfo{})
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the first request got its connection, the second still waits")
	}
	open() // after the round trip too: harmless
	// The gate is open again: the next cold burst has a new first.
	if r, _ := g.enter(req(context.Background())); httptrace.ContextClientTrace(r.Context()) == nil {
		t.Error("after the gate opened, the next request is not a new first")
	}
}
