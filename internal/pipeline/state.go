package pipeline

import (
	"errors"
	"io"
	"sync"
)

// State is what stages keep across configuration reloads: counters, token
// buckets, concurrency limits, connections to a shared store. A stage asks
// for its state by a key that includes everything the state depends on
// (the stage, the route or limit name, and the settings that shape it);
// while that key is unchanged from one configuration to the next, the new
// snapshot's stages get the very value the old ones used, so a reload that
// does not touch a limit does not reset it. Values the new configuration
// no longer asks for are closed (if they are io.Closers) when the old
// snapshot retires.
//
// A State is filled while one configuration compiles and only read after;
// requests never touch it.
type State struct {
	mu   sync.Mutex
	prev *State
	vals map[string]any
}

// NewState makes the state of a configuration being compiled; prev is the
// state of the configuration it replaces (nil at start).
func NewState(prev *State) *State { return &State{prev: prev, vals: map[string]any{}} }

// Keep returns the value kept under key: the previous configuration's, if
// it had one, otherwise the one make returns. Asking twice for a key in one
// configuration returns the same value (two routes sharing one limit).
func (s *State) Keep(key string, make func() (any, error)) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.vals[key]; ok {
		return v, nil
	}
	if s.prev != nil {
		s.prev.mu.Lock()
		v, ok := s.prev.vals[key]
		s.prev.mu.Unlock()
		if ok {
			s.vals[key] = v
			return v, nil
		}
	}
	v, err := make()
	if err != nil {
		return nil, err
	}
	s.vals[key] = v
	return v, nil
}

// Leaving returns the values of s that next does not keep (every value
// when next is nil) that must be closed: the caller closes them (Close)
// once the requests still using s are done.
func (s *State) Leaving(next *State) []io.Closer {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []io.Closer
	for k, v := range s.vals {
		if next != nil {
			next.mu.Lock()
			kept := next.vals[k] == v
			next.mu.Unlock()
			if kept {
				continue
			}
		}
		if c, ok := v.(io.Closer); ok {
			out = append(out, c)
		}
	}
	return out
}

// Close closes each of cs (what Leaving returned).
func Close(cs []io.Closer) error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Forget drops s's link to its predecessor once its configuration is
// compiled (every value it takes over is taken by then), so the old
// configuration's memory can go.
func (s *State) Forget() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.prev = nil
	s.mu.Unlock()
}

// Values returns the values s keeps, in no particular order (for the
// admin API, which shows some kinds of them).
func (s *State) Values() []any {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]any, 0, len(s.vals))
	for _, v := range s.vals {
		out = append(out, v)
	}
	return out
}
