package hangup_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/penstock-dev/penstock/internal/hangup"
)

// eventually reports whether cond becomes true within two seconds.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func fdOf(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

func TestWatchReportsHangUps(t *testing.T) {
	tests := []struct {
		name string
		peer func(t *testing.T, server *net.TCPConn)
		want bool
	}{
		{name: "the peer closes (FIN)", want: true, peer: func(t *testing.T, s *net.TCPConn) { s.Close() }},
		{name: "the peer closes its write side only", want: true, peer: func(t *testing.T, s *net.TCPConn) { s.CloseWrite() }},
		{name: "the peer resets (RST)", want: true, peer: func(t *testing.T, s *net.TCPConn) {
			s.SetLinger(0)
			s.Close()
		}},
		{name: "the peer sends data: not a hang-up", want: false, peer: func(t *testing.T, s *net.TCPConn) {
			s.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n"))
		}},
		{name: "the peer does nothing", want: false, peer: func(t *testing.T, s *net.TCPConn) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := tcpPair(t)
			var w hangup.Watch
			if !w.Start(fdOf(t, c)) {
				t.Fatal("Start failed")
			}
			defer w.Stop()
			if !w.Watching() || w.HungUp() {
				t.Fatalf("fresh watch: Watching %v, HungUp %v; want true, false", w.Watching(), w.HungUp())
			}
			tt.peer(t, s)
			if tt.want {
				if !eventually(w.HungUp) {
					t.Error("hang-up not reported within 2s")
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
			if w.HungUp() {
				t.Error("hang-up reported, want none")
			}
		})
	}
}

// A descriptor number freed by a closed socket and given to a new one must
// not carry the old socket's hang-up over: dup2 puts the new socket at
// exactly the old number.
func TestWatchOfReusedDescriptorNumber(t *testing.T) {
	old, oldPeer := tcpPair(t)
	fd := fdOf(t, old)
	var w1 hangup.Watch
	if !w1.Start(fd) {
		t.Fatal("Start failed")
	}
	oldPeer.Close()
	if !eventually(w1.HungUp) {
		t.Fatal("first socket's hang-up not reported")
	}
	w1.Stop()
	if w1.Watching() {
		t.Error("Watching after Stop")
	}

	// A socket pair of our own, its first end moved to fd (dup2 closes
	// what was there, as closing the old connection would).
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[1])
	// oldFile keeps the old socket open under another number, so its
	// registration stays in the epoll instance, still naming fd: only the
	// generation tells its late events from the new socket's.
	oldFile, err := old.File()
	if err != nil {
		t.Fatal(err)
	}
	defer oldFile.Close()
	if err := unix.Dup3(sp[0], fd, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	unix.Close(sp[0])
	var w2 hangup.Watch
	if !w2.Start(fd) {
		t.Fatal("Start on the reused number failed")
	}
	defer w2.Stop()
	// Writing to the old socket, whose peer is gone, draws an RST: a late
	// EPOLLERR|EPOLLHUP event for the old registration.
	oldFile.Write([]byte("x"))
	time.Sleep(20 * time.Millisecond)
	oldFile.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	if w2.HungUp() {
		t.Fatal("new socket reported hung up: it inherited the old one's state")
	}
	if w1.HungUp() != true {
		t.Error("old watch lost its flag")
	}
	unix.Close(sp[1])
	if !eventually(w2.HungUp) {
		t.Error("new socket's own hang-up not reported")
	}
}

func TestZeroWatchWatchesNothing(t *testing.T) {
	var w hangup.Watch
	if w.Watching() || w.HungUp() {
		t.Error("zero Watch reports watching or hung up")
	}
	w.Stop()
	if w.Start(-1) {
		t.Error("Start(-1) succeeded")
	}
}
