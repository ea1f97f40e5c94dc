package h2

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/penstock-dev/penstock/internal/epoll"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// conn is one HTTP/2 connection.
//
// Its goroutine (serve) reads and handles every frame; the handlers of its
// streams run on their own goroutines and write their frames themselves
// under wmu. Two locks, never held together: mu guards the stream table and
// the flow-control windows, wmu the write side (the framer's writer, the
// header encoder, the buffered writer).
type conn struct {
	srv    *Server
	nc     net.Conn
	tls    *tls.ConnectionState
	remote netip.AddrPort
	scheme string

	// br is the read buffer, nil while parked (idle.go); only the
	// reading goroutine uses it. fr, the framer, reads through it and
	// writes to bw; while parked it is nil and bw is idleWriter, and
	// lockWrite makes them again for whoever writes first.
	br *bufio.Reader
	fr *http2.Framer

	// Write side, under wmu.
	wmu  sync.Mutex
	bw   *bufio.Writer
	henc *hpack.Encoder
	hbuf bytes.Buffer
	// werr is the first write error; once set nothing more is written.
	werr error
	// wdeadline is when the socket's write deadline was last moved.
	wdeadline time.Time
	// lower holds a header name being lowercased.
	lower []byte
	// dirty: the reader left control frames in bw for its next flush.
	dirty bool
	// flushDue: a flushLater is on its way (flush.go).
	flushDue bool

	// peerMaxFrame is the client's SETTINGS_MAX_FRAME_SIZE.
	peerMaxFrame atomic.Uint32

	// Under mu.
	mu      sync.Mutex
	streams map[uint32]*stream
	// active counts the client's streams whose handler runs, pushes the
	// pushed ones.
	active, pushes int
	// maxClientID is the highest stream id the client opened (or tried).
	maxClientID uint32
	nextPushID  uint32
	// recent holds the last closed client stream ids (STREAM_CLOSED
	// rather than PROTOCOL_ERROR for a HEADERS on one of them).
	recent    [16]uint32
	recentPos int
	// sendWindow is what the client lets the server send on the
	// connection; initialWindow its SETTINGS_INITIAL_WINDOW_SIZE.
	sendWindow, initialWindow int64
	peerPush                  bool
	peerMaxStreams            uint32
	// recvWindow is what the client may still send on the connection;
	// recvUnacked what handlers consumed and was not yet given back.
	recvWindow, recvUnacked int64
	// connWin and streamWin are the sizes of the receive windows granted
	// (the connection's and each stream's), grown by bdp (bdp.go).
	connWin, streamWin int64
	bdp                bdpEstimator
	// waiting counts the streams waiting for window.
	waiting int
	// ready: the server's SETTINGS went out (a GOAWAY may follow).
	ready bool
	// goAway: a GOAWAY was sent; no stream is opened after it.
	goAway bool
	closed bool
	// Rapid-reset accounting over the current second.
	calmSec             int64
	resets, completions int

	idle *time.Timer

	// Parking (idle.go). src is what br reads; pre, when set, holds the
	// h2c prefix not yet read. dec is the framer's hpack decoder, which
	// outlives the framers made for the connection. pstate is the park
	// state, pmu orders the parker's interruptions and the closing of a
	// parked connection against the park itself. reg is the descriptor
	// fd's registration with the server's IO. idleTick is the parker's
	// tick when the reader last began waiting idle.
	src io.Reader
	pre *prefixReader
	// upgrade is the request that switched the connection to h2c, until
	// its stream is opened.
	upgrade  *Upgrade
	hb       headerBlock
	pstate   atomic.Int32
	pmu      sync.Mutex
	reg      epoll.Registration
	fd       int
	idleTick atomic.Uint32
	noPark   bool
	ended    atomic.Bool
	// closedFn is Conn.Closed.
	closedFn func()
}

// Errors a connection ends streams with.
var (
	errConnClosed    = errors.New("h2: connection closed")
	errStreamReset   = errors.New("h2: stream reset")
	errSendTimeout   = errors.New("h2: stream made no progress for send_timeout (client flow-control window closed)")
	errClientGone    = errors.New("h2: client reset the stream")
	errConnDraining  = errors.New("h2: connection closing")
	errTooManyStalls = errors.New("h2: too many streams wait on flow control")
)

// maxWindow is the largest flow-control window (RFC 9113 §6.9.1).
const maxWindow = 1<<31 - 1

