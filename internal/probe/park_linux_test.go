package probe

import (
	"context"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// quietServer accepts connections and says nothing until told: say writes
// line to every connection accepted so far.
type quietServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func startQuietServer(t *testing.T) *quietServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &quietServer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

func (s *quietServer) accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *quietServer) say(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Write([]byte(line))
	}
}

func TestParkedProbesHoldNoGoroutine(t *testing.T) {
	const n = 200
	srv := startQuietServer(t)
	mods := modules(t, "modules:\n  banner:\n    prober: tcp\n    timeout: 1m\n    tcp:\n      query_response: [{expect: '^hello'}]\n")
	m := mods.Modules["banner"]
	p := &Prober{}
	before := runtime.NumGoroutine()
	results := make(chan *Result, n)
	for range n {
		p.Start(context.Background(), srv.ln.Addr().String(), "banner", m, func(r *Result) { results <- r })
	}
	waitFor(t, "connections", time.Minute, func() bool { return srv.accepted() == n })
	// Parking follows the accept within microseconds, but the machine
	// may be loaded: wait for the goroutines to end rather than assume.
	var got int
	waitFor(t, "probes to park", time.Minute, func() bool {
		got = runtime.NumGoroutine() - before
		return got < n/4
	})
	// A partial line, then the rest: the probe parks in between.
	srv.say("hel")
	time.Sleep(50 * time.Millisecond)
	srv.say("lo there\r\n")
	for range n {
		select {
		case r := <-results:
			if !r.Success {
				t.Fatalf("probe failed: %s (%s)", r.Error, r.Reason)
			}
		case <-time.After(time.Minute):
			t.Fatal("probes did not finish")
		}
	}
}

func TestParkedProbeEnds(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout string
		cancel  bool
		want    Reason
	}{
		{name: "at the module's timeout", timeout: "300ms", want: ReasonTimeout},
		{name: "when its context ends", timeout: "1m", cancel: true, want: ReasonTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startQuietServer(t)
			mods := modules(t, "modules:\n  banner:\n    prober: tcp\n    timeout: "+tc.timeout+"\n    tcp:\n      query_response: [{expect: '^hello'}]\n")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var done atomic.Pointer[Result]
			(&Prober{}).Start(ctx, srv.ln.Addr().String(), "banner", mods.Modules["banner"], func(r *Result) { done.Store(r) })
			waitFor(t, "connection", time.Minute, func() bool { return srv.accepted() == 1 })
			if tc.cancel {
				time.Sleep(50 * time.Millisecond)
				cancel()
			}
			waitFor(t, "the probe to end", time.Minute, func() bool { return done.Load() != nil })
			if r := done.Load(); r.Success || r.Reason != tc.want {
				t.Fatalf("success %v, reason %q (%s), want reason %q", r.Success, r.Reason, r.Error, tc.want)
			}
		})
	}
}
