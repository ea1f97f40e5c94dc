//go:build !linux

package h3

import "syscall"

const (
	forceRcv = 0
	forceSnd = 0
)

func reusePort(_, _ string, _ syscall.RawConn) error { return nil }

func steer(syscall.RawConn) error { return nil }
