package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/penstock-dev/penstock/internal/exchange"
)

// fuzzHandler reads the request body and trailers, pushes, and answers
// with a body and a trailer: every path of the engine a frame can reach.
var fuzzHandler = exchange.HandlerFunc(func(x *exchange.Exchange) {
	io.Copy(io.Discard, io.LimitReader(x.Req.Body, 1<<20))
	var tr exchange.Header
	if x.Req.Trailer != nil {
		x.Req.Trailer.ReadTrailer(&tr)
	}
	if p, ok := x.W.(exchange.Pusher); ok && x.Req.Path == "/push" {
		p.Push("/pushed", 8)
	}
	x.W.Header().Add("Content-Type", "text/plain")
	x.W.WriteHeader(200)
	x.W.Write(bytes.Repeat([]byte("x"), 100))
	x.W.(exchange.TrailerWriter).Trailer().Add("Grpc-Status", "0")
})

// seedFrames encodes frames as a client would send them after the preface.
func seedFrames(write func(fr *http2.Framer, enc func(...string) []byte)) []byte {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	var hb bytes.Buffer
	henc := hpack.NewEncoder(&hb)
	enc := func(kv ...string) []byte {
		hb.Reset()
		for i := 0; i+1 < len(kv); i += 2 {
			henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	write(fr, enc)
	return buf.Bytes()
}

var get = []string{":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/"}

func fuzzSeeds() [][]byte {
	return [][]byte{
		seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings()
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(get...), EndStream: true, EndHeaders: true})
		}),
		seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/x", "content-length", "5"), EndHeaders: true})
			fr.WriteData(1, false, []byte("hel"))
			fr.WriteData(1, true, []byte("lo"))
			fr.WriteWindowUpdate(1, 1000)
			fr.WriteWindowUpdate(0, 1000)
		}),
		seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings(http2.Setting{ID: http2.SettingEnablePush, Val: 1})
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc(":method", "POST", ":scheme", "http", ":authority", "a", ":path", "/push", "te", "trailers"), EndHeaders: true})
			fr.WriteData(1, false, []byte("body"))
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc("x-trailer", "v"), EndStream: true, EndHeaders: true})
		}),
		seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings()
			block := enc(append(get, "x-a", "1", "x-b", "2")...)
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: block[:4], EndStream: true})
			fr.WriteContinuation(3, false, block[4:8])
			fr.WriteContinuation(3, true, block[8:])
			fr.WritePriority(5, http2.PriorityParam{StreamDep: 3, Weight: 10})
			fr.WriteRSTStream(3, http2.ErrCodeCancel)
			fr.WritePing(false, [8]byte{1})
		}),
		seedFrames(func(fr *http2.Framer, enc func(...string) []byte) {
			fr.WriteSettings()
			for id := uint32(1); id < 40; id += 2 {
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc(get...), EndStream: true, EndHeaders: true})
				fr.WriteRSTStream(id, http2.ErrCodeCancel)
			}
			fr.WriteGoAway(0, http2.ErrCodeNo, nil)
		}),
	}
}

// FuzzFrames feeds arbitrary bytes after the client preface to a
// connection: whatever they are, the engine must not panic, must end the
// connection once the client has gone, and must shut down cleanly.
func FuzzFrames(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		srv := NewServer(Options{
			MaxConcurrentStreams: 8,
			MaxHeaderBytes:       4 << 10,
			PrefaceTimeout:       time.Second,
			SendTimeout:          500 * time.Millisecond,
		}, fuzzHandler)
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			srv.ServeConn(Conn{NC: server})
			close(done)
		}()
		go io.Copy(io.Discard, client)
		client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		client.Write(append([]byte(http2.ClientPreface), data...))
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("connection still served 10s after the client closed it")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	})
}
