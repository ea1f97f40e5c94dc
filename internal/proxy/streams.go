package proxy

import (
	"context"
	"sync"
)

// Streams counts the long-lived streams a process's forwarders run outside
// any engine's connection bookkeeping (WebSocket tunnels: the connection
// was hijacked), so that a draining process can let them finish and then
// end the ones left. One per process; its zero value is not usable.
type Streams struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n drops to 0 while someone waits
	cut  chan struct{} // closed by Cut
	once sync.Once
}

// NewStreams returns an empty registry.
func NewStreams() *Streams { return &Streams{cut: make(chan struct{})} }

// begin registers a stream; it returns the channel closed when the stream
// must end (Cut).
func (s *Streams) begin() <-chan struct{} {
	s.mu.Lock()
	s.n++
	s.mu.Unlock()
	return s.cut
}

// end unregisters a stream.
func (s *Streams) end() {
	s.mu.Lock()
	s.n--
	if s.n == 0 && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
}

// Open reports the streams running.
func (s *Streams) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// Wait returns once no stream runs, or ctx is done (then with its error).
func (s *Streams) Wait(ctx context.Context) error {
	s.mu.Lock()
	if s.n == 0 {
		s.mu.Unlock()
		return nil
	}
	if s.idle == nil {
		s.idle = make(chan struct{})
	}
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Cut ends every stream running and every one started later.
func (s *Streams) Cut() { s.once.Do(func() { close(s.cut) }) }
