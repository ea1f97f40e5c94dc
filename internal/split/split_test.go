package split

import (
	"io"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/exchange/exchangetest"
)

type counter struct{ n atomic.Int64 }

func (c *counter) Inc() { c.n.Add(1) }

// named answers with its name, so a test sees which arm served.
type named string

func (n named) ServeExchange(x *exchange.Exchange) { x.W.WriteHeader(200); x.W.Write([]byte(n)) }

func newSplitter(cfg *config.RouteSplit, m *Mirror) (*Splitter, []*counter) {
	arms := make([]Arm, len(cfg.Arms))
	counts := make([]*counter, len(cfg.Arms))
	for i, a := range cfg.Arms {
		counts[i] = &counter{}
		arms[i] = Arm{Name: a.Name, Next: named(a.Name), Requests: counts[i]}
	}
	return New(cfg, arms, m, nil), counts
}

// TestChoose checks which arm a request gets from its headers, cookies and
// address, each mode and force in turn.
func TestChoose(t *testing.T) {
	arms := []config.SplitArm{{Name: "stable", Upstream: "a", Weight: 1}, {Name: "canary", Upstream: "b", Weight: 1}}
	tests := []struct {
		name   string
		split  config.RouteSplit
		header []string // name, value pairs
		addr   string
		want   func(s *Splitter) int
	}{
		{name: "force by arm name", split: config.RouteSplit{Arms: arms, By: "weight", Force: &config.SplitForce{Header: "x-arm"}},
			header: []string{"X-Arm", "canary"}, want: func(*Splitter) int { return 1 }},
		{name: "force by mapped value", split: config.RouteSplit{Arms: arms, By: "weight",
			Force: &config.SplitForce{Header: "x-model-version", Values: map[string]string{"v2": "canary"}}},
			header: []string{"X-Model-Version", "v2"}, want: func(*Splitter) int { return 1 }},
		{name: "force by cookie in a second field", split: config.RouteSplit{Arms: arms, By: "weight", Force: &config.SplitForce{Cookie: "arm"}},
			header: []string{"Cookie", "a=1", "Cookie", "arm=stable"}, want: func(*Splitter) int { return 0 }},
		{name: "key header", split: config.RouteSplit{Arms: arms, By: "key", Key: config.SplitSource{Header: "x-tenant"}},
			header: []string{"X-Tenant", "acme"}, want: func(s *Splitter) int { return s.sel.Hash(KeyHash("acme")) }},
		{name: "key cookie", split: config.RouteSplit{Arms: arms, By: "key", Key: config.SplitSource{Cookie: "session"}},
			header: []string{"Cookie", "session=abc"}, want: func(s *Splitter) int { return s.sel.Hash(KeyHash("abc")) }},
		{name: "key falls back to the client address", split: config.RouteSplit{Arms: arms, By: "key", Key: config.SplitSource{Header: "x-tenant"}},
			addr: "192.0.2.7:1234", want: func(s *Splitter) int {
				ip := netip.MustParseAddr("192.0.2.7").As16()
				return s.sel.Hash(bytesHash(ip[:]))
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newSplitter(&tc.split, nil)
			for range 20 {
				x, _ := exchangetest.NewExchange(t, "GET")
				for i := 0; i < len(tc.header); i += 2 {
					x.Req.Header.Add(tc.header[i], tc.header[i+1])
				}
				if tc.addr != "" {
					x.Req.RemoteAddr = netip.MustParseAddrPort(tc.addr)
				}
				if got, want := s.Choose(x), tc.want(s); got != want {
					t.Fatalf("arm %d, want %d", got, want)
				}
			}
		})
	}
}

