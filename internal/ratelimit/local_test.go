package ratelimit

import (
	"strconv"
	"testing"
	"time"
)

const sec = int64(time.Second)

// step is one take in an algorithm table: at time at (ns), cost units, and
// what the decision must be.
type step struct {
	at, cost   int64
	allowed    bool
	remaining  int64
	retryAfter int64 // checked when > 0
}

func runSteps(t *testing.T, l *Local, steps []step) {
	t.Helper()
	for i, s := range steps {
		d := l.Take("k", s.cost, s.at)
		if d.Allowed != s.allowed || d.Remaining != s.remaining {
			t.Fatalf("step %d (t=%v cost=%d): allowed=%v remaining=%d, want %v %d", i, time.Duration(s.at), s.cost, d.Allowed, d.Remaining, s.allowed, s.remaining)
		}
		if s.retryAfter > 0 && d.RetryAfter != s.retryAfter {
			t.Fatalf("step %d: retry after %v, want %v", i, time.Duration(d.RetryAfter), time.Duration(s.retryAfter))
		}
	}
}

func TestTokenBucket(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int64
		steps []step
	}{
		{"starts full and empties by the burst", 1, 3, []step{
			{0, 1, true, 2, 0}, {0, 1, true, 1, 0}, {0, 1, true, 0, 0}, {0, 1, false, 0, sec},
		}},
		{"refills at the rate", 2, 2, []step{
			{0, 2, true, 0, 0}, {sec / 4, 1, false, 0, sec / 4}, {sec / 2, 1, true, 0, 0}, {sec, 1, true, 0, 0},
		}},
		{"never holds more than the burst", 10, 5, []step{
			{0, 5, true, 0, 0}, {100 * sec, 5, true, 0, 0}, {100 * sec, 1, false, 0, sec / 10},
		}},
		{"a cost above the burst never passes", 1, 3, []step{
			{0, 4, false, 3, 3 * sec}, {0, 3, true, 0, 0},
		}},
		{"a refused take costs nothing", 1, 2, []step{
			{0, 2, true, 0, 0}, {sec / 2, 1, false, 0, sec / 2}, {sec, 1, true, 0, 0},
		}},
		{"zero cost passes even when empty", 1, 1, []step{
			{0, 1, true, 0, 0}, {0, 0, true, 0, 0},
		}},
		{"a forward time jump refills to the burst", 1, 3, []step{
			{0, 3, true, 0, 0}, {1_000_000 * sec, 3, true, 0, 0}, {1_000_000 * sec, 1, false, 0, 0},
		}},
		{"a backward time jump adds no tokens", 1, 2, []step{
			{10 * sec, 2, true, 0, 0}, {5 * sec, 1, false, 0, 6 * sec}, {11 * sec, 1, true, 0, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewLocal(Params{Algorithm: TokenBucket, Rate: tt.rate, Burst: tt.burst}, 0)
			if err != nil {
				t.Fatal(err)
			}
			runSteps(t, l, tt.steps)
		})
	}
}

func TestSlidingWindow(t *testing.T) {
	w := 10 * sec
	tests := []struct {
		name  string
		count int64
		steps []step
	}{
		{"admits count in a window", 3, []step{
			{0, 1, true, 2, 0}, {sec, 1, true, 1, 0}, {2 * sec, 1, true, 0, 0}, {3 * sec, 1, false, 0, 0},
		}},
		{"the previous window weighs by its remaining share", 10, []step{
			{0, 10, true, 0, 0},
			// At 10 s the previous window (10) still counts fully: one unit
			// passes once a tenth of it has slid out.
			{w, 1, false, 0, sec},
			// At 15 s it counts 5: five more pass.
			{w + 5*sec, 5, true, 0, 0},
			{w + 5*sec, 1, false, 0, sec},
			// At 19 s it counts 1, with 5 in the current window: 4 pass.
			{w + 9*sec, 4, true, 0, 0},
		}},
		{"window edge: the last nanosecond is still the window", 2, []step{
			{w - 1, 2, true, 0, 0}, {w - 1, 1, false, 0, 0},
		}},
		{"an idle window forgets everything", 5, []step{
			{0, 5, true, 0, 0}, {2 * w, 5, true, 0, 0},
		}},
		{"a forward time jump forgets everything", 5, []step{
			{0, 5, true, 0, 0}, {1_000_000 * w, 5, true, 0, 0},
		}},
		{"a backward time jump stays in the window reached", 3, []step{
			{w + sec, 3, true, 0, 0}, {sec, 1, false, 0, 0}, {3 * w, 1, true, 2, 0},
		}},
		{"a cost above the count never passes", 3, []step{
			{0, 4, false, 3, w},
		}},
		{"refusal after the current window is full waits for the next", 4, []step{
			{5 * sec, 4, true, 0, 0},
			// cur 4 = limit: wait to the window's end (5 s), then until
			// 4×(w-y)/w + 1 <= 4, y = 2.5 s.
			{5 * sec, 1, false, 0, 5*sec + 5*sec/2},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := NewLocal(Params{Algorithm: SlidingWindow, Count: tt.count, Window: time.Duration(w)}, 0)
			if err != nil {
				t.Fatal(err)
			}
			runSteps(t, l, tt.steps)
		})
	}
}

