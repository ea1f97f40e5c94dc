package listener_test

import (
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/listener"
	"golang.org/x/sys/unix"
)

// echoOnce writes "hi" on an accepted connection, whichever its form, and
// closes it.
func echoOnce(t *testing.T, c listener.Accepted) {
	t.Helper()
	if c.Conn != nil {
		c.Conn.Write([]byte("hi"))
		c.Conn.Close()
		return
	}
	if _, err := unix.Write(c.FD, []byte("hi")); err != nil {
		t.Errorf("write to descriptor: %v", err)
	}
	unix.Close(c.FD)
}

func dialRead(t *testing.T, addr string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(nc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSocketViews(t *testing.T) {
	tests := []struct {
		name   string
		wantFD bool // the View asks for descriptors (AcceptFD)
	}{
		{name: "Accept gives net.Conns", wantFD: false},
		{name: "AcceptFD gives bare descriptors", wantFD: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			sock := listener.NewSocket(ln)
			defer sock.Close()
			v := sock.NewView()
			for i := range 3 {
				got := make(chan listener.Accepted, 1)
				go func() {
					if tt.wantFD {
						c, err := v.AcceptFD()
						if err != nil {
							t.Error(err)
						}
						got <- c
						return
					}
					nc, err := v.Accept()
					if err != nil {
						t.Error(err)
					}
					got <- listener.Accepted{Conn: nc, FD: -1}
				}()
				read := make(chan string, 1)
				go func() { read <- dialRead(t, sock.Addr().String()) }()
				c := <-got
				// The first connection may have been accepted before
				// the View asked for descriptors; later ones are bare
				// on Linux.
				if tt.wantFD && i > 0 && runtime.GOOS == "linux" {
					if c.Conn != nil || c.FD < 0 {
						t.Fatalf("connection %d: got a net.Conn, want a descriptor", i)
					}
					if !c.Remote.Addr().IsLoopback() || c.Remote.Port() == 0 {
						t.Errorf("remote %v, want a loopback address and port", c.Remote)
					}
				}
				if !tt.wantFD && c.Conn == nil {
					t.Fatalf("connection %d: Accept gave no net.Conn", i)
				}
				echoOnce(t, c)
				if s := <-read; s != "hi" {
					t.Fatalf("client read %q, want %q", s, "hi")
				}
			}
		})
	}
}

func TestViewAcceptConvertsDescriptors(t *testing.T) {
	// A View installed while the accept loop waits for a descriptor gets
	// that connection as a net.Conn all the same.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := listener.NewSocket(ln)
	defer sock.Close()
	old := sock.NewView()
	go func() { dialRead(t, sock.Addr().String()) }()
	c, err := old.AcceptFD() // from now on the loop accepts descriptors
	if err != nil {
		t.Fatal(err)
	}
	echoOnce(t, c)
	time.Sleep(50 * time.Millisecond) // the loop is waiting again, for a descriptor
	v := sock.NewView()
	old.Close()
	read := make(chan string, 1)
	go func() { read <- dialRead(t, sock.Addr().String()) }()
	nc, err := v.Accept()
	if err != nil {
		t.Fatal(err)
	}
	nc.Write([]byte("hi"))
	nc.Close()
	if s := <-read; s != "hi" {
		t.Fatalf("client read %q, want %q", s, "hi")
	}
}

func TestDetachEndsADescriptorWaitAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sock := listener.NewSocket(ln)
	v := sock.NewView()
	go func() { dialRead(t, sock.Addr().String()) }()
	c, err := v.AcceptFD()
	if err != nil {
		t.Fatal(err)
	}
	echoOnce(t, c)
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	sock.Detach()
	// The accept loop waits with a one-second deadline; Detach must not
	// have to sit it out.
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("Detach took %v", d)
	}
}

func TestFDListener(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("bare descriptors are accepted on Linux only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl, err := listener.FDs(ln.(*net.TCPListener))
	if err != nil {
		t.Fatal(err)
	}
	read := make(chan string, 1)
	go func() { read <- dialRead(t, fl.Addr().String()) }()
	c, err := fl.AcceptFD()
	if err != nil {
		t.Fatal(err)
	}
	if c.Conn != nil || c.FD < 0 {
		t.Fatalf("got %+v, want a bare descriptor", c)
	}
	nodelay, _ := unix.GetsockoptInt(c.FD, unix.IPPROTO_TCP, unix.TCP_NODELAY)
	keepalive, _ := unix.GetsockoptInt(c.FD, unix.SOL_SOCKET, unix.SO_KEEPALIVE)
	if nodelay != 1 || keepalive != 1 {
		t.Errorf("TCP_NODELAY %d, SO_KEEPALIVE %d: want both set, as net.TCPListener.Accept does", nodelay, keepalive)
	}
	echoOnce(t, c)
	if s := <-read; s != "hi" {
		t.Fatalf("client read %q", s)
	}
	done := make(chan error, 1)
	go func() { _, err := fl.AcceptFD(); done <- err }()
	time.Sleep(50 * time.Millisecond)
	fl.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("AcceptFD after Close: no error")
		}
	case <-time.After(500 * time.Millisecond):
		t.Fatal("Close did not end a waiting AcceptFD")
	}
}