// TestServeExchange checks what serving records: the arm in the state, the
// arm header, the arm's counter.
func TestServeExchange(t *testing.T) {
	cfg := config.RouteSplit{By: "weight", ArmHeader: "X-Penstock-Arm",
		Arms: []config.SplitArm{{Name: "stable", Upstream: "a", Weight: 0}, {Name: "canary", Upstream: "b", Weight: 1}}}
	s, counts := newSplitter(&cfg, nil)
	x, rec := exchangetest.NewExchange(t, "GET")
	s.ServeExchange(x)
	if x.State.Arm != "canary" || string(rec.Body) != "canary" || counts[1].n.Load() != 1 || counts[0].n.Load() != 0 {
		t.Errorf("arm %q, body %q, counts %d/%d", x.State.Arm, rec.Body, counts[0].n.Load(), counts[1].n.Load())
	}
	if v := exchangetest.HeaderValues(&rec.Hdr, "X-Penstock-Arm"); len(v) != 1 || v[0] != "canary" {
		t.Errorf("X-Penstock-Arm %v, want [canary]", v)
	}
}

// held is a shadow that holds each copy until released.
type held struct {
	arrived chan string
	release chan struct{}
}

func (h *held) ServeExchange(x *exchange.Exchange) {
	h.arrived <- x.Req.Method + " " + x.Req.Path + "?" + x.Req.Query
	<-h.release
}

// TestMirror checks the mirror's bound: copies beyond max_queue are
// dropped at once, requests with a body are skipped, and a copy carries
// the request after the client's exchange is reused.
func TestMirror(t *testing.T) {
	h := &held{arrived: make(chan string, 10), release: make(chan struct{})}
	m := NewMirror(h, 100, 2, time.Second, 0)
	var copied, dropped, skipped counter
	m.Copied, m.Dropped, m.Skipped = &copied, &dropped, &skipped
	for i := range 4 {
		x, _ := exchangetest.NewExchange(t, "GET")
		x.Req.Path, x.Req.Query = "/m", strings.Repeat("q", i+1)
		x.Req.Header.Add("X-Tenant", "acme")
		m.Offer(x) // returns at once, whatever the shadow does
		// The engine reuses the client's exchange once its handler returns.
		x.Req.Path, x.Req.Query = "/reused", ""
	}
	x, _ := exchangetest.NewExchange(t, "POST")
	x.Req.ContentLength = 5
	x.Req.Body = io.NopCloser(strings.NewReader("hello"))
	m.Offer(x)
	if copied.n.Load() != 2 || dropped.n.Load() != 2 || skipped.n.Load() != 1 || m.Pending() != 2 {
		t.Fatalf("copied %d, dropped %d, skipped %d, pending %d; want 2, 2, 1, 2",
			copied.n.Load(), dropped.n.Load(), skipped.n.Load(), m.Pending())
	}
	got := map[string]bool{<-h.arrived: true, <-h.arrived: true}
	if !got["GET /m?q"] || !got["GET /m?qq"] {
		t.Errorf("shadow saw %v, want the first two requests", got)
	}
	close(h.release)
	deadline := time.Now().Add(5 * time.Second)
	for m.Pending() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if m.Pending() != 0 {
		t.Errorf("%d copies still pending after the shadow answered", m.Pending())
	}
}

// BenchmarkChoose measures choosing an arm, by mode: no allocation.
func BenchmarkChoose(b *testing.B) {
	arms := []config.SplitArm{{Name: "stable", Upstream: "a", Weight: 90}, {Name: "canary", Upstream: "b", Weight: 10}}
	for _, bc := range []struct {
		name  string
		split config.RouteSplit
	}{
		{"weight", config.RouteSplit{Arms: arms, By: "weight"}},
		{"trace_id", config.RouteSplit{Arms: arms, By: "trace_id"}},
		{"key header", config.RouteSplit{Arms: arms, By: "key", Key: config.SplitSource{Header: "x-tenant"}}},
		{"force cookie, absent", config.RouteSplit{Arms: arms, By: "weight", Force: &config.SplitForce{Cookie: "arm"}}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, _ := newSplitter(&bc.split, nil)
			x, _ := exchangetest.NewExchange(b, "GET")
			x.Req.Header.Add("X-Tenant", "acme")
			x.Req.Header.Add("Cookie", "session=abc; theme=dark")
			x.State.Trace.TraceID = [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
			b.ReportAllocs()
			for b.Loop() {
				s.Choose(x)
			}
		})
	}
}