// TestSlidingWindowFixedWindowBound checks the counter's guarantee: however
// the takes fall, no fixed window admits more than the count.
func TestSlidingWindowFixedWindowBound(t *testing.T) {
	w := int64(time.Second)
	l, _ := NewLocal(Params{Algorithm: SlidingWindow, Count: 100, Window: time.Duration(w)}, 0)
	per := map[int64]int64{}
	x := uint64(1)
	for now := int64(0); now < 20*w; now += w / 997 {
		x = x*6364136223846793005 + 1442695040888963407
		cost := int64(x>>60) + 1
		if l.Take("k", cost, now).Allowed {
			per[now/w] += cost
		}
	}
	for win, n := range per {
		if n > 100 {
			t.Errorf("window %d admitted %d > 100", win, n)
		}
	}
}

func TestRefund(t *testing.T) {
	for _, p := range []Params{
		{Algorithm: TokenBucket, Rate: 1, Burst: 2},
		{Algorithm: SlidingWindow, Count: 2, Window: time.Second},
	} {
		t.Run(strconv.Itoa(int(p.Algorithm)), func(t *testing.T) {
			l, _ := NewLocal(p, 0)
			d := l.Take("k", 2, 0)
			l.Refund(d)
			l.Refund(l.Take("k", 5, 0)) // refused: nothing to give back
			if d := l.Take("k", 2, 0); !d.Allowed {
				t.Fatal("refunded units were not given back")
			}
			if d := l.Take("k", 1, 0); d.Allowed {
				t.Fatal("refund gave back more than it took")
			}
		})
	}
}

func TestStoreBound(t *testing.T) {
	l, _ := NewLocal(Params{Algorithm: TokenBucket, Rate: 1, Burst: 1}, 640)
	for i := range 10_000 {
		l.Take("key-"+strconv.Itoa(i), 1, 0)
	}
	if n := l.Keys(); n > 640 {
		t.Errorf("%d keys kept, want <= 640", n)
	}
	if l.Evicted() < 10_000-640 {
		t.Errorf("evicted %d, want >= %d", l.Evicted(), 10_000-640)
	}
	// The most recent key is still there: its bucket is empty.
	if l.Take("key-9999", 1, 0).Allowed {
		t.Error("the most recently used key was evicted")
	}
}

func TestHottest(t *testing.T) {
	l, _ := NewLocal(Params{Algorithm: TokenBucket, Rate: 1, Burst: 1}, 0)
	for range 3 {
		l.Take("a", 1, 0)
	}
	l.Take("b", 1, 0)
	l.Take("b", 1, 0)
	l.Take("c", 1, 0)
	got := l.Hottest(2)
	if len(got) != 2 || got[0].Key != "a" || got[0].Refused != 2 || got[1].Key != "b" {
		t.Errorf("Hottest(2) = %+v", got)
	}
}

func TestNewLocalRefusesBadParams(t *testing.T) {
	for _, p := range []Params{
		{Algorithm: TokenBucket, Rate: 0, Burst: 1},
		{Algorithm: TokenBucket, Rate: 1, Burst: 0},
		{Algorithm: TokenBucket, Rate: 1e-9, Burst: 1 << 40},
		{Algorithm: SlidingWindow, Count: 0, Window: time.Second},
		{Algorithm: SlidingWindow, Count: 1},
		{},
	} {
		if _, err := NewLocal(p, 0); err == nil {
			t.Errorf("NewLocal(%+v) = nil error", p)
		}
	}
}

// BenchmarkLocalDecision is one decision on a known key: the cost every
// request with a local limit pays.
func BenchmarkLocalDecision(b *testing.B) {
	for _, p := range []Params{
		{Algorithm: TokenBucket, Rate: 1e6, Burst: 1e6},
		{Algorithm: SlidingWindow, Count: 1e9, Window: time.Second},
	} {
		name := map[Algorithm]string{TokenBucket: "token_bucket", SlidingWindow: "sliding_window"}[p.Algorithm]
		b.Run(name, func(b *testing.B) {
			l, _ := NewLocal(p, 0)
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = "tenant-" + strconv.Itoa(i)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i, now := 0, int64(0)
				for pb.Next() {
					now += 1000
					l.Take(keys[i&1023], 1, now)
					i++
				}
			})
		})
	}
}
