package admission

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

const (
	testWindow = 100 * time.Millisecond
	testMinRTT = 10 * time.Millisecond
)

// newTestGradient returns a gradient on a fake clock whose first probe has
// measured minRTT = 10ms.
func newTestGradient(t *testing.T, cfg GradientConfig) (*Gradient, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Unix(1_000_000, 0)}
	cfg.Now = clock.Now
	cfg.Rand = func() float64 { return 0 }
	if cfg.Window == 0 {
		cfg.Window = testWindow
	}
	if cfg.MinRTTSamples == 0 {
		cfg.MinRTTSamples = 5
	}
	if cfg.Tolerance == 0 {
		cfg.Tolerance = 1.5
	}
	g := NewGradient(NewLimiter(1, 0, time.Second), cfg)
	for range cfg.MinRTTSamples {
		g.Sample(g.Epoch(), testMinRTT)
	}
	if g.Probing() {
		t.Fatal("the first probe did not end after MinRTTSamples samples")
	}
	return g, clock
}

// window ends one sample window in which the requests' latency was rtt
// and the peak in-flight count was busy.
func window(g *Gradient, clock *fakeClock, rtt time.Duration, busy int) {
	l := g.Limiter()
	for range busy {
		l.inflight.Add(1)
		g.Admitted()
	}
	l.inflight.Add(-int64(busy))
	for range 10 {
		g.Sample(g.Epoch(), rtt)
	}
	clock.advance(g.cfg.Window)
	g.Sample(g.Epoch(), rtt)
}

func near(got, want time.Duration) bool {
	return math.Abs(float64(got-want)) <= float64(want)/16
}

