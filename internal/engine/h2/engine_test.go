package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// client is a raw HTTP/2 client on a loopback connection to a server.
type client struct {
	t    *testing.T
	conn net.Conn
	fr   *http2.Framer
	hb   bytes.Buffer
	henc *hpack.Encoder
}

// serve starts srv on a loopback listener and returns a dialled client
// that has sent the preface and settings.
func serve(t *testing.T, srv *Server, settings ...http2.Setting) *client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go srv.ServeConn(Conn{NC: nc})
		}
	}()
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	c := &client{t: t, conn: conn, fr: http2.NewFramer(conn, conn)}
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	c.henc = hpack.NewEncoder(&c.hb)
	io.WriteString(conn, http2.ClientPreface)
	c.fr.WriteSettings(settings...)
	return c
}

func (c *client) headers(id uint32, end bool, kv ...string) {
	c.hb.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		c.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hb.Bytes(), EndStream: end, EndHeaders: true}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) get(id uint32, path string) {
	c.headers(id, true, ":method", "GET", ":scheme", "http", ":authority", "a", ":path", path)
}

// next returns the next frame other than SETTINGS, PING and connection
// WINDOW_UPDATE (answering SETTINGS).
func (c *client) next() http2.Frame {
	c.t.Helper()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.t.Fatalf("reading a frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.fr.WriteSettingsAck()
			}
			continue
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				continue
			}
		}
		return f
	}
}

// response reads one stream's response to its end: the header fields, the
// body and the trailer fields.
func (c *client) response(id uint32) (hdr map[string]string, body string, trailer map[string]string) {
	c.t.Helper()
	var b strings.Builder
	for {
		switch f := c.next().(type) {
		case *http2.MetaHeadersFrame:
			if f.StreamID != id {
				c.t.Fatalf("HEADERS on stream %d, want %d", f.StreamID, id)
			}
			m := map[string]string{}
			for _, hf := range f.Fields {
				m[hf.Name] = hf.Value
			}
			if hdr == nil {
				hdr = m
			} else {
				trailer = m
			}
			if f.StreamEnded() {
				return hdr, b.String(), trailer
			}
		case *http2.DataFrame:
			b.Write(f.Data())
			if f.StreamEnded() {
				return hdr, b.String(), trailer
			}
		case *http2.RSTStreamFrame:
			c.t.Fatalf("stream %d reset: %v", f.StreamID, f.ErrCode)
		case *http2.GoAwayFrame:
			c.t.Fatalf("GOAWAY %v", f.ErrCode)
		}
	}
}

func newTestServer(o Options, h exchange.HandlerFunc) *Server { return NewServer(o, h) }

// TestTrailersBothWays: request trailers reach the handler after the body,
// response trailers follow the body, and a response with no body but
// trailers (gRPC's trailers-only) ends on its trailers.
func TestTrailersBothWays(t *testing.T) {
	srv := newTestServer(Options{}, func(x *exchange.Exchange) {
		body, _ := io.ReadAll(x.Req.Body)
		var tr exchange.Header
		x.Req.Trailer.ReadTrailer(&tr)
		got, _ := tr.Get("x-checksum")
		x.W.Header().Add("Content-Type", "application/grpc")
		x.W.WriteHeader(200)
		if x.Req.Path == "/body" {
			x.W.Write(body)
		}
		x.W.(exchange.TrailerWriter).Trailer().Add("Grpc-Status", "0")
		x.W.(exchange.TrailerWriter).Trailer().Add("X-Echo", got)
	})
	c := serve(t, srv)
	for i, path := range []string{"/body", "/empty"} {
		id := uint32(2*i + 1)
		c.headers(id, false, ":method", "POST", ":scheme", "http", ":authority", "a", ":path", path, "te", "trailers")
		c.fr.WriteData(id, false, []byte("hello"))
		c.headers(id, true, "x-checksum", "abc")
		hdr, body, tr := c.response(id)
		if hdr[":status"] != "200" || hdr["content-type"] != "application/grpc" {
			t.Errorf("%s: header %v", path, hdr)
		}
		if want := map[string]string{"/body": "hello", "/empty": ""}[path]; body != want {
			t.Errorf("%s: body %q, want %q", path, body, want)
		}
		if tr["grpc-status"] != "0" || tr["x-echo"] != "abc" {
			t.Errorf("%s: trailers %v, want grpc-status 0 and the request's checksum echoed", path, tr)
		}
	}
}

