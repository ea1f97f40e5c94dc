package admission

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

func TestKeyed(t *testing.T) {
	ctx := context.Background()
	a := Key{Addr: netip.MustParseAddr("192.0.2.1")}
	b := Key{Addr: netip.MustParseAddr("192.0.2.2")}
	tenant := Key{Name: "tenant-a"}
	tests := []struct {
		name string
		run  func(t *testing.T, k *Keyed)
	}{
		{"each key has its own limit", func(t *testing.T, k *Keyed) {
			for _, key := range []Key{a, a, b, b, tenant, tenant} {
				if _, res := k.Acquire(ctx, key); res != Admitted {
					t.Fatalf("%v: %v, want admitted", key, res)
				}
			}
			for _, key := range []Key{a, b, tenant} {
				if _, res := k.Acquire(ctx, key); res != Rejected {
					t.Errorf("%v's third request: %v, want rejected", key, res)
				}
			}
			if in, q := k.Totals(); in != 6 || q != 0 {
				t.Errorf("totals %d in flight, %d queued; want 6, 0", in, q)
			}
		}},
		{"an idle key is forgotten", func(t *testing.T, k *Keyed) {
			e1, _ := k.Acquire(ctx, a)
			e2, _ := k.Acquire(ctx, a)
			if _, res := k.Acquire(ctx, a); res != Rejected {
				t.Fatalf("third request: %v, want rejected", res)
			}
			if k.Keys() != 1 {
				t.Errorf("%d keys, want 1", k.Keys())
			}
			k.Release(e1)
			k.Release(e2)
			if k.Keys() != 0 {
				t.Errorf("%d keys after the last release, want 0", k.Keys())
			}
			if _, res := k.Acquire(ctx, a); res != Admitted {
				t.Errorf("after the key was forgotten: %v, want admitted", res)
			}
		}},
		{"a new key beyond max_keys is rejected", func(t *testing.T, k *Keyed) {
			for i := range 3 {
				key := Key{Name: string(rune('a' + i))}
				if _, res := k.Acquire(ctx, key); res != Admitted {
					t.Fatalf("key %d: %v", i, res)
				}
			}
			if _, res := k.Acquire(ctx, Key{Name: "z"}); res != Rejected {
				t.Errorf("a fourth key: %v, want rejected", res)
			}
			if _, res := k.Acquire(ctx, Key{Name: "a"}); res != Admitted {
				t.Errorf("a known key: %v, want admitted", res)
			}
		}},
		{"a key's name is copied, not aliased", func(t *testing.T, k *Keyed) {
			buf := []byte("tenant-b")
			e, _ := k.Acquire(ctx, Key{Name: string(buf)})
			copy(buf, "xxxxxxxx")
			if e.key.Name != "tenant-b" {
				t.Errorf("stored key %q", e.key.Name)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, NewKeyed(2, 0, time.Second, 3))
		})
	}
}
