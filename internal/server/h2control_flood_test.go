package server_test

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// TestHTTP2ControlFrameFloods sends floods of frames that each ask the
// server for an answer (PING, SETTINGS: an ACK each) or for none
// (WINDOW_UPDATE), while never reading the answers. The server must bound
// what it queues for the client (net/http's HTTP/2 server closes a
// connection with more than 10,000 control frames waiting to be written):
// its memory and goroutines stay bounded, and another client goes on being
// served.
func TestHTTP2ControlFrameFloods(t *testing.T) {
	g, _ := floodGateway(t)
	floods := []struct {
		name  string
		write func(fr *http2.Framer, i int) error
	}{
		{"PING", func(fr *http2.Framer, i int) error {
			return fr.WritePing(false, [8]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		}},
		{"SETTINGS", func(fr *http2.Framer, i int) error {
			return fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(65535 + i%2)})
		}},
		{"WINDOW_UPDATE", func(fr *http2.Framer, i int) error {
			return fr.WriteWindowUpdate(0, 1)
		}},
	}
	for _, listener := range []string{"tls", "plain"} {
		for _, fl := range floods {
			t.Run(listener+"/"+fl.name, func(t *testing.T) {
				stop := make(chan struct{})
				results := victim(t, g, listener, stop)
				runtime.GC()
				var before runtime.MemStats
				runtime.ReadMemStats(&before)
				goroutinesBefore := runtime.NumGoroutine()

				conn, fr := h2Conn(t, g, listener)
				// Bounded: 50,000 frames or 3 s; nothing is read meanwhile.
				const frames = 50000
				deadline := time.Now().Add(3 * time.Second)
				conn.SetWriteDeadline(deadline)
				sent := 0
				var writeErr error
				for sent < frames && time.Now().Before(deadline) {
					if writeErr = fl.write(fr, sent); writeErr != nil {
						break
					}
					sent++
				}
				var after runtime.MemStats
				runtime.ReadMemStats(&after)
				maxGoroutines := runtime.NumGoroutine()

				// Now read what the server sent until it closes the
				// connection or goes quiet.
				end := watchConn(conn, fr)
				select {
				case <-end.done:
				case <-time.After(time.Second):
				}
				conn.Close()
				close(stop)
				lat, errs := results()

				grew := int64(after.HeapAlloc) - int64(before.HeapAlloc)
				t.Logf("%d %s frames sent (write error: %v); connection %s; heap grew %d KiB; goroutines %d -> %d",
					sent, fl.name, writeErr, end, grew>>10, goroutinesBefore, maxGoroutines)
				if grew > 32<<20 {
					t.Errorf("heap grew %d MiB during the flood", grew>>20)
				}
				if maxGoroutines > goroutinesBefore+50 {
					t.Errorf("goroutines grew from %d to %d during the flood", goroutinesBefore, maxGoroutines)
				}
				if len(errs) > 0 {
					t.Errorf("%d requests of another client failed during the flood; first: %v", len(errs), errs[0])
				}
				if len(lat) == 0 {
					t.Error("another client got no response during the flood")
				}
			})
		}
	}
}
