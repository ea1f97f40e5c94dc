package server_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/penstock-dev/penstock/internal/server"
)

// floodStreams is max_concurrent_streams in the flood tests: small, so the
// bounds below are tight.
const floodStreams = 50

// floodGateway serves /slow from an upstream that holds each request until
// the gateway gives up on it (or 2s pass), counting how many it holds at
// once, and /fast from a recorder; on a TLS listener (h2) and a plain one
// (h2c).
func floodGateway(t *testing.T) (*server.Server, *atomic.Int64) {
	t.Helper()
	var cur, peak atomic.Int64
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	rec := newRecorder(t, "fast")
	g := startGateway(t, lines(`listeners:
  - name: tls
    address: "127.0.0.1:0"
    protocols: [h2]
    tls: {self_signed: true}
    limits: {max_concurrent_streams: %d, max_header_bytes: 16KiB}
  - name: plain
    address: "127.0.0.1:0"
    protocols: [h1, h2c]
    limits: {max_concurrent_streams: %d, max_header_bytes: 16KiB}
upstreams:
  - {name: slow, endpoints: [{address: %s}]}
  - {name: fast, endpoints: [{address: %s}]}
routes:
  - {name: slow, match: {path: /slow}, upstream: slow}
  - {name: fast, match: {path: /fast}, upstream: fast}
`, floodStreams, floodStreams, slow, rec.addr()))
	return g, &peak
}

// h2Conn opens a raw HTTP/2 connection to listener: TLS with ALPN h2, or
// cleartext with prior knowledge; the preface and SETTINGS are sent.
func h2Conn(t *testing.T, g *server.Server, listener string) (net.Conn, *http2.Framer) {
	t.Helper()
	addr := g.Addr(listener).String()
	var conn net.Conn
	var err error
	if listener == "tls" {
		conn, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings()
	return conn, fr
}

// connEnd reads every frame the server sends until the connection ends,
// and reports how: a GOAWAY's error code, or the read error.
type connEnd struct {
	done   chan struct{}
	goAway *http2.GoAwayFrame
	err    error
	resets atomic.Int64 // RST_STREAM frames received
	// goAwaySeen is closed when the first GOAWAY arrives.
	goAwaySeen chan struct{}
	// maxHeaderListSize is the server's SETTINGS_MAX_HEADER_LIST_SIZE.
	maxHeaderListSize atomic.Int64
}

func watchConn(conn net.Conn, fr *http2.Framer) *connEnd {
	e := &connEnd{done: make(chan struct{}), goAwaySeen: make(chan struct{})}
	go func() {
		defer close(e.done)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				e.err = err
				return
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				// Not acknowledged: the writer owns the framer's write side,
				// and the server does not wait for the ACK.
				if v, ok := f.Value(http2.SettingMaxHeaderListSize); ok && !f.IsAck() {
					e.maxHeaderListSize.Store(int64(v))
				}
			case *http2.GoAwayFrame:
				if e.goAway == nil {
					e.goAway = &http2.GoAwayFrame{ErrCode: f.ErrCode, LastStreamID: f.LastStreamID}
					close(e.goAwaySeen)
				}
			case *http2.RSTStreamFrame:
				e.resets.Add(1)
			}
		}
	}()
	return e
}

func (e *connEnd) String() string {
	select {
	case <-e.done:
	default:
		return "still open"
	}
	if e.goAway != nil {
		return fmt.Sprintf("GOAWAY %v, then %v", e.goAway.ErrCode, e.err)
	}
	return fmt.Sprintf("closed: %v", e.err)
}

// victim sends a request to /fast every 10ms over its own connection
// until stop is closed, and returns every latency and the failures.
func victim(t *testing.T, g *server.Server, listener string, stop <-chan struct{}) func() ([]time.Duration, []error) {
	c := h2Client()
	url := baseURL(g, "tls") + "/fast"
	if listener == "plain" {
		c = h2cClient()
		url = baseURL(g, "plain") + "/fast"
	}
	c.Timeout = 5 * time.Second
	var lat []time.Duration
	var errs []error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 3000; i++ {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			start := time.Now()
			resp, err := c.Get(url)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
					err = fmt.Errorf("status %d over %s", resp.StatusCode, resp.Proto)
				}
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			lat = append(lat, time.Since(start))
		}
	}()
	return func() ([]time.Duration, []error) {
		<-done
		c.CloseIdleConnections()
		return lat, errs
	}
}

