package epoll_test

import (
	"errors"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/penstock-dev/penstock/internal/epoll"
)

// newIO returns an IO of the test's own with two polling instances, closed
// when the test ends.
func newIO(t *testing.T) *epoll.IO {
	t.Helper()
	io, err := epoll.NewIO(2)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { io.Close() })
	return io
}

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

// event is what a recorder was told.
type event struct {
	inst   int
	events uint32
}

// recorder is a Handler that passes its events on.
type recorder chan event

func (r recorder) Event(inst int, events uint32) {
	select {
	case r <- event{inst, events}:
	default:
	}
}

// next waits for an event that has one of the bits in want.
func (r recorder) next(t *testing.T, want uint32) event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-r:
			if ev.events&want != 0 {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event with %#x within 5s", want)
		}
	}
}

func TestWatchReportsHangUps(t *testing.T) {
	io := newIO(t)
	tests := []struct {
		name      string
		peer      func(t *testing.T, server *net.TCPConn)
		hungUp    bool
		wantReset bool
	}{
		{name: "the peer closes (FIN)", hungUp: true, peer: func(t *testing.T, s *net.TCPConn) { s.Close() }},
		{name: "the peer closes its write side only", hungUp: true, peer: func(t *testing.T, s *net.TCPConn) { s.CloseWrite() }},
		{name: "the peer resets (RST)", hungUp: true, wantReset: true, peer: func(t *testing.T, s *net.TCPConn) {
			s.SetLinger(0)
			s.Close()
		}},
		{name: "the peer sends data: not a hang-up", peer: func(t *testing.T, s *net.TCPConn) {
			s.Write([]byte("HTTP/1.1 408 Request Timeout\r\n\r\n"))
		}},
		{name: "the peer does nothing", peer: func(t *testing.T, s *net.TCPConn) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := tcpPair(t)
			var r epoll.Registration
			if !io.Watch(&r, fdOf(t, c), nil) {
				t.Fatal("Watch failed")
			}
			defer io.Release(&r)
			if !r.Registered() || r.HungUp() {
				t.Fatalf("fresh watch: Registered %v, HungUp %v; want true, false", r.Registered(), r.HungUp())
			}
			tt.peer(t, s)
			if tt.hungUp {
				if !eventually(r.HungUp) {
					t.Fatal("hang-up not reported within 2s")
				}
				if tt.wantReset && !eventually(r.Reset) {
					t.Error("reset not reported within 2s")
				}
				if !tt.wantReset && r.Reset() {
					t.Error("a close reported as a reset")
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
			if r.HungUp() {
				t.Error("hang-up reported, want none")
			}
		})
	}
}

// A descriptor number freed by a closed socket and given to a new one must
// not carry the old socket's hang-up over: dup3 puts the new socket at
// exactly the old number.
func TestWatchOfReusedDescriptorNumber(t *testing.T) {
	io := newIO(t)
	old, oldPeer := tcpPair(t)
	fd := fdOf(t, old)
	var r1 epoll.Registration
	if !io.Watch(&r1, fd, nil) {
		t.Fatal("Watch failed")
	}
	oldPeer.Close()
	if !eventually(r1.HungUp) {
		t.Fatal("first socket's hang-up not reported")
	}
	io.Release(&r1)
	if r1.Registered() {
		t.Error("Registered after Release")
	}

	// A socket pair of our own, its first end moved to fd (dup3 closes
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
	var r2 epoll.Registration
	if !io.Watch(&r2, fd, nil) {
		t.Fatal("Watch on the reused number failed")
	}
	defer io.Release(&r2)
	// Writing to the old socket, whose peer is gone, draws an RST: a late
	// EPOLLERR|EPOLLHUP event for the old registration.
	oldFile.Write([]byte("x"))
	time.Sleep(20 * time.Millisecond)
	oldFile.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	if r2.HungUp() {
		t.Fatal("new socket reported hung up: it inherited the old one's state")
	}
	if !r1.HungUp() {
		t.Error("old registration lost its flag")
	}
	unix.Close(sp[1])
	if !eventually(r2.HungUp) {
		t.Error("new socket's own hang-up not reported")
	}
}

func TestPollTellsTheHandler(t *testing.T) {
	io := newIO(t)
	c, s := tcpPair(t)
	rec := make(recorder, 16)
	var r epoll.Registration
	if !io.Poll(&r, fdOf(t, c), rec) {
		t.Fatal("Poll failed")
	}
	inst := rec.next(t, unix.EPOLLOUT).inst // room to write, at once
	if inst < 0 || inst >= io.Pollers() {
		t.Fatalf("event from instance %d, want 0 to %d", inst, io.Pollers()-1)
	}
	s.Write([]byte("x"))
	if ev := rec.next(t, unix.EPOLLIN); ev.inst != inst {
		t.Errorf("data reported for instance %d, want %d as before", ev.inst, inst)
	}
	if r.HungUp() {
		t.Error("data reported as a hang-up")
	}
	s.Close()
	rec.next(t, unix.EPOLLRDHUP)
	if !r.HungUp() {
		t.Error("the handler was told of the hang-up before the registration reports it")
	}
	io.Remove(&r)
	if r.Registered() {
		t.Error("Registered after Remove")
	}
}

func TestWatchTellsTheHandler(t *testing.T) {
	io := newIO(t)
	c, s := tcpPair(t)
	rec := make(recorder, 16)
	var r epoll.Registration
	if !io.Watch(&r, fdOf(t, c), rec) {
		t.Fatal("Watch failed")
	}
	defer io.Release(&r)
	s.Write([]byte("data does not wake the hang-up watcher"))
	s.Close()
	ev := rec.next(t, unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR)
	if ev.inst != -1 || ev.events&unix.EPOLLIN != 0 {
		t.Errorf("told instance %d, events %#x; want -1 and no EPOLLIN", ev.inst, ev.events)
	}
}

func TestRegistrationsThatFail(t *testing.T) {
	io := newIO(t)
	closed, err := epoll.NewIO(1)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	c, _ := tcpPair(t)
	fd := fdOf(t, c)
	var nilIO *epoll.IO
	tests := []struct {
		name     string
		register func(r *epoll.Registration) bool
	}{
		{name: "negative descriptor", register: func(r *epoll.Registration) bool { return io.Watch(r, -1, nil) }},
		{name: "descriptor beyond the table", register: func(r *epoll.Registration) bool { return io.Poll(r, 1<<20, nil) }},
		{name: "not a descriptor", register: func(r *epoll.Registration) bool { return io.Poll(r, 1<<20-1, nil) }},
		{name: "closed IO", register: func(r *epoll.Registration) bool { return closed.Watch(r, fd, nil) }},
		{name: "nil IO", register: func(r *epoll.Registration) bool { return nilIO.Poll(r, fd, nil) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r epoll.Registration
			if tt.register(&r) {
				t.Fatal("registered")
			}
			if r.Registered() || r.HungUp() {
				t.Errorf("failed registration: Registered %v, HungUp %v", r.Registered(), r.HungUp())
			}
			io.Release(&r) // does nothing
			io.Remove(&r)
		})
	}
}

// ioGoroutines counts the goroutines that drain an IO's instances.
func ioGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "created by github.com/penstock-dev/penstock/internal/epoll.NewIO")
}

