//go:build !linux

package loadtest

import "time"

type sleeper struct{}

func newSleeper() *sleeper               { return &sleeper{} }
func (s *sleeper) sleep(d time.Duration) { time.Sleep(d) }
func (s *sleeper) close()                {}
