package router

import "math/bits"

// staticTable maps the paths of the routes without parameters in one host
// tier to the tree nodes where they end. It is a small open-addressing hash
// table rather than a Go map because the map's general-purpose probe and
// AES hash sit on the critical path of the lookup it is meant to shorten:
// with a map[string]*node in its place, the GitHub static benchmark took
// about 39 ns against 30 ns with this table (httprouter: 40 ns).
type staticTable struct {
	slots []staticSlot // power-of-two length
	shift uint         // 64 - log2(len(slots)): the index is the hash's top bits
	// filter has bit filterBit(p) set for every path p in the table. A
	// path with parameter values mostly differs from every static path in
	// length or last byte, so it skips hashing and probing; those would
	// add a tenth to a lookup that has to walk the tree anyway.
	filter [filterWords]uint64
}

// filterWords sizes staticTable.filter: 1024 bits stay sparse for hundreds
// of static paths and fit in two cache lines.
const filterWords = 16

// filterBit returns the bit of staticTable.filter for a non-empty path p,
// from its length and last byte: cheap, and distinct for most pairs
// because 131 exceeds every ASCII byte.
func filterBit(p string) uint {
	return (uint(len(p))*131 + uint(p[len(p)-1])) % (filterWords * 64)
}

// mayHave reports whether p may be in the table; false means it is not.
func (t *staticTable) mayHave(p string) bool {
	if p == "" {
		return false // never a configured path, which starts with "/"
	}
	b := filterBit(p)
	return t.filter[b/64]&(1<<(b%64)) != 0
}

type staticSlot struct {
	hash uint64
	path string
	node *node // where path ends, with exact routes; nil for an empty slot
}

// maxRun is the longest run of occupied slots newStaticTable aims for: a
// lookup that misses scans to the end of one. Only configured paths occupy
// slots, so requests cannot lengthen runs, but an unlucky set of paths
// could; a larger table then breaks them up.
const maxRun = 16

// newStaticTable builds a table for paths (distinct) and the nodes where
// they end, or returns nil if there are no paths.
func newStaticTable(paths []string, nodes []*node) *staticTable {
	if len(paths) == 0 {
		return nil
	}
	// At most half full; larger, up to one eighth full, while some run is
	// longer than maxRun.
	size := 2
	for size < 2*len(paths) {
		size *= 2
	}
	for {
		t := &staticTable{slots: make([]staticSlot, size), shift: uint(64 - bits.TrailingZeros(uint(size)))}
		for i, p := range paths {
			h := hashPath(p)
			j := t.index(h)
			for t.slots[j].node != nil {
				j = (j + 1) & (size - 1)
			}
			t.slots[j] = staticSlot{hash: h, path: p, node: nodes[i]}
			b := filterBit(p)
			t.filter[b/64] |= 1 << (b % 64)
		}
		if size >= 8*len(paths) || t.longestRun() <= maxRun {
			return t
		}
		size *= 2
	}
}

func (t *staticTable) index(h uint64) int { return int(h >> t.shift) }

// longestRun returns the longest run of occupied slots, wrapping around.
func (t *staticTable) longestRun() int {
	longest, run := 0, 0
	for k := 0; k < 2*len(t.slots); k++ {
		if t.slots[k%len(t.slots)].node == nil {
			run = 0
			continue
		}
		run++
		longest = max(longest, min(run, len(t.slots)))
	}
	return longest
}

// get returns the node where the static path p ends, or nil. Callers check
// mayHave first.
func (t *staticTable) get(p string) *node {
	hash := hashPath(p)
	mask := len(t.slots) - 1
	for j := t.index(hash); ; j = (j + 1) & mask {
		s := &t.slots[j]
		if s.node == nil {
			return nil
		}
		// Comparing the full hashes first leaves the string comparison
		// (a runtime call) to the slot that almost surely matches.
		if s.hash == hash && s.path == p {
			return s.node
		}
	}
}

// hashPath hashes a request path eight bytes at a time, in the manner of
// FxHash (rotate, xor, multiply), reading the last bytes as one word that
// overlaps the previous one rather than byte by byte. It is weak against
// crafted input, which is harmless here: requests can only probe the slots
// of configured paths, and newStaticTable bounds those runs. The table
// index takes the top bits, the well-mixed ones.
func hashPath(p string) uint64 {
	n := len(p)
	h := uint64(n)
	switch {
	case n >= 8:
		for i := 8; i < n; i += 8 {
			h = mix(h, load64(p[i-8:]))
		}
		h = mix(h, load64(p[n-8:]))
	case n >= 4:
		h = mix(h, uint64(load32(p))|uint64(load32(p[n-4:]))<<32)
	case n > 0:
		h = mix(h, uint64(p[0])|uint64(p[n/2])<<8|uint64(p[n-1])<<16)
	}
	return h
}

func mix(h, w uint64) uint64 {
	return (bits.RotateLeft64(h, 5) ^ w) * 0x517cc1b727220a95
}

// load64 returns the first 8 bytes of p, little-endian. The compiler merges
// the byte loads into one.
func load64(p string) uint64 {
	p = p[:8]
	return uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24 |
		uint64(p[4])<<32 | uint64(p[5])<<40 | uint64(p[6])<<48 | uint64(p[7])<<56
}

// load32 returns the first 4 bytes of p, little-endian.
func load32(p string) uint32 {
	p = p[:4]
	return uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24
}