func TestCloseEndsTheGoroutines(t *testing.T) {
	// The other tests' IOs are closed, but a goroutine outlives its
	// WaitGroup.Done by a moment: wait for them to be gone.
	if !eventually(func() bool { return ioGoroutines() == 0 }) {
		t.Fatalf("%d goroutines of earlier IOs still running", ioGoroutines())
	}
	io, err := epoll.NewIO(3)
	if err != nil {
		t.Fatal(err)
	}
	// Three polling instances and the hang-up watcher.
	if n := ioGoroutines(); n != 4 {
		t.Errorf("%d goroutines while open, want 4", n)
	}
	c, _ := tcpPair(t)
	var r epoll.Registration
	if !io.Poll(&r, fdOf(t, c), nil) {
		t.Fatal("Poll failed")
	}
	if err := io.Close(); err != nil {
		t.Fatal(err)
	}
	// Close waits for them to finish their work; they are gone a moment
	// later.
	if !eventually(func() bool { return ioGoroutines() == 0 }) {
		t.Errorf("%d goroutines left after Close", ioGoroutines())
	}
	io.Remove(&r) // after Close: no system call on a closed instance
	if err := io.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRecvSend(t *testing.T) {
	pair := func(t *testing.T) (a, b int) {
		t.Helper()
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
		return fds[0], fds[1]
	}
	buf := make([]byte, 64)
	t.Run("nothing to read: EAGAIN", func(t *testing.T) {
		a, _ := pair(t)
		if n, errno := epoll.Recv(a, buf); n != 0 || errno != unix.EAGAIN {
			t.Errorf("Recv = %d, %v; want 0, EAGAIN", n, errno)
		}
	})
	t.Run("sent bytes are received", func(t *testing.T) {
		a, b := pair(t)
		if n, errno := epoll.Send(b, []byte("hello")); n != 5 || errno != 0 {
			t.Fatalf("Send = %d, %v; want 5, 0", n, errno)
		}
		if n, errno := epoll.Recv(a, buf); string(buf[:n]) != "hello" || errno != 0 {
			t.Errorf("Recv = %q, %v; want hello", buf[:n], errno)
		}
	})
	t.Run("the peer closed: 0 bytes, no error", func(t *testing.T) {
		a, b := pair(t)
		unix.Shutdown(b, unix.SHUT_WR)
		if n, errno := epoll.Recv(a, buf); n != 0 || errno != 0 {
			t.Errorf("Recv = %d, %v; want 0, 0", n, errno)
		}
	})
	t.Run("a full socket takes part: EAGAIN", func(t *testing.T) {
		_, b := pair(t)
		big := make([]byte, 8<<20)
		n, errno := epoll.Send(b, big)
		if n == 0 || n == len(big) || errno != unix.EAGAIN {
			t.Errorf("Send = %d of %d, %v; want part, EAGAIN", n, len(big), errno)
		}
	})
	t.Run("the peer is gone: EPIPE, no SIGPIPE", func(t *testing.T) {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := fds[1]
		defer unix.Close(b)
		unix.Close(fds[0])
		if _, errno := epoll.Send(b, []byte("x")); !errors.Is(errno, unix.EPIPE) {
			t.Errorf("Send: %v, want EPIPE", errno)
		}
	})
}

// TestArmReportsOneEventPerArm: an armed socket reports the first event,
// then nothing until armed again; data already waiting is reported by the
// Arm itself, and so is the peer closing.
func TestArmReportsOneEventPerArm(t *testing.T) {
	io := newIO(t)
	c, s := tcpPair(t)
	rec := make(recorder, 16)
	var r epoll.Registration
	fd := fdOf(t, c)
	if !io.Arm(&r, fd, rec) {
		t.Fatal("Arm failed")
	}
	defer io.Release(&r)
	s.Write([]byte("a"))
	rec.next(t, unix.EPOLLIN)
	s.Write([]byte("b"))
	time.Sleep(50 * time.Millisecond)
	select {
	case ev := <-rec:
		t.Fatalf("event %#x while disarmed", ev.events)
	default:
	}
	// "ab" is still unread: arming again reports it at once.
	if !io.Arm(&r, fd, rec) {
		t.Fatal("second Arm failed")
	}
	rec.next(t, unix.EPOLLIN)
	var buf [2]byte
	c.Read(buf[:])
	if !io.Arm(&r, fd, rec) {
		t.Fatal("third Arm failed")
	}
	s.Close()
	rec.next(t, unix.EPOLLRDHUP)
	if !r.HungUp() {
		t.Error("the registration does not report the hang-up")
	}
}