func newConn(s *Server, cn Conn) *conn {
	c := &conn{
		srv:            s,
		nc:             cn.NC,
		tls:            cn.TLS,
		remote:         cn.Remote,
		scheme:         "http",
		streams:        make(map[uint32]*stream),
		nextPushID:     2,
		sendWindow:     65535,
		initialWindow:  65535,
		peerPush:       true,
		peerMaxStreams: 1<<32 - 1,
		recvWindow:     min(connWindow, s.maxRecvWindow),
		connWin:        min(connWindow, s.maxRecvWindow),
		streamWin:      min(streamWindow, s.maxRecvWindow),
	}
	if cn.TLS != nil {
		c.scheme = "https"
	}
	c.peerMaxFrame.Store(16384)
	c.src, c.fd, c.closedFn = cn.NC, -1, cn.Closed
	c.upgrade = cn.Upgrade
	if len(cn.Prefix) > 0 {
		c.pre = &prefixReader{p: cn.Prefix, nc: cn.NC}
		c.src = c.pre
	}
	c.hb.init(s.maxHeaderList)
	c.acquireRead()
	c.acquireWrite()
	c.henc = hpack.NewEncoder(&c.hbuf)
	// Response header fields alias buffers reused after the response:
	// with no dynamic table the encoder keeps none of them.
	c.henc.SetMaxDynamicTableSizeLimit(0)
	return c
}

// connWriter moves the socket's write deadline on before writes, so that
// a client that reads nothing for SendTimeout loses its connection.
type connWriter struct{ c *conn }

func (w connWriter) Write(p []byte) (int, error) {
	c := w.c
	if d := c.srv.o.SendTimeout; d > 0 {
		if now := time.Now(); now.Sub(c.wdeadline) > d/4 {
			c.wdeadline = now
			c.nc.SetWriteDeadline(now.Add(d))
		}
	}
	return c.nc.Write(p)
}

// serve reads frames until the connection ends or parks (idle.go).
func (c *conn) serve() {
	if c.start() {
		if u := c.upgrade; u != nil {
			c.upgrade = nil
			c.openUpgraded(u)
		}
		if c.loop() == waitParked {
			return
		}
	}
	c.end()
}

// start reads the client's preface and first SETTINGS and sends the
// server's; false if the connection is to end.
func (c *conn) start() bool {
	c.nc.SetReadDeadline(time.Now().Add(c.srv.o.PrefaceTimeout))
	if u := c.upgrade; u != nil {
		// The HTTP2-Settings field is the client's first SETTINGS,
		// acknowledged by the 101 (RFC 7540 §3.2.1).
		sf := upgradeSettingsFrame(u.Settings)
		if sf == nil {
			c.fail(http2.ConnectionError(http2.ErrCodeProtocol))
			return false
		}
		if err := c.applySettings(sf); err != nil {
			c.fail(err)
			return false
		}
	}
	var pre [len(http2.ClientPreface)]byte
	if _, err := io.ReadFull(c.br, pre[:]); err != nil {
		return false
	}
	if string(pre[:]) != http2.ClientPreface {
		c.fail(http2.ConnectionError(http2.ErrCodeProtocol))
		return false
	}
	if !c.writeSettings() {
		return false
	}
	c.mu.Lock()
	c.ready = true
	c.mu.Unlock()
	f, err := c.fr.ReadFrame()
	if err != nil {
		c.fail(err)
		return false
	}
	if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
		c.fail(http2.ConnectionError(http2.ErrCodeProtocol))
		return false
	} else if err := c.onSettings(sf); err != nil {
		c.fail(err)
		return false
	}
	c.nc.SetReadDeadline(time.Time{})
	if d := c.srv.o.IdleTimeout; d > 0 {
		c.idle = time.AfterFunc(d, c.onIdle)
	}
	return true
}

// loop reads and handles frames until the connection ends (waitEnded) or
// parks (waitParked: the goroutine must leave the connection alone).
func (c *conn) loop() waitResult {
	for {
		if c.br.Buffered() == 0 {
			if !c.flushDirty() {
				return waitEnded
			}
			if c.parks() {
				if r := c.idleWait(); r != waitData {
					return r
				}
			}
		}
		f, err := c.fr.ReadFrame()
		if err == nil {
			err = c.process(f)
		}
		if err == nil {
			continue
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			c.streamError(se)
			continue
		}
		if err != errDone {
			c.fail(err)
		}
		return waitEnded
	}
}

