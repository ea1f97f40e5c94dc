package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// A tcp probe is a small state machine (tcpRun) rather than a goroutine
// that blocks in a read: between its steps it holds no goroutine and no
// read buffer. Connecting, the TLS handshake and writing run on a
// goroutine, as before; when an expect step finds nothing to read, the
// probe parks (park_linux.go): its socket is registered with penstock's
// epoll layer, and the goroutine ends. An event on the socket, the
// module's timeout or the context's end starts a new goroutine that takes
// the dialogue up again where it stopped. An idle in-flight probe is then
// its tcpRun, its connection (and TLS state) and its Result: about 1 KB
// beyond the TLS state instead of a goroutine stack of 8 KB
// (bench/README.md).

// probeTLS connects and completes a TLS handshake only (penstock's
// addition: blackbox_exporter spells it tcp with tls: true).
func (p *Prober) probeTLS(ctx context.Context, target string, m *Module, r *Result) error {
	tm := &m.TCP
	conn, host, err := p.connect(ctx, target, tm.PreferredIPProtocol, tm.IPProtocolFallback, tm.SourceIPAddress, r)
	if err != nil {
		return err
	}
	defer conn.Close()
	defer bindDeadline(ctx, conn)()
	tc, err := p.handshake(ctx, conn, host, &tm.TLSConfig, r)
	if err != nil {
		return err
	}
	return tc.Close()
}

// tcpRun is one tcp probe between its steps.
type tcpRun struct {
	p  *Prober
	tm *TCPModule
	r  *Result
	// parent is the probe's context and deadline its end: a parked probe
	// keeps no context of its own (a context with a deadline and a
	// callback on it cost about 1 KB), only a timer and, when parent can
	// end, a callback on parent.
	parent   context.Context
	deadline time.Time
	timer    *time.Timer
	stop     func() bool
	host     string
	// src is the TCP connection, readable without blocking; conn is src
	// or the TLS connection over it.
	src  *pollConn
	conn net.Conn
	// step is the query_response step the dialogue is at; read says
	// whether its expect has seen a line yet.
	step int
	read bool
	// pending holds what was read past the last line taken: a partial
	// line, or lines not yet looked at. It is nil while empty, so that a
	// parked probe holds no buffer.
	pending []byte
	start   time.Time
	end     func(error)
	wait    parker
}

// startTCP connects, optionally over TLS, and plays the module's
// query_response dialogue: send a line, expect a line matching a regular
// expression, or upgrade to TLS in the middle (STARTTLS, RFC 3207). It
// ends at deadline (or when ctx ends), and calls end with the outcome, on
// this goroutine or, after the probe has parked, on another.
func (p *Prober) startTCP(ctx context.Context, deadline time.Time, target string, m *Module, r *Result, end func(error)) {
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	tm := &m.TCP
	actx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, host, err := p.connect(actx, target, tm.PreferredIPProtocol, tm.IPProtocolFallback, tm.SourceIPAddress, r)
	if err != nil {
		end(err)
		return
	}
	t := &tcpRun{p: p, tm: tm, r: r, parent: ctx, deadline: deadline, host: host, end: end, src: newPollConn(conn)}
	t.conn = t.src
	// The deadline, or ctx's end, moves the connection's deadline to now
	// and wakes a parked probe, which then reads the deadline's own
	// error, as a blocked read would have.
	t.src.SetDeadline(deadline)
	t.timer = time.AfterFunc(time.Until(deadline), t.expire)
	if ctx.Done() != nil {
		t.stop = context.AfterFunc(ctx, t.expire)
	}
	if tm.TLS {
		tc, err := p.handshakeOnly(actx, t.src, host, &tm.TLSConfig, r)
		if err != nil {
			t.finish(err)
			return
		}
		t.conn = tc
	}
	cancel()
	t.start = time.Now()
	t.run()
}

func (t *tcpRun) expire() {
	t.src.SetDeadline(time.Now())
	t.wait.wake()
}

// ended reports whether the probe's deadline has passed or its context
// ended.
func (t *tcpRun) ended() bool {
	return !time.Now().Before(t.deadline) || t.parent.Err() != nil
}

// run plays the dialogue from where it stopped, until it ends (and calls
// end) or parks.
func (t *tcpRun) run() {
	err := t.dialogue()
	if err == errParked {
		return
	}
	t.finish(err)
}

func (t *tcpRun) finish(err error) {
	if !t.start.IsZero() {
		t.r.Phases.Request = Seconds(time.Since(t.start))
	}
	if tc, ok := t.conn.(*tls.Conn); ok {
		// The facts of the last handshake, taken at the end rather than
		// kept beside the connection (which holds them anyway) while
		// the probe waits.
		t.r.TLS = tlsFacts(tc.ConnectionState())
	}
	t.timer.Stop()
	if t.stop != nil {
		t.stop()
	}
	t.wait.release()
	t.src.Close()
	t.end(err)
}

// errParked says the probe parked: it goes on when its socket is readable.
var errParked = errors.New("parked")

