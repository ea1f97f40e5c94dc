package reload

import (
	"strings"
	"testing"
	"time"
)

func TestHistory(t *testing.T) {
	tests := []struct {
		name string
		size int
		add  []uint64
		want []uint64
	}{
		{name: "empty", size: 3, want: []uint64{}},
		{name: "not full", size: 3, add: []uint64{1, 2}, want: []uint64{2, 1}},
		{name: "exactly full", size: 3, add: []uint64{1, 2, 3}, want: []uint64{3, 2, 1}},
		{name: "wrapped", size: 3, add: []uint64{1, 2, 3, 4, 5}, want: []uint64{5, 4, 3}},
		{name: "size below one keeps one", size: 0, add: []uint64{1, 2}, want: []uint64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHistory(tt.size)
			for _, g := range tt.add {
				h.Add(Outcome{At: time.Unix(int64(g), 0), Generation: g})
			}
			got := h.List()
			if len(got) != len(tt.want) {
				t.Fatalf("List() has %d outcomes, want %d", len(got), len(tt.want))
			}
			for i, o := range got {
				if o.Generation != tt.want[i] {
					t.Errorf("List()[%d].Generation = %d, want %d", i, o.Generation, tt.want[i])
				}
			}
		})
	}
}

func TestHistoryCutsLongErrors(t *testing.T) {
	h := NewHistory(2)
	h.Add(Outcome{Error: strings.Repeat("x", 3*MaxErrorBytes)})
	if n := len(h.List()[0].Error); n > MaxErrorBytes+len("…") {
		t.Errorf("error kept at %d bytes, want at most %d", n, MaxErrorBytes+len("…"))
	}
}
