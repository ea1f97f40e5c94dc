package proxy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBudget checks the budget against its definition, retries ≤ ratio ×
// requests + floor over the window, on an injected clock: the floor alone,
// the ratio, the window sliding past old counts, and a clock far from 0.
func TestBudget(t *testing.T) {
	const window = 10 * time.Second
	sec := int64(time.Second)
	type step struct {
		at       int64 // nanoseconds
		requests int
		retries  int // retries asked for
		allowed  int // of which the budget allows
	}
	tests := []struct {
		name                  string
		percent, minPerSecond float64
		steps                 []step
	}{
		{name: "floor only, no requests", percent: 20, minPerSecond: 1, steps: []step{
			{at: 0, retries: 15, allowed: 10},
		}},
		{name: "ratio of the requests", percent: 20, minPerSecond: 0, steps: []step{
			{at: 0, requests: 100, retries: 30, allowed: 20},
			{at: 5 * sec, requests: 50, retries: 30, allowed: 10},
		}},
		{name: "no retries at all", percent: 0, minPerSecond: 0, steps: []step{
			{at: 0, requests: 1000, retries: 5, allowed: 0},
		}},
		{name: "the window slides past old requests and retries", percent: 50, minPerSecond: 0, steps: []step{
			{at: 0, requests: 10, retries: 10, allowed: 5},
			// 9.9 s later the first slot still counts: nothing left.
			{at: 9*sec + sec/2, retries: 1, allowed: 0},
			// 10 s later it has slid out, requests and retries alike.
			{at: 10 * sec, requests: 4, retries: 5, allowed: 2},
		}},
		{name: "retries refused are not counted", percent: 10, minPerSecond: 0, steps: []step{
			{at: 0, requests: 10, retries: 100, allowed: 1},
			{at: sec, requests: 10, retries: 100, allowed: 1},
		}},
		{name: "a clock far from zero (slot numbers past 2^32 wrap)", percent: 20, minPerSecond: 0, steps: []step{
			{at: 1<<32*int64(window/budgetSlots) - sec, requests: 50, retries: 20, allowed: 10},
			{at: 1<<32*int64(window/budgetSlots) + sec, requests: 50, retries: 20, allowed: 10},
			{at: 1<<32*int64(window/budgetSlots) + 12*sec, requests: 5, retries: 20, allowed: 1},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(tc.percent, tc.minPerSecond, window)
			for i, s := range tc.steps {
				for range s.requests {
					b.Request(s.at)
				}
				got := 0
				for range s.retries {
					if b.Withdraw(s.at) {
						got++
					}
				}
				if got != s.allowed {
					reqs, rets := b.Usage(s.at)
					t.Errorf("step %d: %d of %d retries allowed, want %d (window holds %d requests, %d retries)",
						i, got, s.retries, s.allowed, reqs, rets)
				}
			}
		})
	}
}

// TestBudgetConcurrentWithdrawalsNeverOverdraw: many goroutines asking at
// once get at most what the budget holds.
func TestBudgetConcurrentWithdrawalsNeverOverdraw(t *testing.T) {
	b := NewBudget(20, 0, 10*time.Second)
	for range 1000 {
		b.Request(0)
	}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if b.Withdraw(0) {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n > 200 || n < 1 {
		t.Errorf("%d retries allowed, want 1 to 200", n)
	}
}

func BenchmarkBudgetRequest(b *testing.B) {
	bu := NewBudget(20, 10, 10*time.Second)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bu.Request(monotime())
		}
	})
}
