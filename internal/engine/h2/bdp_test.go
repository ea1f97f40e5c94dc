package h2

import (
	"io"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// TestReceiveWindowFollowsBandwidthDelay uploads a body as fast as the
// windows allow from a client whose PING acknowledgements come 40 ms late,
// and whose view of the server's frames lags 40 ms, as on a long path: one
// round trip carries the whole window, so the server grows the
// connection's and the stream's windows up to MaxReceiveWindow and never
// past it; the body arrives whole.
func TestReceiveWindowFollowsBandwidthDelay(t *testing.T) {
	const maxWin = 4 << 20
	var grown int
	var mu sync.Mutex
	got := make(chan int64, 1)
	srv := newTestServer(Options{MaxReceiveWindow: maxWin, WindowGrown: func() { mu.Lock(); grown++; mu.Unlock() }},
		func(x *exchange.Exchange) {
			n, _ := io.Copy(io.Discard, x.Req.Body)
			got <- n
			x.W.WriteHeader(200)
		})
	c := serve(t, srv)

	var (
		wmu                   sync.Mutex // the client's writes
		cond                  = sync.NewCond(&wmu)
		connWin, streamWin    = int64(65535), int64(65535)
		initial               = int64(65535)
		largestInitial, pings int64
		readErr               error
	)
	c.headers(1, false, ":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/upload")
	// What the client learns from the server's frames reaches it one
	// "round trip" late: a long path on loopback.
	type event struct {
		due                time.Time
		settings, ack, win bool
		id, val            uint32
		ping               [8]byte
		err                error
	}
	events := make(chan event, 1024)
	go func() {
		defer close(events)
		for {
			f, err := c.fr.ReadFrame()
			e := event{due: time.Now().Add(40 * time.Millisecond), err: err}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if f.IsAck() {
					continue
				}
				wmu.Lock()
				c.fr.WriteSettingsAck()
				wmu.Unlock()
				v, ok := f.Value(http2.SettingInitialWindowSize)
				if !ok {
					continue
				}
				e.settings, e.val = true, v
			case *http2.WindowUpdateFrame:
				e.win, e.id, e.val = true, f.StreamID, f.Increment
			case *http2.PingFrame:
				if f.IsAck() {
					continue
				}
				e.ack, e.ping = true, f.Data
			default:
				if err == nil {
					continue
				}
			}
			events <- e
			if err != nil {
				return
			}
		}
	}()
	go func() {
		for e := range events {
			time.Sleep(time.Until(e.due))
			wmu.Lock()
			switch {
			case e.err != nil:
				readErr = e.err
			case e.settings:
				streamWin += int64(e.val) - initial
				initial = int64(e.val)
				largestInitial = max(largestInitial, initial)
			case e.win && e.id == 0:
				connWin += int64(e.val)
			case e.win:
				streamWin += int64(e.val)
			case e.ack:
				pings++
				c.fr.WritePing(true, e.ping)
			}
			cond.Broadcast()
			wmu.Unlock()
		}
	}()

	chunk := make([]byte, 16384)
	var sent int64
	deadline := time.Now().Add(10 * time.Second) // a bound, not an expectation
	wmu.Lock()
	for time.Now().Before(deadline) && readErr == nil && largestInitial < maxWin {
		for min(connWin, streamWin) < int64(len(chunk)) && readErr == nil {
			cond.Wait()
		}
		if readErr != nil {
			break
		}
		if err := c.fr.WriteData(1, false, chunk); err != nil {
			t.Fatal(err)
		}
		connWin -= int64(len(chunk))
		streamWin -= int64(len(chunk))
		sent += int64(len(chunk))
	}
	c.fr.WriteData(1, true, nil)
	largest, p, rerr := largestInitial, pings, readErr
	wmu.Unlock()
	if rerr != nil {
		t.Fatalf("connection failed after %d bytes: %v", sent, rerr)
	}
	select {
	case n := <-got:
		if n != sent {
			t.Fatalf("the handler read %d bytes, %d were sent", n, sent)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the body did not arrive")
	}
	mu.Lock()
	steps := grown
	mu.Unlock()
	t.Logf("%d bytes sent, %d BDP pings, %d window increases, largest stream window %d", sent, p, steps, largest)
	if largest != maxWin {
		t.Errorf("largest stream window %d, want MaxReceiveWindow %d", largest, maxWin)
	}
	if steps < 1 {
		t.Error("WindowGrown was never called")
	}
}
