package admission

import (
	"context"
	"testing"
	"time"
)

// fill holds the queue's only slot and queues reqs in order, each in its
// own goroutine; it returns the order they are admitted in as the slot is
// passed on, one at a time.
func admittedOrder(t *testing.T, q *Queue, reqs []QueueRequest) []int {
	t.Helper()
	if q.Acquire(context.Background(), QueueRequest{}) != Admitted {
		t.Fatal("the first request was not admitted")
	}
	order := make(chan int, len(reqs))
	for i, r := range reqs {
		go func() {
			if res := q.Acquire(context.Background(), r); res == Admitted {
				order <- i
			} else {
				order <- -1 - i
			}
		}()
		// Queued one after the other, so arrival order is known.
		for deadline := time.Now().Add(10 * time.Second); q.Queued() != i+1; time.Sleep(100 * time.Microsecond) {
			if time.Now().After(deadline) {
				t.Fatalf("request %d not queued", i)
			}
		}
	}
	var got []int
	for range reqs {
		q.Release(0)
		got = append(got, <-order)
	}
	q.Release(0)
	return got
}

func TestQueueOrder(t *testing.T) {
	far := time.Now().Add(time.Hour)
	levels := []QueueLevel{{MaxQueue: 100, MaxWait: time.Minute}, {MaxQueue: 100, MaxWait: time.Minute}}
	tests := []struct {
		name string
		reqs []QueueRequest
		want []int
	}{
		{"one level, one tenant: arrival order", []QueueRequest{{}, {}, {}}, []int{0, 1, 2}},
		{"a higher level goes first", []QueueRequest{{Level: 1}, {Level: 1}, {Level: 0}}, []int{2, 0, 1}},
		{"earliest deadline first, no deadline last", []QueueRequest{
			{}, {Deadline: far.Add(2 * time.Second)}, {Deadline: far.Add(time.Second)},
		}, []int{2, 1, 0}},
		{"tenants take turns", []QueueRequest{
			{Tenant: "a"}, {Tenant: "a"}, {Tenant: "a"}, {Tenant: "b"}, {Tenant: "b"},
		}, []int{0, 3, 1, 4, 2}},
		{"a tenant of weight 2 gets two turns for one", []QueueRequest{
			{Tenant: "a", Weight: 1}, {Tenant: "a", Weight: 1}, {Tenant: "b", Weight: 2}, {Tenant: "b", Weight: 2}, {Tenant: "b", Weight: 2}, {Tenant: "b", Weight: 2},
		}, []int{0, 2, 3, 1, 4, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := NewQueue(QueueConfig{Limit: 1, Levels: levels})
			got := admittedOrder(t, q, tt.reqs)
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("admitted %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestQueueRefusals(t *testing.T) {
	t.Run("a deadline already passed", func(t *testing.T) {
		q := NewQueue(QueueConfig{Limit: 1, Levels: []QueueLevel{{MaxQueue: 1, MaxWait: time.Minute}}})
		if res := q.Acquire(context.Background(), QueueRequest{Deadline: time.Now().Add(-time.Second)}); res != Unreachable {
			t.Errorf("got %v, want %v", res, Unreachable)
		}
	})
	t.Run("a full level", func(t *testing.T) {
		q := NewQueue(QueueConfig{Limit: 1, Levels: []QueueLevel{{MaxQueue: 1, MaxWait: time.Minute}}})
		q.Acquire(context.Background(), QueueRequest{})
		go q.Acquire(context.Background(), QueueRequest{})
		for q.Queued() != 1 {
			time.Sleep(100 * time.Microsecond)
		}
		if res := q.Acquire(context.Background(), QueueRequest{}); res != Rejected {
			t.Errorf("got %v, want %v", res, Rejected)
		}
		q.Release(0)
	})
	t.Run("max_wait, then a client that leaves", func(t *testing.T) {
		q := NewQueue(QueueConfig{Limit: 1, Levels: []QueueLevel{{MaxQueue: 5, MaxWait: time.Millisecond}}})
		q.Acquire(context.Background(), QueueRequest{})
		if res := q.Acquire(context.Background(), QueueRequest{}); res != TimedOut {
			t.Errorf("got %v, want %v", res, TimedOut)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		q2 := NewQueue(QueueConfig{Limit: 1, Levels: []QueueLevel{{MaxQueue: 5, MaxWait: time.Minute}}})
		q2.Acquire(context.Background(), QueueRequest{})
		if res := q2.Acquire(ctx, QueueRequest{}); res != Canceled {
			t.Errorf("got %v, want %v", res, Canceled)
		}
		if q.Queued() != 0 || q2.Queued() != 0 {
			t.Errorf("queued %d and %d after leaving, want 0", q.Queued(), q2.Queued())
		}
	})
	t.Run("a deadline the queue cannot meet", func(t *testing.T) {
		q := NewQueue(QueueConfig{Limit: 1, Levels: []QueueLevel{{MaxQueue: 5, MaxWait: time.Minute}}})
		q.Acquire(context.Background(), QueueRequest{})
		q.Release(time.Second) // one request took a second
		q.Acquire(context.Background(), QueueRequest{})
		if res := q.Acquire(context.Background(), QueueRequest{Deadline: time.Now().Add(500 * time.Millisecond)}); res != Unreachable {
			t.Errorf("got %v, want %v", res, Unreachable)
		}
		if q.Queued() != 0 {
			t.Errorf("queued %d, want 0: refused at once", q.Queued())
		}
	})
}

// A level's reserve keeps slots for it that lower levels never take:
// batch requests stop below the limit, and an interactive request is
// admitted at once while batch requests wait.
func TestQueueReserve(t *testing.T) {
	q := NewQueue(QueueConfig{Limit: 4, Levels: []QueueLevel{
		{MaxQueue: 10, MaxWait: time.Minute, Reserve: 1},
		{MaxQueue: 10, MaxWait: time.Minute},
	}})
	ctx := context.Background()
	for i := range 3 {
		if res := q.Acquire(ctx, QueueRequest{Level: 1}); res != Admitted {
			t.Fatalf("batch request %d: %v, want admitted", i, res)
		}
	}
	waited := make(chan Result, 1)
	go func() { waited <- q.Acquire(ctx, QueueRequest{Level: 1}) }()
	for deadline := time.Now().Add(10 * time.Second); q.Queued() != 1; time.Sleep(100 * time.Microsecond) {
		if time.Now().After(deadline) {
			t.Fatal("the fourth batch request took the reserved slot")
		}
	}
	if res := q.Acquire(ctx, QueueRequest{Level: 0}); res != Admitted {
		t.Fatalf("interactive request: %v, want admitted at once", res)
	}
	if got := q.InFlight(); got != 4 {
		t.Fatalf("%d in flight, want 4", got)
	}
	q.Release(0) // the interactive one: the batch request still may not take it
	select {
	case res := <-waited:
		t.Fatalf("batch request got %v through the reserve", res)
	case <-time.After(20 * time.Millisecond):
	}
	q.Release(0) // a batch one: now the waiting batch request goes
	if res := <-waited; res != Admitted {
		t.Fatalf("waiting batch request: %v", res)
	}
}