func TestGradientProbe(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"starts with a probe at min_limit", func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_000_000, 0)}
			g := NewGradient(NewLimiter(50, 0, time.Second), GradientConfig{MinLimit: 2, InitialLimit: 30, Now: clock.Now})
			if !g.Probing() || g.Limiter().Limit() != 2 || g.MinRTT() != 0 {
				t.Errorf("probing %v, limit %d, minRTT %s; want true, 2, 0", g.Probing(), g.Limiter().Limit(), g.MinRTT())
			}
		}},
		{"the probe's percentile is minRTT and the limit returns", func(t *testing.T) {
			g, _ := newTestGradient(t, GradientConfig{InitialLimit: 30})
			if !near(g.MinRTT(), testMinRTT) {
				t.Errorf("minRTT %s, want about %s", g.MinRTT(), testMinRTT)
			}
			if g.Limiter().Limit() != 30 {
				t.Errorf("limit %d after the probe, want the initial 30", g.Limiter().Limit())
			}
		}},
		{"requests admitted before the probe do not count", func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_000_000, 0)}
			g := NewGradient(NewLimiter(1, 0, time.Second), GradientConfig{MinRTTSamples: 3, Now: clock.Now})
			old := g.Epoch() - 1
			for range 10 {
				g.Sample(old, time.Second)
			}
			if !g.Probing() {
				t.Fatal("samples from before the probe ended it")
			}
			for range 3 {
				g.Sample(g.Epoch(), testMinRTT)
			}
			if !near(g.MinRTT(), testMinRTT) {
				t.Errorf("minRTT %s, want about %s", g.MinRTT(), testMinRTT)
			}
		}},
		{"a probe runs again after min_rtt_interval and measures the new latency", func(t *testing.T) {
			g, clock := newTestGradient(t, GradientConfig{MinRTTInterval: time.Second, InitialLimit: 40})
			clock.advance(time.Second)
			g.Sample(g.Epoch(), testMinRTT)
			if !g.Probing() || g.Limiter().Limit() != DefaultMinLimit {
				t.Fatalf("probing %v, limit %d; want a probe at %d", g.Probing(), g.Limiter().Limit(), DefaultMinLimit)
			}
			for range 5 {
				g.Sample(g.Epoch(), 3*testMinRTT)
			}
			if g.Probing() || !near(g.MinRTT(), 3*testMinRTT) {
				t.Errorf("probing %v, minRTT %s; want a finished probe of about %s", g.Probing(), g.MinRTT(), 3*testMinRTT)
			}
			if g.Limiter().Limit() != 40 {
				t.Errorf("limit %d after the probe, want 40 as before it", g.Limiter().Limit())
			}
		}},
		{"a probe that cannot finish ends at its deadline with the samples it has", func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_000_000, 0)}
			g := NewGradient(NewLimiter(1, 0, time.Second), GradientConfig{InitialLimit: 30, Window: testWindow, Now: clock.Now})
			for range 3 {
				g.Sample(g.Epoch(), testMinRTT)
			}
			clock.advance(probeWindows*testWindow - 1)
			g.Refused()
			if !g.Probing() {
				t.Fatal("the probe ended before its deadline")
			}
			clock.advance(1)
			g.Refused()
			if g.Probing() || !near(g.MinRTT(), testMinRTT) || g.Limiter().Limit() != 30 {
				t.Errorf("probing %v, minRTT %s, limit %d; want an ended probe, about %s, 30", g.Probing(), g.MinRTT(), g.Limiter().Limit(), testMinRTT)
			}
		}},
		{"a probe without samples keeps the limit and probes again", func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1_000_000, 0)}
			g := NewGradient(NewLimiter(1, 0, time.Second), GradientConfig{InitialLimit: 30, Window: testWindow, Now: clock.Now})
			clock.advance(probeWindows * testWindow)
			g.Refused()
			if g.Probing() || g.MinRTT() != 0 || g.Limiter().Limit() != 30 {
				t.Fatalf("probing %v, minRTT %s, limit %d; want no probe, 0, 30", g.Probing(), g.MinRTT(), g.Limiter().Limit())
			}
			window(g, clock, 10*testMinRTT, 30)
			if g.Limiter().Limit() != 30 {
				t.Errorf("limit %d without a minRTT, want 30 unchanged", g.Limiter().Limit())
			}
			clock.advance(probeWindows * testWindow)
			g.Sample(g.Epoch(), testMinRTT)
			if !g.Probing() {
				t.Error("no second probe")
			}
		}},
		{"an upstream that got slower is measured again and the limit grows back", func(t *testing.T) {
			g, clock := newTestGradient(t, GradientConfig{InitialLimit: 30, MinLimit: 3, Tolerance: 1.25})
			// Twice as slow: the limit falls to its floor (4 here, above
			// min_limit), stays there, and a probe follows.
			probed := false
			for range 20 {
				window(g, clock, 2*testMinRTT, 30)
				if probed = g.Probing(); probed {
					break
				}
			}
			if !probed {
				t.Fatalf("no probe after 20 slow windows; limit %d", g.Limiter().Limit())
			}
			for range 5 {
				g.Sample(g.Epoch(), 2*testMinRTT)
			}
			if !near(g.MinRTT(), 2*testMinRTT) {
				t.Errorf("minRTT %s, want about %s", g.MinRTT(), 2*testMinRTT)
			}
			for range 10 {
				window(g, clock, 2*testMinRTT, 100)
			}
			if g.Limiter().Limit() < 20 {
				t.Errorf("limit %d after the new measurement, want it grown back", g.Limiter().Limit())
			}
		}},
		{"five windows at min_limit start a probe", func(t *testing.T) {
			g, clock := newTestGradient(t, GradientConfig{InitialLimit: 3, MinLimit: 3})
			for range minWindowsStop {
				window(g, clock, 10*testMinRTT, 3)
			}
			if g.Probing() {
				t.Fatal("probing before a window found the limit stuck")
			}
			window(g, clock, 10*testMinRTT, 3)
			if !g.Probing() {
				t.Error("no probe after 5 windows at min_limit")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func TestGradientLimit(t *testing.T) {
	type step struct {
		rtt  time.Duration
		busy int // peak in flight in the window
	}
	repeat := func(n int, s step) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = s
		}
		return out
	}
	tests := []struct {
		name    string
		cfg     GradientConfig
		steps   []step
		check   func(limits []int) string
		comment string
	}{
		{
			name:  "latency at 3× minRTT halves the limit, plus headroom",
			cfg:   GradientConfig{InitialLimit: 100},
			steps: []step{{3 * testMinRTT, 100}},
			// gradient = 1.5 × 10 / 30 = 0.5 → 50 + √50 ≈ 57 (58 with the
			// histogram's rounding)
			check: func(l []int) string { return expect(l[0] >= 55 && l[0] <= 60, "limit %d, want about 57", l[0]) },
		},
		{
			name:  "latency within tolerance keeps the limit growing slowly",
			cfg:   GradientConfig{InitialLimit: 100},
			steps: []step{{15 * testMinRTT / 10, 100}},
			// gradient = 1 → 100 + √100 = 110 (112 with the histogram's
			// rounding)
			check: func(l []int) string { return expect(l[0] >= 105 && l[0] <= 115, "limit %d, want about 110", l[0]) },
		},
		{
			name:  "rising latency shrinks the limit to min_limit and no lower",
			cfg:   GradientConfig{InitialLimit: 200, MinLimit: 4},
			steps: repeat(12, step{20 * testMinRTT, 200}),
			check: func(l []int) string {
				return expect(l[0] < 200 && l[1] < l[0] && l[8] == 4 && slices.Min(l) == 4, "limits %v, want falling to 4 and no lower", l)
			},
		},
		{
			name:  "falling latency grows it back, at most ×2 a window, to max_limit and no higher",
			cfg:   GradientConfig{InitialLimit: 10, MaxLimit: 300},
			steps: repeat(8, step{testMinRTT / 2, 1000}),
			check: func(l []int) string {
				ok := l[0] > 10 && l[0] <= 2*10+5 && l[1] > l[0] && l[7] == 300
				return expect(ok, "limits %v, want rising to 300", l)
			},
		},
		{
			name:  "shrinks when the upstream slows, then grows back when it recovers",
			cfg:   GradientConfig{InitialLimit: 100},
			steps: append(repeat(3, step{4 * testMinRTT, 100}), repeat(6, step{testMinRTT, 200})...),
			check: func(l []int) string {
				ok := l[2] < 40 && l[8] > 100
				return expect(ok, "limits %v, want below 40 after the slow windows and above 100 after recovery", l)
			},
		},
		{
			name:  "light load does not grow the limit",
			cfg:   GradientConfig{InitialLimit: 100},
			steps: repeat(3, step{testMinRTT, 10}),
			check: func(l []int) string { return expect(l[2] == 100, "limits %v, want 100 throughout", l) },
		},
		{
			name:  "a window without samples keeps the limit",
			cfg:   GradientConfig{InitialLimit: 100},
			steps: []step{{0, 100}},
			check: func(l []int) string { return expect(l[0] == 100, "limit %d, want 100", l[0]) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, clock := newTestGradient(t, tt.cfg)
			var limits []int
			for _, s := range tt.steps {
				if s.rtt == 0 {
					clock.advance(testWindow)
					g.mu.Lock()
					g.update(g.now())
					g.mu.Unlock()
				} else {
					window(g, clock, s.rtt, s.busy)
				}
				limits = append(limits, g.Limiter().Limit())
			}
			if msg := tt.check(limits); msg != "" {
				t.Error(msg)
			}
		})
	}
}

func expect(ok bool, format string, args ...any) string {
	if ok {
		return ""
	}
	return fmt.Sprintf(format, args...)
}

func TestHistogram(t *testing.T) {
	for _, ns := range []uint64{0, 1, 15, 16, 17, 31, 32, 1000, 999_999, 10_000_000, 1 << 40} {
		b := bucketOf(ns)
		v := bucketValue(b)
		if ns >= 16 && math.Abs(float64(v)-float64(ns)) > float64(ns)/16 {
			t.Errorf("%d ns: bucket %d stands for %d, more than 1/16 off", ns, b, v)
		}
		if b > 0 && bucketOf(ns+ns/8+1) <= b {
			t.Errorf("%d ns: a value 1/8 higher is in the same or a lower bucket", ns)
		}
	}
	fill := func(h *histogram) *histogram {
		for i := 1; i <= 100; i++ {
			h.add(time.Duration(i) * time.Millisecond)
		}
		return h
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.9, 90 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}}
	for _, tt := range tests {
		got, n := fill(new(histogram)).drain(tt.q)
		if n != 100 || !near(got, tt.want) {
			t.Errorf("q%g: %s of %d samples, want about %s of 100", tt.q, got, n, tt.want)
		}
	}
	h := fill(new(histogram))
	if _, n := h.drain(0.5); n != 100 {
		t.Fatalf("drain saw %d samples, want 100", n)
	}
	if _, n := h.drain(0.5); n != 0 {
		t.Errorf("a drained histogram still has %d samples", n)
	}
}