// errDone ends the read loop without an error (the client's GOAWAY with
// nothing left to answer).
var errDone = errors.New("h2: done")

// fail ends the connection after err: a GOAWAY for protocol errors, then
// the client's remaining bytes are read and dropped for a moment so that
// closing does not reset what is still unread by it.
func (c *conn) fail(err error) {
	var ce http2.ConnectionError
	code := http2.ErrCode(0)
	switch {
	case errors.As(err, &ce):
		code = http2.ErrCode(ce)
	case err == http2.ErrFrameTooLarge:
		code = http2.ErrCodeFrameSize
	default:
		return // the socket failed or the client left
	}
	c.srv.debug("HTTP/2 connection error", c, "code", code.String(), "detail", errDetail(c.fr))
	if code == http2.ErrCodeEnhanceYourCalm && c.srv.o.Calmed != nil {
		c.srv.o.Calmed()
	}
	c.mu.Lock()
	c.goAway = true
	last := c.maxClientID
	c.mu.Unlock()
	if c.lockWrite() {
		c.fr.WriteGoAway(last, code, nil)
		c.unlockFlush()
	}
	c.closeWrite()
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, c.br)
}

func errDetail(fr *http2.Framer) string {
	if err := fr.ErrorDetail(); err != nil {
		return err.Error()
	}
	return ""
}

// closeWrite ends the server's side of the connection once what is
// buffered has gone: the client reads it to the end, then its close ends
// the read loop (or the read deadline set by the caller does).
func (c *conn) closeWrite() {
	c.wmu.Lock()
	if c.werr == nil {
		c.bw.Flush()
		c.werr = errConnDraining
	}
	c.wmu.Unlock()
	nc := c.nc
	if tc, ok := nc.(*tls.Conn); ok {
		tc.CloseWrite()
		nc = tc.NetConn()
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

// end closes the connection, ends every stream left and reports the
// connection gone; once.
func (c *conn) end() {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	c.mu.Lock()
	c.closed = true
	// Under mu: a stream whose handler returns meanwhile goes back to the
	// pool, and another connection may take it.
	for _, st := range c.streams {
		st.abort(errConnClosed)
	}
	c.mu.Unlock()
	if c.idle != nil {
		c.idle.Stop()
	}
	c.wmu.Lock()
	if c.werr == nil {
		c.werr = errConnClosed
	}
	c.releaseWrite()
	c.wmu.Unlock()
	// Out of the IO before the descriptor closes: its number may be
	// reused at once.
	c.srv.o.IO.Release(&c.reg)
	c.nc.Close()
	c.releaseRead()
	c.srv.forget(c)
	if c.closedFn != nil {
		c.closedFn()
	}
}

// kill closes the connection now (Server.Close).
func (c *conn) kill() {
	if c.takeParked() {
		c.end()
		return
	}
	c.nc.Close()
}

// drain sends a GOAWAY naming the last stream the connection will serve
// (graceful shutdown, idle timeout); the connection closes once those
// streams are done.
func (c *conn) drain() {
	if c.takeParked() {
		c.closeParked()
		return
	}
	c.mu.Lock()
	if c.goAway || c.closed {
		c.mu.Unlock()
		return
	}
	if !c.ready {
		// Still in the preface: nothing to finish.
		c.mu.Unlock()
		c.kill()
		return
	}
	c.goAway = true
	last := c.maxClientID
	idle := c.active == 0 && c.pushes == 0
	c.mu.Unlock()
	if c.lockWrite() {
		c.fr.WriteGoAway(last, http2.ErrCodeNo, nil)
		c.unlockFlush()
	}
	if idle {
		c.finish()
	}
}

// keepEventStreams resets every stream of c but its event streams and
// reports whether c has any of those (Server.closeAllButStreams); with
// none, nothing is reset.
func (c *conn) keepEventStreams() bool {
	c.mu.Lock()
	keep := false
	for _, st := range c.streams {
		if st.eventStream.Load() && !st.aborted.Load() {
			keep = true
			break
		}
	}
	if !keep {
		c.mu.Unlock()
		return false
	}
	var cut []uint32
	for id, st := range c.streams {
		if !st.eventStream.Load() && !st.aborted.Load() {
			st.abort(errConnDraining)
			cut = append(cut, id)
		}
	}
	c.mu.Unlock()
	if len(cut) > 0 && c.lockWrite() {
		for _, id := range cut {
			c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		}
		c.unlockFlush()
	}
	return true
}

// finish ends a connection with nothing left to serve after its GOAWAY:
// its write side closes and its reads end within a second.
func (c *conn) finish() {
	c.closeWrite()
	c.nc.SetReadDeadline(time.Now().Add(time.Second))
}

func (c *conn) onIdle() {
	c.mu.Lock()
	idle := c.active == 0 && c.pushes == 0
	c.mu.Unlock()
	if idle {
		c.drain()
	}
}

// lockWrite takes the write side; false (and not held) once writing has
// failed or ended.
func (c *conn) lockWrite() bool {
	c.wmu.Lock()
	if c.werr != nil {
		c.wmu.Unlock()
		return false
	}
	if c.bw == idleWriter {
		// Parked, or about to be (idle.go).
		c.acquireWrite()
	}
	return true
}

// unlockFlush sends what was written and releases the write side.
func (c *conn) unlockFlush() error {
	err := c.werr
	if err == nil {
		if err = c.bw.Flush(); err != nil {
			c.writeFailed(err)
		}
		c.dirty = false
	}
	c.wmu.Unlock()
	return err
}

// writeFailed records a failed write (wmu held): the connection is of no
// more use, and closing it ends the read loop.
func (c *conn) writeFailed(err error) {
	if c.werr == nil {
		c.werr = err
	}
	c.nc.Close()
}

// writeControl writes a frame the reader answers with (ACKs, resets,
// window updates); it is flushed when the reader has nothing more to read,
// so that a burst of frames is answered in one write.
func (c *conn) writeControl(write func(fr *http2.Framer) error) {
	if !c.lockWrite() {
		return
	}
	if err := write(c.fr); err != nil {
		c.writeFailed(err)
	}
	c.dirty = true
	c.wmu.Unlock()
}

// flushDirty flushes the reader's control frames; false if the
// connection's writes failed.
func (c *conn) flushDirty() bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr == errConnDraining
	}
	if c.dirty {
		c.dirty = false
		if err := c.bw.Flush(); err != nil {
			c.writeFailed(err)
			return false
		}
	}
	return true
}

