package admission

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond (a state another goroutine reaches) for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestLimiter(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"admits up to the limit, then rejects without a queue", func(t *testing.T) {
			l := NewLimiter(2, 0, time.Second)
			for i := range 2 {
				if res := l.Acquire(ctx); res != Admitted {
					t.Fatalf("request %d: %v, want admitted", i+1, res)
				}
			}
			if res := l.Acquire(ctx); res != Rejected {
				t.Errorf("request 3: %v, want rejected", res)
			}
			if l.InFlight() != 2 || l.Queued() != 0 {
				t.Errorf("in flight %d, queued %d; want 2, 0", l.InFlight(), l.Queued())
			}
		}},
		{"a release frees a slot", func(t *testing.T) {
			l := NewLimiter(1, 0, time.Second)
			if !l.TryAcquire() || l.TryAcquire() {
				t.Fatal("want one slot")
			}
			l.Release()
			if !l.TryAcquire() {
				t.Error("the released slot is not free")
			}
		}},
		{"a limit below 1 is 1", func(t *testing.T) {
			l := NewLimiter(0, 0, time.Second)
			if l.Limit() != 1 || !l.TryAcquire() || l.TryAcquire() {
				t.Errorf("limit %d, want 1", l.Limit())
			}
		}},
		{"waiters are admitted in arrival order", func(t *testing.T) {
			l := NewLimiter(1, 3, time.Minute)
			l.TryAcquire()
			order := make(chan int, 3)
			for i := 1; i <= 3; i++ {
				go func() {
					if res := l.Acquire(ctx); res != Admitted {
						t.Errorf("waiter %d: %v", i, res)
					}
					order <- i
				}()
				waitFor(t, "the waiter to queue", func() bool { return l.Queued() == i })
			}
			for want := 1; want <= 3; want++ {
				l.Release() // the slot of the previous holder goes to the next waiter
				if got := <-order; got != want {
					t.Fatalf("admitted waiter %d, want %d", got, want)
				}
			}
			if l.InFlight() != 1 || l.Queued() != 0 {
				t.Errorf("in flight %d, queued %d; want 1, 0", l.InFlight(), l.Queued())
			}
		}},
		{"a full queue rejects", func(t *testing.T) {
			l := NewLimiter(1, 1, time.Minute)
			l.TryAcquire()
			done := make(chan Result)
			go func() { done <- l.Acquire(ctx) }()
			waitFor(t, "the waiter to queue", func() bool { return l.Queued() == 1 })
			if res := l.Acquire(ctx); res != Rejected {
				t.Errorf("second waiter: %v, want rejected", res)
			}
			l.Release()
			if res := <-done; res != Admitted {
				t.Errorf("first waiter: %v, want admitted", res)
			}
		}},
		{"a waiter times out and leaves the queue", func(t *testing.T) {
			l := NewLimiter(1, 2, 10*time.Millisecond)
			l.TryAcquire()
			if res := l.Acquire(ctx); res != TimedOut {
				t.Errorf("waiter: %v, want queue_timeout", res)
			}
			if l.Queued() != 0 || l.InFlight() != 1 {
				t.Errorf("in flight %d, queued %d; want 1, 0", l.InFlight(), l.Queued())
			}
			l.Release()
			if l.InFlight() != 0 {
				t.Errorf("in flight %d after the release, want 0", l.InFlight())
			}
		}},
		{"a waiter whose client leaves gets no slot", func(t *testing.T) {
			l := NewLimiter(1, 2, time.Minute)
			l.TryAcquire()
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan Result)
			go func() { done <- l.Acquire(cctx) }()
			waitFor(t, "the waiter to queue", func() bool { return l.Queued() == 1 })
			cancel()
			if res := <-done; res != Canceled {
				t.Errorf("waiter: %v, want canceled", res)
			}
			if l.Queued() != 0 || l.InFlight() != 1 {
				t.Errorf("in flight %d, queued %d; want 1, 0", l.InFlight(), l.Queued())
			}
		}},
		{"a newcomer does not overtake the queue", func(t *testing.T) {
			l := NewLimiter(1, 2, time.Minute)
			l.TryAcquire()
			done := make(chan Result)
			go func() { done <- l.Acquire(ctx) }()
			waitFor(t, "the waiter to queue", func() bool { return l.Queued() == 1 })
			l.SetLimit(1) // no change: still full
			if l.TryAcquire() {
				t.Fatal("a newcomer took a slot past the queue")
			}
			l.Release()
			<-done
		}},
		{"raising the limit admits waiters", func(t *testing.T) {
			l := NewLimiter(1, 2, time.Minute)
			l.TryAcquire()
			done := make(chan Result, 2)
			for i := 1; i <= 2; i++ {
				go func() { done <- l.Acquire(ctx) }()
				waitFor(t, "the waiter to queue", func() bool { return l.Queued() == i })
			}
			l.SetLimit(3)
			for range 2 {
				if res := <-done; res != Admitted {
					t.Errorf("waiter: %v, want admitted", res)
				}
			}
			if l.InFlight() != 3 {
				t.Errorf("in flight %d, want 3", l.InFlight())
			}
		}},
		{"lowering the limit preempts nobody", func(t *testing.T) {
			l := NewLimiter(3, 0, time.Minute)
			for range 3 {
				l.TryAcquire()
			}
			l.SetLimit(1)
			if l.InFlight() != 3 || l.TryAcquire() {
				t.Fatalf("in flight %d; want 3 and no admission", l.InFlight())
			}
			l.Release()
			l.Release()
			if l.TryAcquire() {
				t.Error("admitted with 1 in flight at limit 1")
			}
			l.Release()
			if !l.TryAcquire() {
				t.Error("not admitted with 0 in flight at limit 1")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

// TestLimiterNeverExceedsLimit runs bounded concurrent traffic through a
// small limit with a queue: the count of holders never passes the limit,
// and every request ends admitted, rejected or timed out with the
// accounting back at zero.
func TestLimiterNeverExceedsLimit(t *testing.T) {
	const limit, workers, rounds = 4, 16, 200
	l := NewLimiter(limit, 8, 50*time.Millisecond)
	var holders, peak atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				if l.Acquire(context.Background()) != Admitted {
					continue
				}
				n := holders.Add(1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				holders.Add(-1)
				l.Release()
			}
		})
	}
	wg.Wait()
	if p := peak.Load(); p > limit {
		t.Errorf("%d holders at once, limit %d", p, limit)
	}
	if l.InFlight() != 0 || l.Queued() != 0 {
		t.Errorf("in flight %d, queued %d after the run; want 0, 0", l.InFlight(), l.Queued())
	}
}
