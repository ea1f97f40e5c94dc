package loadtest

import (
	"math"
	"time"
)

// schedule yields the intended send times of an open-loop run, as offsets
// from the run's origin. Each request's latency is measured from its
// intended time, never from the moment a connection became free to send
// it, so a server that stalls is charged for every request that should have
// been sent during the stall (no coordinated omission).
//
// Request i+1 is due 1/rate after request i, with the rate the profile gives
// at request i's time; the warm-up runs at the profile's initial rate.
type schedule struct {
	profile Profile
	warmup  time.Duration
	next    float64 // seconds since the origin of the next request
}

// advance returns the next intended time and moves on.
func (s *schedule) advance() time.Duration {
	at := s.peek()
	s.next += 1 / s.profile.Rate(max(at-s.warmup, 0))
	return at
}

// peek returns the next intended time without moving on.
// Rounding to whole nanoseconds absorbs the float sum's error: 1500 steps
// of 1/500 s end at 3 s, not a hair before it.
func (s *schedule) peek() time.Duration { return time.Duration(math.Round(s.next * 1e9)) }

// dueWithin is how close to its intended time a request is handed to a
// worker without sleeping first: shorter sleeps cost more in wake-up
// latency than they save.
const dueWithin = 20 * time.Microsecond