func headerBlock(fields ...string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return b.Bytes()
}

// TestHTTP2RapidReset floods a connection with streams that are opened and
// reset at once (CVE-2023-44487). The server must not run more handlers at
// once than the stream limit allows (it closes the connection when the
// client outruns it), and another client must go on being served.
func TestHTTP2RapidReset(t *testing.T) {
	g, peak := floodGateway(t)
	for _, listener := range []string{"tls", "plain"} {
		t.Run(listener, func(t *testing.T) {
			peak.Store(0)
			goroutinesBefore := runtime.NumGoroutine()
			stop := make(chan struct{})
			results := victim(t, g, listener, stop)

			conn, fr := h2Conn(t, g, listener)
			end := watchConn(conn, fr)
			var maxGoroutines int
			scheme := "https"
			if listener == "plain" {
				scheme = "http"
			}
			// Bounded: 20000 streams or 5s, whichever ends first.
			const attempts = 20000
			sent := 0
			deadline := time.Now().Add(5 * time.Second)
			conn.SetWriteDeadline(deadline)
			for id := uint32(1); sent < attempts && time.Now().Before(deadline); id += 2 {
				block := headerBlock(":method", "GET", ":scheme", scheme, ":authority", "x", ":path", "/slow")
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
					break
				}
				if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
					break
				}
				sent++
				if sent%500 == 0 {
					maxGoroutines = max(maxGoroutines, runtime.NumGoroutine())
				}
			}
			select {
			case <-end.done:
			case <-time.After(2 * time.Second):
			}
			close(stop)
			lat, errs := results()
			conn.Close()
			<-end.done

			t.Logf("%d streams opened and reset; connection %s; at most %d upstream requests at once; %d goroutines in the process (%d before)",
				sent, end, peak.Load(), maxGoroutines, goroutinesBefore)
			if p := peak.Load(); p > floodStreams {
				t.Errorf("%d upstream requests at once from one connection, want at most max_concurrent_streams (%d)", p, floodStreams)
			}
			// Every stream's handler would be a goroutine (and an upstream
			// request) if the server did not bound them.
			if maxGoroutines > goroutinesBefore+10*floodStreams {
				t.Errorf("%d goroutines during the flood, %d before: handlers are not bounded", maxGoroutines, goroutinesBefore)
			}
			if len(errs) > 0 {
				t.Errorf("%d of %d requests of another client failed during the flood; first: %v", len(errs), len(errs)+len(lat), errs[0])
			}
			if len(lat) < 10 {
				t.Fatalf("another client got %d responses during the flood, want at least 10", len(lat))
			}
			slices.Sort(lat)
			// A loose bound on the median: the flood, the client and
			// whatever else runs share this machine's CPUs, so this checks
			// for starvation, not for speed.
			if med := lat[len(lat)/2]; med > slowdown*500*time.Millisecond {
				t.Errorf("another client's median latency was %v during the flood, want under %v", med, slowdown*500*time.Millisecond)
			}
			t.Logf("another client: %d requests, median %v, p99 %v", len(lat), lat[len(lat)/2], lat[len(lat)*99/100])
		})
	}
}

