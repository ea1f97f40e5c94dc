package rollout

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// The figures a fleet merges from its nodes' exports are those one monitor
// would have had with every node's requests.
func TestMergeMatchesOneMonitor(t *testing.T) {
	epoch := time.Unix(0, 0)
	slot := 100 * time.Millisecond
	start := time.Unix(1_800_000_000, 0)
	all := NewMonitor(2, 20, slot, epoch)
	nodes := []*Monitor{NewMonitor(2, 20, slot, epoch), NewMonitor(2, 20, slot, epoch), NewMonitor(2, 20, slot, epoch)}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 15 {
		now := start.Add(time.Duration(i) * slot)
		all.Advance(now)
		for _, m := range nodes {
			m.Advance(now)
		}
		for range 300 {
			m := nodes[rng.IntN(len(nodes))]
			arm := rng.IntN(2)
			lat := time.Duration(rng.ExpFloat64()*20e3) * time.Microsecond
			failed := rng.Float64() < 0.05
			var ttft time.Duration
			if rng.IntN(2) == 0 {
				ttft = lat / 3
			}
			all.Observe(arm, lat, failed, ttft)
			m.Observe(arm, lat, failed, ttft)
		}
	}
	cur := all.Current()
	from, to := cur-12, cur-1
	for _, tc := range []struct {
		name string
		arm  int
	}{{"baseline", Baseline}, {"canary", Canary}} {
		t.Run(tc.name, func(t *testing.T) {
			var parts [][]SlotCounts
			for _, m := range nodes {
				// Through JSON, as the nodes publish them.
				b, _ := json.Marshal(m.Export(tc.arm, from-5, to))
				var sc []SlotCounts
				if err := json.Unmarshal(b, &sc); err != nil {
					t.Fatal(err)
				}
				parts = append(parts, sc)
			}
			got, want := Merge(from, to, parts...), all.Window(tc.arm, from, to)
			if got.Requests != want.Requests || got.Errors != want.Errors || got.TTFTCount != want.TTFTCount ||
				len(got.Latency) != len(want.Latency) || len(got.TTFT) != len(want.TTFT) {
				t.Fatalf("merged %d requests, %d errors, %d ttft, %d/%d sub-windows; one monitor %d, %d, %d, %d/%d",
					got.Requests, got.Errors, got.TTFTCount, len(got.Latency), len(got.TTFT),
					want.Requests, want.Errors, want.TTFTCount, len(want.Latency), len(want.TTFT))
			}
			for i := range got.Latency {
				if got.Latency[i].TotalCount() != want.Latency[i].TotalCount() || got.Latency[i].ValueAtQuantile(99) != want.Latency[i].ValueAtQuantile(99) {
					t.Errorf("sub-window %d: merged histogram differs", i)
				}
			}
			for _, q := range []float64{0.5, 0.99} {
				g, _ := got.LatencyQuantile(q)
				w, _ := want.LatencyQuantile(q)
				if g != w {
					t.Errorf("latency q%v: merged %s, one monitor %s", q, g, w)
				}
				g, _ = got.TTFTQuantile(q)
				w, _ = want.TTFTQuantile(q)
				if g != w {
					t.Errorf("ttft q%v: merged %s, one monitor %s", q, g, w)
				}
			}
		})
	}
}

// Observations come from other nodes through etcd: whatever they hold,
// merging them does not panic and counts nothing out of range.
func FuzzMerge(f *testing.F) {
	f.Add([]byte(`[{"slot":5,"requests":3,"errors":1,"latency":[10,2,300,1],"ttft_count":1,"ttft":[4,1]}]`), int64(0), int64(9))
	f.Add([]byte(`[{"slot":-1,"requests":-3,"latency":[-1,2,99999,1,3]}]`), int64(-5), int64(5))
	f.Add([]byte(`[{"slot":9223372036854775807,"requests":1}]`), int64(9223372036854775800), int64(9223372036854775807))
	f.Fuzz(func(t *testing.T, data []byte, from, to int64) {
		var sc []SlotCounts
		if json.Unmarshal(data, &sc) != nil {
			return
		}
		w := Merge(from, to, sc, sc)
		if w.Requests < 0 || w.Errors < 0 || len(w.Latency) > 3600 {
			t.Fatalf("merged %+v", w)
		}
		w.LatencyQuantile(0.99)
	})
}
