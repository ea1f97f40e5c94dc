package main

import (
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain keeps the test binary alive when a test signals its own process.
// The serve tests send SIGTERM and SIGHUP to this process to drive the
// in-process `serve`, which listens for them; a signal that arrives when no
// serve is listening (one that failed to start, or has already drained)
// would otherwise take the default action and kill every test in the
// binary. A channel registered here for the whole run turns that default
// off, and serve's own registration still gets its copy of each signal.
func TestMain(m *testing.M) {
	signal.Notify(make(chan os.Signal, 1), syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	startFleetEtcd()
	code := m.Run()
	stopFleetEtcd()
	removeBinary()
	os.Exit(code)
}
