package watchctx

import (
	"context"
	"testing"
	"time"
)

func TestExchangeContext(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, x *Ctx)
	}{
		{"watch runs on cancel, once", func(t *testing.T, x *Ctx) {
			n := 0
			tok := x.Watch(func() { n++ })
			x.Cancel()
			x.Cancel()
			if n != 1 || x.Unwatch(tok) {
				t.Errorf("ran %d times, Unwatch after cancel should report false", n)
			}
		}},
		{"unwatched function never runs", func(t *testing.T, x *Ctx) {
			ran := false
			tok := x.Watch(func() { ran = true })
			if !x.Unwatch(tok) {
				t.Error("Unwatch of a pending watch reported false")
			}
			x.Cancel()
			if ran {
				t.Error("removed watch ran")
			}
		}},
		{"watch on a done context runs at once", func(t *testing.T, x *Ctx) {
			x.Cancel()
			ran := false
			if tok := x.Watch(func() { ran = true }); tok != 0 || !ran {
				t.Errorf("token %d, ran %v; want 0, true", tok, ran)
			}
		}},
		{"Err and Done follow cancel", func(t *testing.T, x *Ctx) {
			if x.Err() != nil {
				t.Fatal("fresh context already done")
			}
			x.Cancel()
			select {
			case <-x.Done():
			default:
				t.Fatal("Done not closed")
			}
			if x.Err() != context.Canceled {
				t.Errorf("Err %v, want context.Canceled", x.Err())
			}
		}},
		{"derived contexts are cancelled through AfterFunc", func(t *testing.T, x *Ctx) {
			child, stop := context.WithTimeout(x, time.Minute)
			defer stop()
			x.Cancel()
			select {
			case <-child.Done():
			case <-time.After(time.Second):
				t.Fatal("child not cancelled")
			}
		}},
		{"a stopped derived context leaves no watch", func(t *testing.T, x *Ctx) {
			_, stop := context.WithCancel(x)
			stop()
			x.mu.Lock()
			n := len(x.watches)
			x.mu.Unlock()
			if n != 0 {
				t.Errorf("%d watches left", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { tt.run(t, New()) })
	}
}
