package epoll_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/epoll"
	"golang.org/x/sys/unix"
)

func socketPair(t *testing.T) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func TestRunDeliversEventsWithTheirData(t *testing.T) {
	e, err := epoll.New("test")
	if err != nil {
		t.Fatal(err)
	}
	a, b := socketPair(t)
	if err := e.Ctl(unix.EPOLL_CTL_ADD, a, unix.EPOLLIN|unix.EPOLLET, 42); err != nil {
		t.Fatal(err)
	}
	type got struct {
		fd   int32
		data int32
	}
	events := make(chan got, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(1, func(ev *unix.EpollEvent) { events <- got{ev.Fd, ev.Pad} })
	}()
	// Events that come while the callback's goroutine sleeps and while it
	// runs both arrive: three writes, three edges (at least one event).
	for range 3 {
		unix.Write(b, []byte("x"))
		select {
		case g := <-events:
			if g.fd != int32(a) || g.data != 42 {
				t.Fatalf("event for fd %d with data %d, want %d and 42", g.fd, g.data, a)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
	}
	e.Close()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
}

func TestWaitReady(t *testing.T) {
	e, err := epoll.New("test")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	a, b := socketPair(t)
	if err := e.Ctl(unix.EPOLL_CTL_ADD, a, unix.EPOLLIN, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitReady(time.Now().Add(50 * time.Millisecond)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("nothing to read: %v, want a deadline error", err)
	}
	unix.Write(b, []byte("x"))
	for range 2 { // level-triggered: a look does not consume the event
		if err := e.WaitReady(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatalf("readable: %v", err)
		}
	}
}
