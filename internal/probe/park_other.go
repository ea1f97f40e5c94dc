//go:build !linux

package probe

import "net"

// Without epoll a probe does not park: its reads block on a goroutine.
type registration struct{}

func (w *parker) pollable(*tcpRun) bool { return false }
func (w *parker) park(*tcpRun) bool     { return false }
func (w *parker) release()              {}
func socketFD(net.Conn) int             { return -1 }
