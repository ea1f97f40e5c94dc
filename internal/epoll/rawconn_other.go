//go:build !linux

package epoll

import "net"

// RawConn returns nc: raw system calls are Linux only.
func RawConn(nc net.Conn) net.Conn { return nc }