// writeSettings sends the server's SETTINGS and opens the connection
// window to connWindow.
func (c *conn) writeSettings() bool {
	if !c.lockWrite() {
		return false
	}
	c.fr.WriteSettings(
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: uint32(c.srv.o.MaxConcurrentStreams)},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(c.streamWin)},
		http2.Setting{ID: http2.SettingMaxHeaderListSize, Val: c.srv.maxHeaderList},
	)
	if c.connWin > 65535 {
		c.fr.WriteWindowUpdate(0, uint32(c.connWin-65535))
	}
	return c.unlockFlush() == nil
}

// process handles one frame.
func (c *conn) process(f http2.Frame) error {
	switch f := f.(type) {
	case *http2.HeadersFrame:
		mh, err := c.hb.read(c.fr, f)
		if err != nil {
			return err
		}
		return c.onHeaders(mh)
	case *http2.DataFrame:
		return c.onData(f)
	case *http2.SettingsFrame:
		return c.onSettings(f)
	case *http2.PingFrame:
		if !f.IsAck() {
			data := f.Data
			c.writeControl(func(fr *http2.Framer) error { return fr.WritePing(true, data) })
		} else if f.Data == bdpPingData {
			c.onBDPAck()
		}
	case *http2.WindowUpdateFrame:
		return c.onWindowUpdate(f)
	case *http2.RSTStreamFrame:
		return c.onReset(f)
	case *http2.PriorityFrame:
		if f.StreamDep == f.StreamID {
			return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeProtocol}
		}
	case *http2.GoAwayFrame:
		// The client opens no more streams; those open finish.
		c.mu.Lock()
		c.goAway = true
		idle := c.active == 0 && c.pushes == 0
		c.mu.Unlock()
		if idle {
			c.flushDirty()
			return errDone
		}
	case *http2.PushPromiseFrame:
		return http2.ConnectionError(http2.ErrCodeProtocol)
	case *http2.ContinuationFrame:
		// The framer joins CONTINUATION frames to their HEADERS; one
		// alone never reaches here.
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	// Unknown frame types are ignored (RFC 9113 §4.1).
	return nil
}

// isIdle reports a stream id the client has not used yet (mu held).
func (c *conn) isIdle(id uint32) bool {
	if id%2 == 1 {
		return id > c.maxClientID
	}
	return id >= c.nextPushID
}

