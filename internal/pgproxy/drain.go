package pgproxy

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// errDrained is what a drainReader returns, inside run, instead of asking
// the socket once more after a read that emptied it: the caller returns
// from its step and run waits for the socket to become readable.
var errDrained = errors.New("socket drained")

// drainReader is the io.Reader under a pgproto3 Backend or Frontend. Outside
// run it reads like the connection. Inside run (TCP only) it reads the
// socket itself (recvfrom(2), readFD) and, after a read that returned less than
// it asked for, it does not read again but returns errDrained, so that a
// round trip costs one read per side instead of two.
//
// Why this is safe, from the Go runtime (go1.26 internal/poll fd_unix.go
// RawRead and fd_poll_runtime.go, runtime/netpoll.go):
//
//   - net.Conn.Read reads until EAGAIN and only then parks: each Read
//     starts with pollDesc.prepareRead, which resets the descriptor's
//     readiness (runtime_pollReset stores pdNil), so a read skipped on the
//     strength of an earlier short read could miss data that arrived in
//     between and wait forever. A short read therefore only tells anything
//     within one RawRead call.
//   - RawRead resets readiness once, before its first callback, then loops:
//     callback, and when it returns false, waitRead (netpollblock), which
//     consumes a readiness notification or parks until one. Nothing resets
//     it between callbacks.
//   - The runtime registers sockets with EPOLLET: every arrival of data
//     queues a notification, also when the socket was not empty. A read
//     that returned less than asked saw the socket empty at that moment;
//     any byte that arrives after it notifies after the reset made at the
//     start of the same RawRead, so waitRead returns and the next callback
//     reads it. A notification for bytes the short read already took only
//     costs a spurious callback, whose read returns EAGAIN.
//   - Except at the start of a run: an end of stream (FIN) or a reset that
//     came before RawRead's reset, together with data (a server's FATAL
//     error and close while its connection sat in the pool), notifies no
//     more. A short first read does not prove the socket empty then: the
//     run reads on until EAGAIN (or the end) once; from then on a short
//     read does.
//
// run therefore keeps the whole message loop inside one RawRead callback.
// The loop must not close the connection itself (Close waits for RawRead
// to return): closing from another goroutine is done with hangUp.
type drainReader struct {
	conn net.Conn
	// rc is the socket of a TCP connection; nil for others (TLS), which
	// are read through conn at all times.
	rc syscall.RawConn
	// Inside run only: the descriptor, and whether the last read emptied
	// the socket.
	fd      int
	in      bool
	drained bool
	// trusted: this run has seen EAGAIN or waited, so a short read
	// proves the socket empty.
	trusted bool
}

func newDrainReader(conn net.Conn) *drainReader {
	return &drainReader{conn: conn, rc: rawConnOf(conn)}
}

func (r *drainReader) Read(p []byte) (int, error) {
	if !r.in {
		return r.conn.Read(p)
	}
	if r.drained {
		return 0, errDrained
	}
	n, err := readFD(r.fd, p)
	switch {
	case errors.Is(err, errDrained):
		r.drained, r.trusted = true, true
		return 0, errDrained
	case err != nil:
		return 0, err
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	if n < len(p) && r.trusted {
		r.drained = true
	}
	return n, nil
}

// recheck makes the next read inside run ask the socket again even after a
// short read. A short read proves the socket empty of data, not that no
// end of stream is pending: a peer that sends its last message and closes
// at once can have both noticed in one readiness notification, and the end
// would never be read. Callers recheck after a message that announces a
// close (a FATAL error).
func (r *drainReader) recheck() { r.drained = false }

// run calls step until it returns true. Inside step, reads return
// errDrained once the socket is empty; step then returns false and run
// waits for the socket to be readable before calling it again. It returns
// the poller's error (deadline, closed connection); step reports its own.
//
// The first reads of each run are always made, until EAGAIN or the end of
// the stream, even when the caller knows that nothing is due from the
// peer: the reset at the start of RawRead may have cleared the
// notification of something that came while nobody read (the server's
// FATAL and close while the connection sat in the pool), which would then
// never be seen.
func (r *drainReader) run(step func() bool) error {
	if r.rc == nil {
		for !step() {
		}
		return nil
	}
	first := true
	err := r.rc.Read(func(fd uintptr) bool {
		r.fd, r.in, r.drained = int(fd), true, false
		r.trusted = !first
		first = false
		done := step()
		r.in = false
		return done
	})
	r.in = false
	return err
}
