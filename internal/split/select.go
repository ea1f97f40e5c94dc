package split

import (
	"encoding/binary"
	"math"
)

// Selector picks an arm index by weight, at random or by a hash. It is
// built once per split route and read-only afterwards.
type Selector struct {
	// bounds[i] is the upper end of arm i's share of the uint64 range, for
	// Random; the last arm with a weight ends at the top.
	bounds []uint64
	// weights are the arms' weights and seeds their hashed names, for
	// Hash.
	weights []float64
	seeds   []uint64
}

// NewSelector returns a selector over the arms named names with these
// weights (relative, non-negative, at least one positive). Hash seeds each
// arm's draw with its name, not its place, so reordering the arms changes
// no key's arm and adding one moves keys only to the new arm.
func NewSelector(names []string, weights []float64) *Selector {
	var total float64
	last := 0
	for i, w := range weights {
		total += w
		if w > 0 {
			last = i
		}
	}
	s := &Selector{bounds: make([]uint64, len(weights)), weights: append([]float64(nil), weights...),
		seeds: make([]uint64, len(names))}
	for i, n := range names {
		s.seeds[i] = mix(KeyHash(n))
	}
	var cum float64
	for i, w := range weights {
		cum += w
		switch {
		case i >= last:
			s.bounds[i] = math.MaxUint64
		default:
			// cum/total < 1 here, but rounding may still reach 2^64,
			// which does not convert.
			s.bounds[i] = math.MaxUint64
			if f := cum / total * (1 << 64); f < 1<<64 {
				s.bounds[i] = uint64(f)
			}
		}
	}
	return s
}

// Random returns the arm of a uniformly random u: arm i with probability
// weights[i] / Σ weights.
func (s *Selector) Random(u uint64) int {
	for i, b := range s.bounds {
		if u < b {
			return i
		}
	}
	return len(s.bounds) - 1
}

// Hash returns the arm of a key hashed to h, by weighted rendezvous hashing
// (Schindelhauer and Schomaker, "Weighted distributed hash tables", 2005):
// each arm scores −ln(u)/w for a pseudo-random u drawn from (h, arm), the
// lowest score wins. A key keeps its arm for as long as the weights hold,
// arm i wins with probability weights[i] / Σ weights, and a change of
// weights moves a key only off an arm whose weight fell or onto an arm
// whose weight rose (with two arms, exactly the share that changed).
func (s *Selector) Hash(h uint64) int {
	best, bestScore := 0, math.Inf(1)
	for i, w := range s.weights {
		if w <= 0 {
			continue
		}
		u := (float64(mix(h^s.seeds[i])>>11) + 0.5) / (1 << 53) // in (0, 1)
		if score := -math.Log(u) / w; score < bestScore {
			best, bestScore = i, score
		}
	}
	return best
}

// mix is SplitMix64's finalizer: every bit of x affects every bit of the
// result, so similar keys (consecutive trace ids) land independently.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// TraceHash is the hash of a W3C trace id that by: trace_id splits on: the
// 63 bits the trace and access log samplers decide from
// (tracecontext.SampledByRatio, OpenTelemetry's TraceIDRatioBased), the
// randomness W3C Trace Context level 2 guarantees in the id's right half.
// Hash mixes it with the arm before comparing, so the arm does not depend
// on whether the trace is sampled: every arm's traces are sampled at the
// same ratio, and a sampled trace shows its arm.
func TraceHash(id [16]byte) uint64 { return binary.BigEndian.Uint64(id[8:16]) >> 1 }

// FNV-1a, 64 bit (the hash tracecontext.KeepByKey samples keys with).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// KeyHash hashes a key (a header or cookie value) with FNV-1a.
func KeyHash(key string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(key); i++ {
		h ^= uint64(key[i])
		h *= fnvPrime
	}
	return h
}

// bytesHash is KeyHash for bytes (a client address).
func bytesHash(b []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}