// TestResponseFollowsClientWindow: with a 10-byte stream window the
// response comes in DATA frames of at most 10 bytes, each after the
// client opened the window again.
func TestResponseFollowsClientWindow(t *testing.T) {
	body := strings.Repeat("0123456789", 10) + "!"
	srv := newTestServer(Options{}, func(x *exchange.Exchange) { io.WriteString(x.W, body) })
	c := serve(t, srv, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 10})
	c.get(1, "/")
	var got strings.Builder
	frames := 0
	for {
		f := c.next()
		d, ok := f.(*http2.DataFrame)
		if !ok {
			continue
		}
		if len(d.Data()) > 10 {
			t.Fatalf("DATA frame of %d bytes beyond a 10-byte window", len(d.Data()))
		}
		frames++
		got.Write(d.Data())
		if d.StreamEnded() {
			break
		}
		c.fr.WriteWindowUpdate(1, uint32(len(d.Data())))
	}
	if got.String() != body || frames < 11 {
		t.Errorf("got %q in %d frames", got.String(), frames)
	}
}

// TestZeroWindowStreamsAreReset: a client that never opens its window has
// each stream reset after the send timeout, counted; beyond
// MaxStalledStreams, at once.
func TestZeroWindowStreamsAreReset(t *testing.T) {
	var timedOut atomic.Int64
	srv := newTestServer(Options{SendTimeout: 300 * time.Millisecond, MaxStalledStreams: 2, SendTimedOut: func() { timedOut.Add(1) }},
		func(x *exchange.Exchange) { x.W.Write([]byte("never sent")) })
	c := serve(t, srv, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	start := time.Now()
	for id := uint32(1); id <= 7; id += 2 {
		c.get(id, "/")
	}
	resets := map[uint32]time.Duration{}
	for len(resets) < 4 {
		if r, ok := c.next().(*http2.RSTStreamFrame); ok {
			resets[r.StreamID] = time.Since(start)
			if r.ErrCode != http2.ErrCodeCancel {
				t.Errorf("stream %d reset with %v, want CANCEL", r.StreamID, r.ErrCode)
			}
		}
	}
	early := 0
	for _, d := range resets {
		if d < 250*time.Millisecond {
			early++
		}
	}
	// Two streams may stall; the other two are reset without waiting
	// (allowing for scheduling, at least one is seen early).
	if early < 1 || early > 2 {
		t.Errorf("%d of 4 streams reset before the send timeout, want the 2 beyond MaxStalledStreams: %v", early, resets)
	}
	if n := timedOut.Load(); n != 4 {
		t.Errorf("SendTimedOut called %d times, want 4", n)
	}
	for deadline := time.Now().Add(5 * time.Second); srv.stalled.Load() != 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if n := srv.stalled.Load(); n != 0 {
		t.Errorf("%d streams still counted as stalled", n)
	}
}

// TestRapidResetGetsCalm: a client that opens and resets streams far
// faster than it completes any gets GOAWAY ENHANCE_YOUR_CALM, and no more
// than MaxConcurrentStreams handlers run at once.
func TestRapidResetGetsCalm(t *testing.T) {
	var cur, peak, calmed atomic.Int64
	release := make(chan struct{})
	defer close(release)
	srv := newTestServer(Options{MaxConcurrentStreams: 10, Calmed: func() { calmed.Add(1) }}, func(x *exchange.Exchange) {
		n := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		select {
		case <-x.Ctx.Done():
		case <-release:
		}
	})
	c := serve(t, srv)
	go func() {
		for id := uint32(1); id < 2*5000; id += 2 {
			c.hb.Reset()
			c.henc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
			c.henc.WriteField(hpack.HeaderField{Name: ":scheme", Value: "http"})
			c.henc.WriteField(hpack.HeaderField{Name: ":authority", Value: "a"})
			c.henc.WriteField(hpack.HeaderField{Name: ":path", Value: "/"})
			if c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hb.Bytes(), EndStream: true, EndHeaders: true}) != nil ||
				c.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if g, ok := f.(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", g.ErrCode)
			}
			break
		}
	}
	if p := peak.Load(); p > 10 {
		t.Errorf("%d handlers at once, want at most MaxConcurrentStreams (10)", p)
	}
	deadline := time.Now().Add(5 * time.Second)
	for calmed.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := calmed.Load(); n != 1 {
		t.Errorf("Calmed called %d times, want 1", n)
	}
}