func (t *tcpRun) dialogue() error {
	r := t.r
	for ; t.step < len(t.tm.QueryResponse); t.step++ {
		i, q := t.step, t.tm.QueryResponse[t.step]
		if q.Expect.Regexp != nil {
			matched, err := t.expect(q.Expect)
			if err == errParked {
				return err
			}
			if !matched {
				// Lines came but none matched: the answer is wrong,
				// whether the peer then closed or went quiet.
				r.FailedDueToRegex = true
				if r.Reason = classify(err, phaseExchange); t.read {
					r.Reason = ReasonExpectMismatch
				}
				return fmt.Errorf("query_response[%d]: no line matched %q: %w", i, q.Expect, err)
			}
			t.read = false
		}
		if q.Send != "" {
			if _, err := t.conn.Write([]byte(q.Send + "\n")); err != nil {
				return r.fail(fmt.Errorf("query_response[%d]: send: %w", i, err), phaseExchange)
			}
		}
		if q.StartTLS {
			if len(t.pending) > 0 {
				return r.failWith(ReasonTLSHandshake, "query_response[%d]: data after the STARTTLS answer (possible injection)", i)
			}
			t.src.nonblock = false
			ctx, cancel := context.WithDeadline(t.parent, t.deadline)
			tc, err := t.p.handshakeOnly(ctx, t.src, t.host, &t.tm.TLSConfig, r)
			cancel()
			if err != nil {
				return err
			}
			t.conn = tc
		}
	}
	return nil
}

// readBufs are the buffers reads go through: a parked probe holds none.
// Expected lines are short (banners, status lines), and a longer line is
// still taken whole, over several reads.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 512); return &b }}

// expect takes lines until one matches re (true), the peer closes or
// fails, or the deadline passes (false, with the error). When nothing is
// there to read, it parks and returns errParked.
func (t *tcpRun) expect(re Regexp) (bool, error) {
	t.src.nonblock = t.wait.pollable(t)
	for {
		for {
			i := bytes.IndexByte(t.pending, '\n')
			if i < 0 {
				break
			}
			line := t.pending[:i+1]
			t.take(i + 1)
			t.read = true
			if re.Match(trimEOLBytes(line)) {
				return true, nil
			}
		}
		bp := readBufs.Get().(*[]byte)
		n, err := t.conn.Read(*bp)
		if n > 0 {
			t.pending = append(t.pending, (*bp)[:n]...)
		}
		readBufs.Put(bp)
		if n > 0 {
			continue
		}
		wouldBlock := errors.Is(err, errWouldBlock)
		switch {
		case wouldBlock && !t.ended():
			if t.wait.park(t) {
				return false, errParked
			}
			// Woken meanwhile, or no poller: look again, blocking
			// if the socket cannot be polled.
			t.src.nonblock = t.wait.pollable(t)
			continue
		case wouldBlock:
			// The deadline passed or the context ended: read once more,
			// blocking, for the connection's own deadline error.
			t.src.nonblock = false
			continue
		case err != nil:
			// A last partial line counts, as a line without its end.
			if line := t.pending; len(line) > 0 {
				t.pending = nil
				t.read = true
				if re.Match(trimEOLBytes(line)) {
					return true, nil
				}
			}
			return false, err
		}
	}
}

// take drops the first n pending bytes, and the buffer once it is empty.
func (t *tcpRun) take(n int) {
	if n >= len(t.pending) {
		t.pending = nil
		return
	}
	t.pending = t.pending[n:]
}

// connect resolves target (host:port) and connects, recording the phases.
func (p *Prober) connect(ctx context.Context, target, preferred string, fallback *bool, source string, r *Result) (net.Conn, string, error) {
	host, port, err := splitHostPort(target, "")
	if err != nil {
		return nil, "", r.failWith(ReasonOther, "%v", err)
	}
	ip, err := p.resolve(ctx, host, preferred, fallback, r)
	if err != nil {
		return nil, "", err
	}
	d := net.Dialer{}
	if source != "" {
		sip := net.ParseIP(source)
		if sip == nil {
			return nil, "", r.failWith(ReasonOther, "source_ip_address %q: not an IP address", source)
		}
		d.LocalAddr = &net.TCPAddr{IP: sip}
	}
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), port))
	r.Phases.Connect = Seconds(time.Since(start))
	if err != nil {
		return nil, "", r.fail(err, phaseConnect)
	}
	return conn, host, nil
}

// handshake runs a TLS client handshake over conn and records its facts.
func (p *Prober) handshake(ctx context.Context, conn net.Conn, host string, c *TLSConfig, r *Result) (*tls.Conn, error) {
	tc, err := p.handshakeOnly(ctx, conn, host, c, r)
	if err == nil {
		r.TLS = tlsFacts(tc.ConnectionState())
	}
	return tc, err
}

// handshakeOnly runs a TLS client handshake over conn and records its
// duration; the connection keeps its facts for later.
func (p *Prober) handshakeOnly(ctx context.Context, conn net.Conn, host string, c *TLSConfig, r *Result) (*tls.Conn, error) {
	cfg, err := c.clientTLS(host, p.Sessions)
	if err != nil {
		return nil, r.failWith(ReasonOther, "%v", err)
	}
	start := time.Now()
	tc := tls.Client(conn, cfg)
	err = tc.HandshakeContext(ctx)
	r.Phases.TLS += Seconds(time.Since(start))
	if err != nil {
		return nil, r.fail(err, phaseTLS)
	}
	return tc, nil
}

func trimEOLBytes(s []byte) []byte {
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r') {
		s = s[:len(s)-1]
	}
	return s
}

// bindDeadline makes conn's reads and writes fail at ctx's deadline or as
// soon as ctx is cancelled (a scanner stopping), whichever comes first.
// Call the returned function when done with conn.
func bindDeadline(ctx context.Context, conn interface{ SetDeadline(time.Time) error }) func() bool {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
}