// TestHTTP2ContinuationFlood sends a HEADERS frame without END_HEADERS
// followed by CONTINUATION frames that never end (CVE-2024-27316): the
// server must close the connection once the header block passes the
// header size limit, without buffering what it is sent.
func TestHTTP2ContinuationFlood(t *testing.T) {
	g, _ := floodGateway(t)
	const maxHeaderBytes = 16 << 10 // as configured in floodGateway
	for _, listener := range []string{"tls", "plain"} {
		t.Run(listener, func(t *testing.T) {
			stop := make(chan struct{})
			results := victim(t, g, listener, stop)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)

			conn, fr := h2Conn(t, g, listener)
			end := watchConn(conn, fr)
			scheme := "https"
			if listener == "plain" {
				scheme = "http"
			}
			block := headerBlock(":method", "GET", ":scheme", scheme, ":authority", "x", ":path", "/fast")
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: false}); err != nil {
				t.Fatal(err)
			}
			// Each CONTINUATION carries ~16KB of valid header fields.
			var fields []string
			for i := range 15 {
				fields = append(fields, fmt.Sprintf("x-flood-%d", i), strings.Repeat("v", 1000))
			}
			frag := headerBlock(fields...)
			// Paced, so that what the server read before closing is not
			// hidden in socket buffers: at most 512 frames (8MiB), each
			// followed by up to 2ms to notice the connection's end.
			sent, frames := 0, 0
			conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			var writeErr error
		flood:
			for frames < 512 {
				if writeErr = fr.WriteContinuation(1, false, frag); writeErr != nil {
					break
				}
				sent += len(frag)
				frames++
				select {
				case <-end.done:
					break flood
				case <-end.goAwaySeen:
					break flood
				case <-time.After(2 * time.Millisecond):
				}
			}
			// After a GOAWAY the server closes the connection within a
			// second (its GOAWAY timeout).
			select {
			case <-end.done:
			case <-time.After(5 * time.Second):
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			// The server may end the flood within milliseconds, before
			// the other client's first request: let it send a few.
			time.Sleep(100 * time.Millisecond)
			close(stop)
			lat, errs := results()

			t.Logf("%d CONTINUATION frames (%d KiB) sent (write error: %v); connection %s; heap grew %d KiB; SETTINGS_MAX_HEADER_LIST_SIZE %d",
				frames, sent>>10, writeErr, end, (int64(after.HeapAlloc)-int64(before.HeapAlloc))>>10, end.maxHeaderListSize.Load())
			select {
			case <-end.done:
			default:
				t.Fatalf("connection still open after %d KiB of CONTINUATION frames", sent>>10)
			}
			if end.goAway == nil || end.goAway.ErrCode != http2.ErrCodeProtocol {
				t.Errorf("connection %s, want a GOAWAY with PROTOCOL_ERROR", end)
			}
			// The server stops at the first frame past the limit; allow for
			// frames in flight when it closed.
			if sent > 16*maxHeaderBytes {
				t.Errorf("server took %d KiB of one header block before closing, limit %d KiB", sent>>10, maxHeaderBytes>>10)
			}
			if n := end.maxHeaderListSize.Load(); n < maxHeaderBytes || n > 2*maxHeaderBytes {
				t.Errorf("SETTINGS_MAX_HEADER_LIST_SIZE = %d, want max_header_bytes (%d) plus a small overhead", n, maxHeaderBytes)
			}
			if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 32<<20 {
				t.Errorf("heap grew %d MiB during the flood", grew>>20)
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

// TestHTTP2RapidResetIsCounted: the GOAWAY ENHANCE_YOUR_CALM that ends a
// rapid-reset flood is counted per listener, over TLS and h2c.
func TestHTTP2RapidResetIsCounted(t *testing.T) {
	rec := newRecorder(t, "fast")
	o := startObserved(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: [h2], tls: {self_signed: true}, limits: {max_concurrent_streams: 10}}
  - {name: plain, address: "127.0.0.1:0", protocols: [h1, h2c], limits: {max_concurrent_streams: 10}}
upstreams: [{name: fast, endpoints: [{address: %s}]}]
routes: [{name: fast, match: {path: /fast}, upstream: fast}]
`, rec.addr()))
	for _, listener := range []string{"tls", "plain"} {
		t.Run(listener, func(t *testing.T) {
			conn, fr := h2Conn(t, o.g, listener)
			end := watchConn(conn, fr)
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			scheme := map[string]string{"tls": "https", "plain": "http"}[listener]
			// Bounded: 5,000 streams, or until the server stops reading.
			for id := uint32(1); id < 2*5000; id += 2 {
				block := headerBlock(":method", "GET", ":scheme", scheme, ":authority", "x", ":path", "/fast")
				if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}) != nil ||
					fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
					break
				}
			}
			select {
			case <-end.goAwaySeen:
			case <-time.After(10 * time.Second):
				t.Fatalf("no GOAWAY after the flood; connection %s", end)
			}
			if end.goAway.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", end.goAway.ErrCode)
			}
			deadline := time.Now().Add(5 * time.Second)
			for exactSeriesValue(t, o.reg, "penstock_http2_calm_goaways_total", "listener="+listener) != 1 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if v := exactSeriesValue(t, o.reg, "penstock_http2_calm_goaways_total", "listener="+listener); v != 1 {
				t.Errorf("penstock_http2_calm_goaways_total{listener=%s} = %v, want 1", listener, v)
			}
		})
	}
}
