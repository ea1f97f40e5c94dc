package h2

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
)

// Parking: an idle connection with no goroutine and no buffer.
//
// A connection is idle when no stream is open and nothing is left to read
// or to write. An idle connection would otherwise cost its reading
// goroutine's stack, a read and a write buffer and a framer (whose own
// buffers grow to the largest frame it has read or written): about 15 KiB
// of the 33 KiB an idle connection over TLS cost (bench/README.md). So, as
// the HTTP/1.1 engine does for its keep-alive connections
// (internal/engine/h1), an idle connection is parked: its goroutine ends,
// its buffers and framer go back to pools or to the collector, and its
// descriptor waits in one of the polling instances of the server's
// epoll.IO, armed for one event (IO.Arm, EPOLLONESHOT). When the client
// sends again (or hangs up) the IO tells the connection (Event), which
// goes on serving on a new goroutine and takes buffers again as it needs
// them. What stays is the connection's state: its struct, the hpack
// decoder's dynamic table (the client's, RFC 7541 §2.3.2), the TLS
// connection and the idle-timeout timer.
//
// A connection is not parked the moment it goes idle: a client sending
// request after request would pay an epoll_ctl, a goroutine and two
// buffers for each. Instead the reader waits for the next frame's first
// byte as usual (Peek, which consumes nothing), and the server's parker
// goroutine, ticking every parkTick, interrupts the reads of connections
// idle for parkTicks ticks (a read deadline in the past). A read
// interrupted that way has consumed nothing: the connection parks if it is
// still idle. A TLS connection may still hold bytes of a record it has not
// read in full, never a whole one (tls.Conn.Read decrypts every complete
// record it holds before it reads the socket, and a deadline only stops
// socket reads): the rest of that record is still to come, and wakes the
// connection when it does. Data that arrives while the connection parks is
// reported by Arm itself.
//
// Draining (Shutdown, the idle timeout) sends a parked connection its
// GOAWAY and closes it at once, with no goroutine; Close closes it.

// parkTick is the parker's clock; a connection idle for parkTicks ticks
// (between parkTick × (parkTicks-1) and parkTick × parkTicks) is parked.
const (
	parkTick  = 100 * time.Millisecond
	parkTicks = 2
)

// Park states (conn.pstate).
const (
	psRunning     int32 = iota // a goroutine serves the connection
	psWaiting                  // idle, its goroutine waiting for a first byte
	psInterrupted              // that wait interrupted by the parker
	psParked                   // no goroutine: armed in the IO
	psClosing                  // closed by drain or kill while parked
)

// Pools of the buffers a running connection holds. Small buffers: they
// gather frame headers, control frames and response heads into one system
// call; full DATA frames bypass them.
const bufSize = 4 << 10

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}
)

// idleWriter is the write buffer of every connection that has none
// (parked, or ended): always empty, so that a Flush of it by code that
// flushes without writing (flushDirty, closeWrite, a flush that was due)
// does nothing and touches nothing, and never written to, since lockWrite
// gives the connection a buffer of its own first. Its writer discards, in
// case.
var idleWriter = bufio.NewWriterSize(io.Discard, 1)

// frameSource is what the framer reads: the connection's current read
// buffer, which it gives back while parked. The framer is made by whoever
// writes first, the buffer by the reader.
type frameSource struct{ c *conn }

func (s frameSource) Read(p []byte) (int, error) { return s.c.br.Read(p) }

// prefixReader returns bytes already taken from the connection (the h2c
// preface the HTTP/1.1 engine recognised) before reading it.
type prefixReader struct {
	p  []byte
	nc net.Conn
}

func (r *prefixReader) Read(b []byte) (int, error) {
	if len(r.p) > 0 {
		n := copy(b, r.p)
		r.p = r.p[n:]
		return n, nil
	}
	return r.nc.Read(b)
}

// acquireRead takes a read buffer (the reader's goroutine).
func (c *conn) acquireRead() {
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(c.src)
}

// releaseRead gives the read buffer back; nothing may be buffered.
func (c *conn) releaseRead() {
	if c.br == nil {
		return
	}
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.br = nil
}

// acquireWrite takes a write buffer and makes a framer over it (wmu held).
func (c *conn) acquireWrite() {
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(connWriter{c})
	c.fr = http2.NewFramer(c.bw, frameSource{c})
	c.fr.SetReuseFrames()
	c.fr.SetMaxReadFrameSize(16384)
	c.fr.MaxHeaderListSize = c.srv.maxHeaderList
}

// releaseWrite gives the write buffer back and drops the framer, whose
// buffers grow to the largest frame it has handled, and the header
// scratch buffers (wmu held). Nothing may be buffered.
func (c *conn) releaseWrite() {
	if c.bw != idleWriter && c.bw != nil {
		c.bw.Reset(nil)
		writerPool.Put(c.bw)
	}
	c.bw = idleWriter
	c.fr = nil
	c.hbuf = bytes.Buffer{}
	c.lower = nil
}

// parks reports whether the connection may park once idle: the server
// has an IO, and the h2c prefix has been read.
func (c *conn) parks() bool {
	return c.srv.o.IO != nil && !c.noPark && (c.pre == nil || len(c.pre.p) == 0)
}

// streamsIdle reports whether no stream is open and no GOAWAY was sent.
func (c *conn) streamsIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active == 0 && c.pushes == 0 && !c.goAway && !c.closed
}

// waitResult is how an idle wait ended.
type waitResult uint8

const (
	waitData   waitResult = iota // bytes to read: go on serving
	waitParked                   // parked: the goroutine must return
	waitEnded                    // the connection is over
)

