package h2

import (
	"time"

	"golang.org/x/net/http2"
)

// Receive windows that follow the bandwidth-delay product.
//
// A client can have no more request body in flight than the windows the
// server grants, so on a path whose bandwidth-delay product exceeds them
// (an upload over a long, fast path) a fixed window caps the throughput at
// window ÷ round trip. A window far above the product only lets a client
// park more bytes in the server's buffers. So a connection starts with
// initialWindow and measures, as grpc-go's transport does: the first DATA
// frame after a quiet moment sends a PING; the bytes that arrive until its
// acknowledgement are one round trip's worth. When a sample fills most of
// the window (and the bandwidth it shows is the highest yet), the window
// was the limit: the connection's and every stream's window grow to twice
// the sample, up to Options.MaxReceiveWindow, announced with WINDOW_UPDATE
// and SETTINGS_INITIAL_WINDOW_SIZE. Nothing here runs once a connection's
// window has reached the maximum, or on connections that carry no bodies.

// bdpPingData tells the server's own PINGs' acknowledgements from others.
var bdpPingData = [8]byte{'p', 's', 't', 'k', 'b', 'd', 'p', 0}

// bdpEstimator is a connection's measurement (under conn.mu).
type bdpEstimator struct {
	// pinging: a BDP PING is out; sample counts the body bytes that
	// arrived since it was sent at sentAt.
	pinging bool
	sentAt  time.Time
	sample  int64
	// rtt is the smoothed round trip in seconds over samples; bwMax the
	// highest bandwidth seen (bytes per second).
	rtt     float64
	samples int
	bwMax   float64
}

// Estimator constants, grpc-go's: the window grows when a sample is at
// least bdpFill of it, to bdpGrow times the sample; the round trip is a
// running mean over the first bdpWarm samples, then moves by bdpAlpha.
const (
	bdpFill  = 2.0 / 3
	bdpGrow  = 2
	bdpWarm  = 10
	bdpAlpha = 0.9
)

// bdpData accounts n body bytes received (mu held) and reports whether a
// BDP PING is to be sent now.
func (c *conn) bdpData(n int64) bool {
	if c.connWin >= c.srv.maxRecvWindow {
		return false
	}
	b := &c.bdp
	if b.pinging {
		b.sample += n
		return false
	}
	b.pinging, b.sample, b.sentAt = true, n, time.Now()
	return true
}

// sendBDPPing writes the PING of a sample.
func (c *conn) sendBDPPing() {
	c.writeControl(func(fr *http2.Framer) error { return fr.WritePing(false, bdpPingData) })
}

// onBDPAck ends a sample at its PING's acknowledgement and, when the
// window was the limit, grows the windows.
func (c *conn) onBDPAck() {
	c.mu.Lock()
	b := &c.bdp
	if !b.pinging {
		c.mu.Unlock()
		return
	}
	b.pinging = false
	rtt := time.Since(b.sentAt).Seconds()
	if b.samples < bdpWarm {
		b.samples++
		b.rtt += (rtt - b.rtt) / float64(b.samples)
	} else {
		b.rtt += (rtt - b.rtt) * bdpAlpha
	}
	bw := float64(b.sample) / (b.rtt * 1.5)
	if bw <= b.bwMax {
		c.mu.Unlock()
		return
	}
	b.bwMax = bw
	if float64(b.sample) < bdpFill*float64(c.connWin) || c.connWin >= c.srv.maxRecvWindow || c.closed {
		c.mu.Unlock()
		return
	}
	grown := min(bdpGrow*b.sample, c.srv.maxRecvWindow)
	connDelta, streamDelta := grown-c.connWin, grown-c.streamWin
	c.connWin, c.recvWindow = grown, c.recvWindow+connDelta
	if streamDelta > 0 {
		c.streamWin = grown
		// The client raises every open stream's window by the
		// difference on the SETTINGS (RFC 9113 §6.9.2); the server
		// accepts that much at once.
		for _, st := range c.streams {
			st.recvWindow += streamDelta
		}
	}
	c.mu.Unlock()
	c.srv.windowGrown()
	c.writeControl(func(fr *http2.Framer) error {
		if streamDelta > 0 {
			if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(grown)}); err != nil {
				return err
			}
		}
		return fr.WriteWindowUpdate(0, uint32(connDelta))
	})
}
