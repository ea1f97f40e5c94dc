package admission

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkLimiter is the admission decision of a fixed limit under it:
// one compare-and-swap to take the slot and one add to give it back.
func BenchmarkLimiter(b *testing.B) {
	l := NewLimiter(1<<20, 0, time.Second)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if l.Acquire(ctx) != Admitted {
				b.Fatal("rejected")
			}
			l.Release()
		}
	})
}

// BenchmarkLimiterRejected is the decision at the limit without a queue.
func BenchmarkLimiterRejected(b *testing.B) {
	l := NewLimiter(1, 0, time.Second)
	l.TryAcquire()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if l.Acquire(ctx) != Rejected {
				b.Fatal("admitted")
			}
		}
	})
}

// BenchmarkGradient is a request's whole cost under an adaptive limit:
// the decision, the peak, the release and the latency sample (with the
// limit recomputed once per window).
func BenchmarkGradient(b *testing.B) {
	g := NewGradient(NewLimiter(1, 0, time.Second), GradientConfig{MinLimit: 1 << 20, MaxLimit: 1 << 20, Window: time.Millisecond})
	l := g.Limiter()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			epoch := g.Epoch()
			if l.Acquire(ctx) != Admitted {
				b.Fatal("rejected")
			}
			g.Admitted()
			l.Release()
			g.Sample(epoch, 5*time.Millisecond)
		}
	})
}

// BenchmarkKeyed is the decision of a per-client limit (a shard lock and a
// map look-up), for a key with requests in flight already.
func BenchmarkKeyed(b *testing.B) {
	k := NewKeyed(1<<20, 0, time.Second, 100)
	key := Key{Addr: netip.MustParseAddr("192.0.2.1")}
	ctx := context.Background()
	hold, _ := k.Acquire(ctx, key) // keeps the key's entry alive
	defer k.Release(hold)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e, res := k.Acquire(ctx, key)
			if res != Admitted {
				b.Fatal("rejected")
			}
			k.Release(e)
		}
	})
}
