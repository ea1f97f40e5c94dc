package reload

import (
	"sync"
	"time"
)

// Outcome is one attempt to load a configuration.
type Outcome struct {
	// At is when the attempt ended.
	At time.Time `json:"at"`
	// Generation is the configuration serving after it: the new one when
	// it was applied, the previous one when it was refused.
	Generation uint64 `json:"generation"`
	// Error says why it was refused (every error, one per line, cut at
	// MaxErrorBytes); empty when it was applied.
	Error string `json:"error,omitempty"`
}

// MaxErrorBytes bounds an Outcome's error text, so a history stays small
// whatever a refused file held.
const MaxErrorBytes = 4096

// History keeps the latest outcomes of configuration loads in a ring of
// fixed size. Its methods are safe for concurrent use.
type History struct {
	mu   sync.Mutex
	ring []Outcome
	next int
	n    int
}

// NewHistory returns a history that keeps the last size outcomes (at
// least 1).
func NewHistory(size int) *History { return &History{ring: make([]Outcome, max(size, 1))} }

// Add records an outcome; the oldest is dropped once the ring is full.
func (h *History) Add(o Outcome) {
	if len(o.Error) > MaxErrorBytes {
		o.Error = o.Error[:MaxErrorBytes] + "…"
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ring[h.next] = o
	h.next = (h.next + 1) % len(h.ring)
	h.n = min(h.n+1, len(h.ring))
}

// List returns the outcomes kept, newest first.
func (h *History) List() []Outcome {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Outcome, h.n)
	for i := range h.n {
		out[i] = h.ring[(h.next-1-i+2*len(h.ring))%len(h.ring)]
	}
	return out
}