func (c *conn) recentlyClosed(id uint32) bool {
	for _, r := range c.recent {
		if r == id {
			return true
		}
	}
	return false
}

// onSettings applies the client's settings, in order (a repeated setting
// takes its last value), and acknowledges them.
func (c *conn) onSettings(f *http2.SettingsFrame) error {
	if f.IsAck() {
		return nil
	}
	if err := c.applySettings(f); err != nil {
		return err
	}
	c.writeControl(func(fr *http2.Framer) error { return fr.WriteSettingsAck() })
	return nil
}

// applySettings takes the peer's settings in.
func (c *conn) applySettings(f *http2.SettingsFrame) error {
	c.mu.Lock()
	err := f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingInitialWindowSize:
			delta := int64(s.Val) - c.initialWindow
			c.initialWindow = int64(s.Val)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return http2.ConnectionError(http2.ErrCodeFlowControl)
				}
			}
		case http2.SettingMaxFrameSize:
			c.peerMaxFrame.Store(s.Val)
		case http2.SettingEnablePush:
			c.peerPush = s.Val == 1
		case http2.SettingMaxConcurrentStreams:
			c.peerMaxStreams = s.Val
		}
		return nil
	})
	if err == nil {
		c.wakeAll()
	}
	c.mu.Unlock()
	return err
}

// upgradeSettingsFrame makes a SETTINGS frame of an HTTP2-Settings payload
// (checked by ParseUpgradeSettings), to be taken in like one received; nil
// if it is not one.
func upgradeSettingsFrame(payload []byte) *http2.SettingsFrame {
	b := make([]byte, 9+len(payload))
	b[0], b[1], b[2] = byte(len(payload)>>16), byte(len(payload)>>8), byte(len(payload))
	b[3] = byte(http2.FrameSettings)
	copy(b[9:], payload)
	f, err := http2.NewFramer(nil, bytes.NewReader(b)).ReadFrame()
	if err != nil {
		return nil
	}
	return f.(*http2.SettingsFrame)
}

// openUpgraded opens stream 1 for the HTTP/1.1 request that switched the
// connection to h2c: the client has sent all of it (RFC 7540 §3.2), and
// the response goes out on the stream.
func (c *conn) openUpgraded(u *Upgrade) {
	h := head{method: u.Method, scheme: "http", authority: u.Authority, path: u.Path, contentLength: -1}
	c.mu.Lock()
	c.maxClientID = 1
	st := getStream(c, 1)
	st.sendWindow = c.initialWindow
	st.recvWindow = c.streamWin
	st.remoteEnded = true
	st.body.closeWith(io.EOF)
	c.streams[1] = st
	c.active++
	if c.active == 1 && c.idle != nil {
		c.idle.Stop()
	}
	c.mu.Unlock()
	st.fields = append(st.fields[:0], u.Fields...)
	st.h, st.ended = h, true
	go st.serveFn()
}

// wakeAll wakes the streams waiting for window (mu held).
func (c *conn) wakeAll() {
	if c.waiting == 0 {
		return
	}
	for _, st := range c.streams {
		if st.waiting {
			st.wake()
		}
	}
}

