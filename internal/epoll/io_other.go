//go:build !linux

package epoll

import "errors"

// IO is Linux only: elsewhere NewIO fails, and a nil *IO registers
// nothing, so its users keep a goroutine per connection and ask sockets
// directly.
type IO struct{}

// Registration is never registered without epoll.
type Registration struct{}

// NewIO reports errors.ErrUnsupported: the layer needs epoll.
func NewIO(pollers int) (*IO, error) { return nil, errors.ErrUnsupported }

// Shared returns nil: there is no IO to share.
func Shared() *IO { return nil }

// Pollers reports 0.
func (io *IO) Pollers() int { return 0 }

// Close does nothing.
func (io *IO) Close() error { return nil }

// Poll reports false.
func (io *IO) Poll(r *Registration, fd int, h Handler) bool { return false }

// Arm reports false.
func (io *IO) Arm(r *Registration, fd int, h Handler) bool { return false }

// Watch reports false.
func (io *IO) Watch(r *Registration, fd int, h Handler) bool { return false }

// Release does nothing.
func (io *IO) Release(r *Registration) {}

// Remove does nothing.
func (io *IO) Remove(r *Registration) {}

// Registered reports false.
func (r *Registration) Registered() bool { return false }

// HungUp reports false.
func (r *Registration) HungUp() bool { return false }

// Reset reports false.
func (r *Registration) Reset() bool { return false }
