package split

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// chiSquare001 are the critical values of the chi-square distribution at
// p = 0.001 by degrees of freedom (arms − 1): a fair selector exceeds them
// once in a thousand runs. The runs here are seeded, so they do not flake.
var chiSquare001 = map[int]float64{1: 10.828, 2: 13.816, 3: 16.266, 4: 18.467}

// chiSquare returns Pearson's statistic of counts against weights.
func chiSquare(counts []int, weights []float64, n int) float64 {
	var total float64
	for _, w := range weights {
		total += w
	}
	var x2 float64
	for i, c := range counts {
		exp := float64(n) * weights[i] / total
		if exp == 0 {
			if c != 0 {
				return 1e9
			}
			continue
		}
		d := float64(c) - exp
		x2 += d * d / exp
	}
	return x2
}

// TestSelectorWeights checks that both ways of choosing give each arm its
// weight's share over 100k selections: a chi-square goodness-of-fit test
// at p = 0.001 (degrees of freedom = arms with a weight − 1).
func TestSelectorWeights(t *testing.T) {
	const n = 100_000
	tests := []struct {
		name    string
		weights []float64
	}{
		{"percent 90/10", []float64{90, 10}},
		{"percent 70/20/10", []float64{70, 20, 10}},
		{"relative 1/1", []float64{1, 1}},
		{"relative 5/3/1/1", []float64{5, 3, 1, 1}},
		{"a force-only arm", []float64{50, 0, 50}},
		{"one percent canary", []float64{99, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newSelector(tc.weights)
			df := -1
			for _, w := range tc.weights {
				if w > 0 {
					df++
				}
			}
			for _, mode := range []string{"random", "hash"} {
				r := rand.New(rand.NewPCG(1, 2))
				counts := make([]int, len(tc.weights))
				for range n {
					if mode == "random" {
						counts[s.Random(r.Uint64())]++
					} else {
						// Trace ids: random right halves, as W3C level 2 asks.
						var id [16]byte
						for i := 8; i < 16; i++ {
							id[i] = byte(r.Uint32())
						}
						counts[s.Hash(TraceHash(id))]++
					}
				}
				if x2 := chiSquare(counts, tc.weights, n); x2 > chiSquare001[df] {
					t.Errorf("%s: counts %v for weights %v: chi-square %.2f > %.3f (p = 0.001, df %d)",
						mode, counts, tc.weights, x2, chiSquare001[df], df)
				}
			}
		})
	}
}

// TestHashMovesOnlyWhatItMust checks the stickiness of rendezvous hashing
// under a weight change: a key leaves its arm only if that arm's weight
// fell or its new arm's weight rose, and with two arms exactly the share
// that changed moves.
func TestHashMovesOnlyWhatItMust(t *testing.T) {
	tests := []struct {
		name          string
		before, after []float64
		wantShare     float64
	}{
		{"canary 10 to 25", []float64{90, 10}, []float64{75, 25}, 0.15},
		{"canary 25 to 100", []float64{75, 25}, []float64{0, 100}, 0.75},
		{"three arms", []float64{80, 10, 10}, []float64{60, 10, 30}, -1},
	}
	const n = 50_000
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, after := newSelector(tc.before), newSelector(tc.after)
			moved := 0
			for k := range uint64(n) {
				h := mix(k)
				a, b := before.Hash(h), after.Hash(h)
				if a == b {
					continue
				}
				moved++
				if !(tc.after[a] < tc.before[a] || tc.after[b] > tc.before[b]) {
					t.Fatalf("key %d moved from arm %d to arm %d, though neither weight changed that way", k, a, b)
				}
			}
			// With two arms the moved share is the weight change; allow
			// a wide margin (the binomial's standard deviation is 0.2 %).
			if share := float64(moved) / n; tc.wantShare >= 0 && (share < tc.wantShare-0.02 || share > tc.wantShare+0.02) {
				t.Errorf("%.1f%% of keys moved, want about %.0f%%", 100*share, 100*tc.wantShare)
			}
		})
	}
}

// TestTraceArmIndependentOfSampling checks that the arm of a trace does
// not depend on whether the sampler keeps it: among the traces a 10 %
// sampler keeps, the arms still have their weights' shares.
func TestTraceArmIndependentOfSampling(t *testing.T) {
	s := newSelector([]float64{50, 50})
	r := rand.New(rand.NewPCG(3, 4))
	counts := make([]int, 2)
	n := 0
	for range 100_000 {
		var id [16]byte
		for i := range id {
			id[i] = byte(r.Uint32())
		}
		if TraceHash(id) < 1<<63/10 { // tracecontext.SampledByRatio(id, 0.1)
			counts[s.Hash(TraceHash(id))]++
			n++
		}
	}
	if x2 := chiSquare(counts, []float64{50, 50}, n); x2 > chiSquare001[1] {
		t.Errorf("sampled traces' arms %v: chi-square %.2f > %.3f", counts, x2, chiSquare001[1])
	}
}

func TestCookieValue(t *testing.T) {
	tests := []struct {
		name, field, cookie, want string
		found                     bool
	}{
		{"only", "arm=v2", "arm", "v2", true},
		{"among others", "a=1; arm=v2; b=2", "arm", "v2", true},
		{"quoted", `arm="v2"`, "arm", "v2", true},
		{"prefix of another", "armx=v1; arm=v2", "arm", "v2", true},
		{"absent", "a=1; b=2", "arm", "", false},
		{"empty field", "", "arm", "", false},
		{"no value", "arm", "arm", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := cookieValue(tc.field, tc.cookie)
			if got != tc.want || ok != tc.found {
				t.Errorf("cookieValue(%q, %q) = %q, %v; want %q, %v", tc.field, tc.cookie, got, ok, tc.want, tc.found)
			}
		})
	}
}

// newSelector is NewSelector over arms named a0, a1, ...
func newSelector(weights []float64) *Selector {
	names := make([]string, len(weights))
	for i := range names {
		names[i] = "a" + strconv.Itoa(i)
	}
	return NewSelector(names, weights)
}

// TestHashSeedsByName checks that a key's arm follows the arm's name, not
// its place: reordering arms changes no key's arm, and adding an arm moves
// keys only to it.
func TestHashSeedsByName(t *testing.T) {
	ab := NewSelector([]string{"stable", "canary"}, []float64{50, 50})
	ba := NewSelector([]string{"canary", "stable"}, []float64{50, 50})
	abc := NewSelector([]string{"stable", "canary", "shadow"}, []float64{50, 50, 20})
	for k := range uint64(20_000) {
		h := mix(k)
		a := ab.Hash(h)
		if b := ba.Hash(h); b != 1-a {
			t.Fatalf("key %d: arm %d before reordering, %d after", k, a, b)
		}
		if c := abc.Hash(h); c != a && c != 2 {
			t.Fatalf("key %d moved from arm %d to arm %d, not to the new arm", k, a, c)
		}
	}
}