func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame) error {
	inc := int64(f.Increment)
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.StreamID == 0 {
		c.sendWindow += inc
		if c.sendWindow > maxWindow {
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
		c.wakeAll()
		return nil
	}
	st := c.streams[f.StreamID]
	if st == nil {
		if c.isIdle(f.StreamID) {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	st.sendWindow += inc
	if st.sendWindow > maxWindow {
		return http2.StreamError{StreamID: f.StreamID, Code: http2.ErrCodeFlowControl}
	}
	if st.waiting {
		st.wake()
	}
	return nil
}

// onReset ends a stream the client reset. A reset of a stream whose
// handler still runs counts towards the rapid-reset bound.
func (c *conn) onReset(f *http2.RSTStreamFrame) error {
	c.mu.Lock()
	st := c.streams[f.StreamID]
	if st == nil {
		idle := c.isIdle(f.StreamID)
		c.mu.Unlock()
		if idle {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		return nil
	}
	st.remoteEnded = true
	st.peerReset = true
	calm := c.countReset()
	st.abort(errClientGone)
	c.mu.Unlock()
	if calm {
		return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
	}
	return nil
}

// countReset counts a stream the client reset or opened beyond the limit
// and reports whether the connection has passed the rapid-reset bound:
// more such streams in the current second than calmResets, and than
// streams completed normally in it (mu held).
func (c *conn) countReset() bool {
	c.tickCalm()
	c.resets++
	return c.resets > c.calmLimit() && c.resets > c.completions
}

func (c *conn) calmLimit() int { return max(2*c.srv.o.MaxConcurrentStreams, calmResets) }

// calmResets is the least number of reset streams per second on one
// connection that ends it with ENHANCE_YOUR_CALM: far above what a
// client cancelling requests it no longer needs produces.
const calmResets = 200

func (c *conn) tickCalm() {
	if sec := time.Now().Unix(); sec != c.calmSec {
		c.calmSec, c.resets, c.completions = sec, 0, 0
	}
}

// streamError answers a stream error with RST_STREAM and ends the stream
// if it is open.
func (c *conn) streamError(se http2.StreamError) {
	c.mu.Lock()
	if se.StreamID%2 == 1 && se.StreamID > c.maxClientID {
		// A HEADERS frame that failed to decode still used its id.
		c.maxClientID = se.StreamID
	}
	if st := c.streams[se.StreamID]; st != nil {
		st.remoteEnded = true
		st.abort(errStreamReset)
	}
	c.mu.Unlock()
	c.writeControl(func(fr *http2.Framer) error { return fr.WriteRSTStream(se.StreamID, se.Code) })
}

// credit gives n bytes of connection window back to the client (handlers
// consumed or dropped them) and, for st, stream window; updates are sent
// once a quarter of a window has gathered. st must not be recycled
// meanwhile: only its handler's goroutine passes it.
func (c *conn) credit(st *stream, n int) {
	if n <= 0 {
		return
	}
	c.mu.Lock()
	u := c.creditLocked(st, n)
	c.mu.Unlock()
	c.sendUpdates(u)
}

// windowUpdates are the WINDOW_UPDATE frames a credit calls for.
type windowUpdates struct {
	conn, stream uint32
	id           uint32
}

// creditLocked is credit's accounting (mu held).
func (c *conn) creditLocked(st *stream, n int) windowUpdates {
	var u windowUpdates
	if n <= 0 {
		return u
	}
	c.recvUnacked += int64(n)
	if c.recvUnacked >= c.connWin/4 {
		u.conn = uint32(c.recvUnacked)
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
	}
	if st != nil && !st.remoteEnded {
		st.recvUnacked += int64(n)
		if st.recvUnacked >= c.streamWin/4 {
			u.stream, u.id = uint32(st.recvUnacked), st.id
			st.recvWindow += st.recvUnacked
			st.recvUnacked = 0
		}
	}
	return u
}

func (c *conn) sendUpdates(u windowUpdates) {
	if u.conn == 0 && u.stream == 0 {
		return
	}
	if !c.lockWrite() {
		return
	}
	if u.conn > 0 {
		c.fr.WriteWindowUpdate(0, u.conn)
	}
	if u.stream > 0 {
		c.fr.WriteWindowUpdate(u.id, u.stream)
	}
	c.unlockFlush()
}

// onData passes a DATA frame's payload to its stream's body.
func (c *conn) onData(f *http2.DataFrame) error {
	id := f.StreamID
	n := int64(f.Length)
	data := f.Data()
	c.mu.Lock()
	if n > c.recvWindow {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvWindow -= n
	st := c.streams[id]
	if st == nil || st.pushed {
		idle := st == nil && c.isIdle(id)
		c.mu.Unlock()
		if idle || st != nil {
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.credit(nil, int(n))
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if st.remoteEnded {
		// Read under mu: once it is released the stream may be recycled.
		dropped := st.aborted.Load() && !st.peerReset
		c.mu.Unlock()
		c.credit(nil, int(n))
		if dropped {
			return nil // reset by the server: frames in flight are dropped
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeStreamClosed}
	}
	if n > st.recvWindow {
		c.mu.Unlock()
		c.credit(nil, int(n))
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeFlowControl}
	}
	st.recvWindow -= n
	st.received += int64(len(data))
	end := f.StreamEnded()
	if st.declLen >= 0 && (st.received > st.declLen || end && st.received != st.declLen) {
		c.mu.Unlock()
		c.credit(nil, int(n))
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	kept := st.body.write(data)
	// Padding, and data a handler no longer reads, are given back now.
	u := c.creditLocked(st, int(n)-kept)
	if end {
		st.remoteEnded = true
		st.body.closeWith(io.EOF)
	}
	ping := n > 0 && c.bdpData(n)
	c.mu.Unlock()
	c.sendUpdates(u)
	if ping {
		c.sendBDPPing()
	}
	return nil
}

// onHeaders opens a stream, or takes a stream's trailers.
func (c *conn) onHeaders(f *http2.MetaHeadersFrame) error {
	id := f.StreamID
	if id%2 == 0 {
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	if f.HasPriority() && f.Priority.StreamDep == id {
		c.mu.Lock()
		if id > c.maxClientID {
			c.maxClientID = id
		}
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	c.mu.Lock()
	if st := c.streams[id]; st != nil {
		return c.onTrailers(st, f) // unlocks
	}
	if id <= c.maxClientID {
		closed := c.recentlyClosed(id)
		c.mu.Unlock()
		if closed {
			return http2.ConnectionError(http2.ErrCodeStreamClosed)
		}
		return http2.ConnectionError(http2.ErrCodeProtocol)
	}
	c.maxClientID = id
	if c.goAway {
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	var h head
	if err := h.parse(f); err != nil {
		c.mu.Unlock()
		c.srv.debug("malformed HTTP/2 request", c, "stream", id, "error", err.Error())
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	if c.active >= c.srv.o.MaxConcurrentStreams {
		calm := c.countReset()
		c.mu.Unlock()
		if calm {
			return http2.ConnectionError(http2.ErrCodeEnhanceYourCalm)
		}
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeRefusedStream}
	}
	st := getStream(c, id)
	st.sendWindow = c.initialWindow
	st.recvWindow = c.streamWin
	st.declLen = h.contentLength
	st.remoteEnded = f.StreamEnded()
	if st.remoteEnded {
		st.body.closeWith(io.EOF)
	}
	c.streams[id] = st
	c.active++
	if c.active == 1 && c.idle != nil {
		c.idle.Stop()
	}
	c.mu.Unlock()
	if f.Truncated {
		go st.serveStatus(431)
		return nil
	}
	if h.method == "CONNECT" {
		// No tunnels over HTTP/2 (extended CONNECT is not offered).
		go st.serveStatus(501)
		return nil
	}
	// The block's fields are the connection's until its next block: the
	// stream's handler reads its own copy.
	st.fields = append(st.fields[:0], f.Fields...)
	st.h, st.ended = h, f.StreamEnded()
	go st.serveFn()
	return nil
}

// onTrailers takes the trailer section that ends a request (mu held; it
// unlocks).
func (c *conn) onTrailers(st *stream, f *http2.MetaHeadersFrame) error {
	id := st.id
	if st.remoteEnded {
		// A HEADERS frame after the request's end (RFC 9113 §5.1): its
		// header block was decoded, but no state can take it.
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeStreamClosed)
	}
	if !f.StreamEnded() || len(f.PseudoFields()) > 0 ||
		st.declLen >= 0 && st.received != st.declLen {
		c.mu.Unlock()
		return http2.StreamError{StreamID: id, Code: http2.ErrCodeProtocol}
	}
	st.remoteEnded = true
	st.body.setTrailers(f.Fields)
	c.mu.Unlock()
	return nil
}

// streamDone takes a stream whose handler has returned out of the table.
func (c *conn) streamDone(st *stream) {
	c.mu.Lock()
	delete(c.streams, st.id)
	if st.pushed {
		c.pushes--
	} else {
		c.active--
		c.recent[c.recentPos] = st.id
		c.recentPos = (c.recentPos + 1) % len(c.recent)
	}
	c.tickCalm()
	if !st.aborted.Load() {
		c.completions++
	}
	if st.waiting {
		st.waiting = false
		c.waiting--
	}
	// The unread part of the body is no longer anyone's: the connection
	// window gets it back.
	st.remoteEnded = true
	unread := st.body.drop()
	idle := c.active == 0 && c.pushes == 0
	goAway, closed := c.goAway, c.closed
	if idle && !goAway && !closed && c.idle != nil {
		c.idle.Reset(c.srv.o.IdleTimeout)
	}
	if idle {
		c.idleTick.Store(c.srv.parker.tick.Load())
	}
	c.mu.Unlock()
	c.credit(nil, unread)
	if idle && goAway && !closed {
		c.finish()
	}
}

// head is what the engine checks of a request's header section before the
// stream is opened (RFC 9113 §8.3.1, §8.2.2).
type head struct {
	method, scheme, authority, path string
	contentLength                   int64
}

var (
	errMalformed = errors.New("malformed request header section")
)

func (h *head) parse(f *http2.MetaHeadersFrame) error {
	h.contentLength = -1
	for _, hf := range f.Fields {
		if len(hf.Name) > 0 && hf.Name[0] == ':' {
			switch hf.Name {
			case ":method":
				h.method = hf.Value
			case ":scheme":
				h.scheme = hf.Value
			case ":authority":
				h.authority = hf.Value
			case ":path":
				h.path = hf.Value
			default:
				// :status in a request, or :protocol without extended
				// CONNECT.
				return errMalformed
			}
			continue
		}
		switch hf.Name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			return errMalformed
		case "te":
			if !strings.EqualFold(hf.Value, "trailers") {
				return errMalformed
			}
		case "content-length":
			n, err := strconv.ParseUint(hf.Value, 10, 63)
			if err != nil || h.contentLength >= 0 && int64(n) != h.contentLength {
				return errMalformed
			}
			h.contentLength = int64(n)
		}
	}
	if h.method == "" {
		return errMalformed
	}
	if h.method == "CONNECT" {
		if h.authority == "" || h.scheme != "" || h.path != "" {
			return errMalformed
		}
		return nil
	}
	if h.scheme == "" || h.path == "" || h.path[0] != '/' && !(h.path == "*" && h.method == "OPTIONS") {
		return errMalformed
	}
	if f.StreamEnded() && h.contentLength > 0 {
		return errMalformed
	}
	return nil
}

// writeHeaderBlock encodes a header section and writes it as HEADERS (and
// CONTINUATION frames if it is larger than a frame); wmu held.
func (c *conn) writeHeaderBlock(id uint32, status int, h *exchange.Header, endStream bool) error {
	c.hbuf.Reset()
	if status > 0 {
		c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: statusText(status)})
		if !h.Has("Date") {
			c.henc.WriteField(hpack.HeaderField{Name: "date", Value: httpDate(time.Now())})
		}
	}
	h.Range(func(name, value string) bool {
		if name == "" || name[0] == ':' || connectionSpecific(name) {
			return true
		}
		c.henc.WriteField(hpack.HeaderField{Name: c.lowerName(name), Value: value})
		return true
	})
	return c.writeBlock(id, endStream, c.hbuf.Bytes())
}

// writeBlock writes an encoded header block; wmu held.
func (c *conn) writeBlock(id uint32, endStream bool, block []byte) error {
	max := int(c.peerMaxFrame.Load())
	first := block
	if len(first) > max {
		first = block[:max]
	}
	block = block[len(first):]
	err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: first, EndStream: endStream, EndHeaders: len(block) == 0})
	for err == nil && len(block) > 0 {
		frag := block
		if len(frag) > max {
			frag = block[:max]
		}
		block = block[len(frag):]
		err = c.fr.WriteContinuation(id, len(block) == 0, frag)
	}
	if err != nil {
		c.writeFailed(err)
	}
	return err
}

// lowerName returns name in lower case (HTTP/2 field names are, RFC 9113
// §8.2.1); the result may alias c.lower and is valid until the next call
// (the encoder keeps nothing: it has no dynamic table).
func (c *conn) lowerName(name string) string {
	i := 0
	for i < len(name) && (name[i] < 'A' || name[i] > 'Z') {
		i++
	}
	if i == len(name) {
		return name
	}
	c.lower = append(c.lower[:0], name...)
	for ; i < len(c.lower); i++ {
		if b := c.lower[i]; 'A' <= b && b <= 'Z' {
			c.lower[i] = b + 'a' - 'A'
		}
	}
	return unsafeString(c.lower)
}

// connectionSpecific reports fields HTTP/2 does not carry (RFC 9113
// §8.2.2).
func connectionSpecific(name string) bool {
	switch len(name) {
	case 7:
		return exchange.EqualFold(name, "upgrade")
	case 10:
		return exchange.EqualFold(name, "connection") || exchange.EqualFold(name, "keep-alive")
	case 16:
		return exchange.EqualFold(name, "proxy-connection")
	case 17:
		return exchange.EqualFold(name, "transfer-encoding")
	}
	return false
}

var statusTexts [600]string

func init() {
	for i := 100; i < len(statusTexts); i++ {
		statusTexts[i] = strconv.Itoa(i)
	}
}

func statusText(code int) string {
	if code >= 100 && code < len(statusTexts) {
		return statusTexts[code]
	}
	return strconv.Itoa(code)
}