// TestMalformedRequestsAreReset: malformed header sections get RST_STREAM
// PROTOCOL_ERROR, not a response, and the connection goes on.
func TestMalformedRequestsAreReset(t *testing.T) {
	srv := newTestServer(Options{}, func(x *exchange.Exchange) { io.WriteString(x.W, "ok") })
	c := serve(t, srv)
	cases := [][]string{
		{":method", "GET", ":scheme", "http", ":authority", "a"},                                  // no :path
		{":method", "GET", ":scheme", "http", ":path", ""},                                        // empty :path
		{":scheme", "http", ":path", "/"},                                                         // no :method
		{":method", "GET", ":path", "/"},                                                          // no :scheme
		{":method", "GET", ":scheme", "http", ":path", "/", ":status", "200"},                     // response pseudo
		{":method", "GET", ":scheme", "http", ":path", "/", "connection", "close"},                // connection-specific
		{":method", "GET", ":scheme", "http", ":path", "/", "te", "gzip"},                         // TE other than trailers
		{":method", "GET", ":scheme", "http", ":path", "/", ":path", "/"},                         // duplicate pseudo
		{":method", "GET", ":scheme", "http", ":path", "/", "content-length", "x"},                // bad length
		{":method", "GET", ":scheme", "http", "x", "1", ":path", "/"},                             // pseudo after regular
		{":method", "GET", ":scheme", "http", ":path", "/", ":protocol", "websocket"},             // no extended CONNECT
		{":method", "POST", ":scheme", "http", ":path", "/", "content-length", "3", "Upper", "x"}, // upper-case name
	}
	id := uint32(1)
	for i, kv := range cases {
		c.headers(id, true, kv...)
		switch f := c.next().(type) {
		case *http2.RSTStreamFrame:
			if f.StreamID != id || f.ErrCode != http2.ErrCodeProtocol {
				t.Errorf("case %d: RST_STREAM %d %v, want %d PROTOCOL_ERROR", i, f.StreamID, f.ErrCode, id)
			}
		default:
			t.Errorf("case %d (%v): got %T, want RST_STREAM", i, kv, f)
		}
		id += 2
	}
	c.get(id, "/")
	if hdr, body, _ := c.response(id); hdr[":status"] != "200" || body != "ok" {
		t.Errorf("after the malformed requests: %v %q", hdr, body)
	}
}

