package h3

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/quic-go/quic-go"
)

// countingObserver counts what a Socket reports.
type countingObserver struct {
	opened, ok, failed, closed, retries atomic.Int64
}

func (c *countingObserver) ConnOpened() { c.opened.Add(1) }
func (c *countingObserver) Handshake(ok bool) {
	if ok {
		c.ok.Add(1)
	} else {
		c.failed.Add(1)
	}
}
func (c *countingObserver) ConnClosed(quic.ConnectionStats) { c.closed.Add(1) }
func (c *countingObserver) Retry()                          { c.retries.Add(1) }

func TestHandshakeRateLimit(t *testing.T) {
	tests := []struct {
		name        string
		limit       int64
		attempts    int
		wantRetries int64
	}{
		{name: "off never asks", limit: 0, attempts: 50},
		{name: "under the limit", limit: 10, attempts: 10},
		{name: "over the limit asks the rest", limit: 3, attempts: 10, wantRetries: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obs := &countingObserver{}
			s := &Socket{obs: obs}
			s.limit.Store(tt.limit)
			var asked int64
			for range tt.attempts {
				if s.verifySource(&net.UDPAddr{}) {
					asked++
				}
			}
			// A second boundary inside the loop would reset the count;
			// allow for it rather than depend on the clock.
			if asked > tt.wantRetries || (tt.wantRetries > 0 && asked == 0) {
				t.Errorf("%d of %d attempts asked to Retry, want %d", asked, tt.attempts, tt.wantRetries)
			}
			if obs.retries.Load() != asked {
				t.Errorf("observer saw %d retries, socket asked %d", obs.retries.Load(), asked)
			}
		})
	}
}

// TestBufferWarningOnce binds two sockets and checks that a too-small kernel
// limit is reported in at most one line, which names the sysctls.
func TestBufferWarningOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	small := false
	for range 2 {
		s, err := Listen(context.Background(), "127.0.0.1:0", nil, log)
		if err != nil {
			t.Fatal(err)
		}
		rc, _ := s.udp.SyscallConn()
		rc.Control(func(fd uintptr) {
			n, _ := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF)
			small = small || n < wantBuffer
		})
		s.Close()
	}
	n := strings.Count(buf.String(), "net.core.rmem_max")
	switch {
	case n > 1:
		t.Errorf("%d buffer warnings, want at most one:\n%s", n, buf.String())
	case small && n == 0 && bufferWarningLogged():
		// An earlier test in this process already logged it.
	case small && n == 0:
		t.Errorf("buffers below %d bytes but no warning", wantBuffer)
	case !small && n != 0:
		t.Errorf("warning although the buffers are large enough:\n%s", buf.String())
	}
}

// bufferWarningLogged reports whether the once has fired.
func bufferWarningLogged() bool {
	fired := true
	bufferWarning.Do(func() { fired = false })
	return fired
}