// idleWait waits for the next frame's first byte without consuming it,
// and parks the connection if the parker interrupts the wait. Only the
// parker's interruption takes a lock.
func (c *conn) idleWait() waitResult {
	c.idleTick.Store(c.srv.parker.tick.Load())
	c.pstate.Store(psWaiting)
	_, err := c.br.Peek(1)
	if c.pstate.CompareAndSwap(psWaiting, psRunning) {
		if err != nil {
			return waitEnded
		}
		return waitData
	}
	// Interrupted: the parker has set a read deadline in the past, under
	// pmu.
	c.pmu.Lock()
	c.nc.SetReadDeadline(time.Time{})
	c.pstate.Store(psRunning)
	c.pmu.Unlock()
	switch {
	case err == nil:
		return waitData
	case !errors.Is(err, os.ErrDeadlineExceeded):
		return waitEnded
	}
	return c.park()
}

// park parks the connection if it is idle. It returns waitData when it is
// not (or could not be armed: it then keeps its goroutine for good),
// waitEnded when it is draining with nothing left to serve.
func (c *conn) park() waitResult {
	if c.fd < 0 {
		if c.fd = connFD(c.nc); c.fd < 0 {
			c.noPark = true
			return waitData
		}
	}
	// Under pmu until armed: drain and kill wait for the registration to
	// be complete before they close the descriptor.
	c.pmu.Lock()
	defer c.pmu.Unlock()
	c.mu.Lock()
	open := c.active > 0 || c.pushes > 0
	draining := c.goAway || c.closed
	if !open && !draining {
		c.pstate.Store(psParked)
	}
	c.mu.Unlock()
	switch {
	case open:
		return waitData
	case draining:
		return waitEnded
	}
	c.releaseRead()
	c.wmu.Lock()
	if c.werr == nil && !c.dirty && c.bw.Buffered() == 0 {
		c.releaseWrite()
	}
	c.wmu.Unlock()
	if c.srv.o.IO.Arm(&c.reg, c.fd, c) {
		return waitParked
	}
	c.pstate.Store(psRunning)
	c.noPark = true
	c.wmu.Lock()
	if c.bw == idleWriter {
		c.acquireWrite()
	}
	c.wmu.Unlock()
	c.acquireRead()
	return waitData
}

// Event is how the server's IO tells a parked connection that its socket
// is readable or its client hung up (epoll.Handler): the connection goes on
// on a new goroutine, which reads what came. It runs on the IO's goroutine.
func (c *conn) Event(inst int, events uint32) {
	if c.pstate.CompareAndSwap(psParked, psRunning) {
		go c.resume()
	}
}

// resume serves a connection woken in the IO.
func (c *conn) resume() {
	c.wmu.Lock()
	ok := c.werr == nil
	if ok && c.bw == idleWriter {
		c.acquireWrite()
	}
	c.wmu.Unlock()
	if ok {
		c.acquireRead()
		if c.loop() == waitParked {
			return
		}
	}
	c.end()
}

// interruptIdle ends the wait of an idle connection's reader, which then
// parks it.
func (c *conn) interruptIdle() {
	c.pmu.Lock()
	if c.pstate.CompareAndSwap(psWaiting, psInterrupted) {
		c.nc.SetReadDeadline(aLongTimeAgo)
	}
	c.pmu.Unlock()
}

var aLongTimeAgo = time.Unix(1, 0)

// takeParked takes a parked connection out of the IO's hands for closing
// (drain, kill); false if it is not parked.
func (c *conn) takeParked() bool {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	return c.pstate.CompareAndSwap(psParked, psClosing)
}

// closeParked sends a parked connection its GOAWAY (no error, naming the
// last stream it served) and closes it, from the caller's goroutine: no
// buffer or framer is taken for the 17 bytes, and the write may wait a
// second at most.
func (c *conn) closeParked() {
	c.mu.Lock()
	c.goAway = true
	last := c.maxClientID
	c.mu.Unlock()
	var f [9 + 8]byte
	f[2] = 8 // payload length
	f[3] = byte(http2.FrameGoAway)
	binary.BigEndian.PutUint32(f[9:], last&(1<<31-1))
	binary.BigEndian.PutUint32(f[13:], uint32(http2.ErrCodeNo))
	c.wmu.Lock()
	if c.werr == nil {
		c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		c.nc.Write(f[:])
		c.werr = errConnDraining
	}
	c.wmu.Unlock()
	c.end()
}

// connFD returns the descriptor of nc's socket (under TLS), or -1.
func connFD(nc net.Conn) int {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	fd := -1
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			rc.Control(func(f uintptr) { fd = int(f) })
		}
	}
	return fd
}

// parker interrupts the idle waits of a server's connections that have
// been idle for parkTicks ticks, so that they park.
type parker struct {
	// tick is the coarse clock connections going idle read.
	tick    atomic.Uint32
	running bool // under Server.mu
	scratch []*conn
}

// startParker runs the server's parker unless it runs (s.mu held). It
// stops when the server has no connection left, or shuts down.
func (s *Server) startParker() {
	if s.o.IO == nil || s.parker.running {
		return
	}
	s.parker.running = true
	go s.runParker()
}

func (s *Server) runParker() {
	t := time.NewTicker(parkTick)
	defer t.Stop()
	p := &s.parker
	for range t.C {
		now := p.tick.Add(1)
		s.mu.Lock()
		if len(s.conns) == 0 || s.shuttingDown {
			p.running = false
			s.mu.Unlock()
			return
		}
		all := p.scratch[:0]
		for c := range s.conns {
			all = append(all, c)
		}
		s.mu.Unlock()
		for i, c := range all {
			if c.pstate.Load() == psWaiting && now-c.idleTick.Load() >= parkTicks && c.streamsIdle() {
				c.interruptIdle()
			}
			all[i] = nil
		}
		p.scratch = all[:0]
	}
}