// TestDuplicateSettingsTakeTheLastValue (RFC 9113 §6.5.3: values are
// processed in order).
func TestDuplicateSettingsTakeTheLastValue(t *testing.T) {
	srv := newTestServer(Options{}, func(x *exchange.Exchange) { io.WriteString(x.W, "0123456789") })
	c := serve(t, srv,
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
	c.get(1, "/")
	for {
		if d, ok := c.next().(*http2.DataFrame); ok {
			if len(d.Data()) != 1 {
				t.Fatalf("first DATA frame has %d bytes, want 1 (the last INITIAL_WINDOW_SIZE)", len(d.Data()))
			}
			return
		}
	}
}

// TestRequestBodyStreamsWithFlowControl: a body larger than every window
// reaches the handler whole, the client's windows reopened as it reads.
func TestRequestBodyStreamsWithFlowControl(t *testing.T) {
	const size = 5 << 20
	srv := newTestServer(Options{}, func(x *exchange.Exchange) {
		n, _ := io.Copy(io.Discard, x.Req.Body)
		io.WriteString(x.W, strings.Repeat("n", int(n%7)))
		x.W.Header().Set("X-Len", "set-late")
		x.W.(exchange.TrailerWriter).Trailer().Add("X-Bytes", itoa(n))
	})
	c := serve(t, srv)
	c.headers(1, false, ":method", "PUT", ":scheme", "http", ":authority", "a", ":path", "/up")
	done := make(chan map[string]string, 1)
	connWin, streamWin := int64(65535), int64(65535)
	winCh := make(chan [2]int64, 64)
	go func() {
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				close(winCh)
				return
			}
			switch f := f.(type) {
			case *http2.WindowUpdateFrame:
				if f.StreamID == 0 {
					winCh <- [2]int64{int64(f.Increment), 0}
				} else {
					winCh <- [2]int64{0, int64(f.Increment)}
				}
			case *http2.SettingsFrame:
				if v, ok := f.Value(http2.SettingInitialWindowSize); ok {
					winCh <- [2]int64{0, int64(v) - 65535}
				}
			case *http2.MetaHeadersFrame:
				if f.StreamEnded() {
					m := map[string]string{}
					for _, hf := range f.Fields {
						m[hf.Name] = hf.Value
					}
					done <- m
					return
				}
			}
		}
	}()
	chunk := make([]byte, 16<<10)
	for sent := 0; sent < size; {
		for connWin <= 0 || streamWin <= 0 {
			w, ok := <-winCh
			if !ok {
				t.Fatal("connection ended while sending")
			}
			connWin += w[0]
			streamWin += w[1]
		}
		n := int(min(int64(len(chunk)), connWin, streamWin, int64(size-sent)))
		sent += n
		if err := c.fr.WriteData(1, sent == size, chunk[:n]); err != nil {
			t.Fatal(err)
		}
		connWin -= int64(n)
		streamWin -= int64(n)
	}
	select {
	case tr := <-done:
		if tr["x-bytes"] != itoa(size) {
			t.Errorf("handler read %s bytes, want %d", tr["x-bytes"], size)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no response")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestShutdownSendsGoAwayAndFinishesStreams: a shutdown sends GOAWAY
// NO_ERROR naming the last stream, lets that stream's response complete,
// refuses later streams (or drops them: the client knows from the GOAWAY
// that they were not processed), then the connection closes.
func TestShutdownSendsGoAwayAndFinishesStreams(t *testing.T) {
	started := make(chan struct{})
	finish := make(chan struct{})
	srv := newTestServer(Options{}, func(x *exchange.Exchange) {
		if x.Req.Path == "/slow" {
			close(started)
			<-finish
		}
		io.WriteString(x.W, "done")
	})
	c := serve(t, srv)
	c.get(1, "/slow")
	<-started
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- srv.Shutdown(ctx)
	}()
	for {
		if g, ok := c.next().(*http2.GoAwayFrame); ok {
			if g.ErrCode != http2.ErrCodeNo || g.LastStreamID != 1 {
				t.Fatalf("GOAWAY %v last %d, want NO_ERROR last 1", g.ErrCode, g.LastStreamID)
			}
			break
		}
	}
	c.get(3, "/")
	close(finish)
	gotDone := false
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			if !gotDone {
				t.Fatalf("connection ended before the last stream's response: %v", err)
			}
			break
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			if f.StreamID == 1 && f.StreamEnded() {
				gotDone = true
			}
		case *http2.RSTStreamFrame:
			if f.StreamID != 3 || f.ErrCode != http2.ErrCodeRefusedStream {
				t.Errorf("RST_STREAM %d %v, want only stream 3 refused", f.StreamID, f.ErrCode)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID != 1 {
				t.Errorf("a response on stream %d, opened after the GOAWAY", f.StreamID)
			}
		}
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}
