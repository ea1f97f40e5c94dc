package server_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// TestHandshakeFloodRequiresRetry lowers handshake_rate_limit to 2 per
// second and opens more connections than that: all succeed, and the ones
// over the limit were asked to validate their address first.
func TestHandshakeFloodRequiresRetry(t *testing.T) {
	rec := newRecorder(t, "up")
	o := startObserved(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}, http3: {handshake_rate_limit: 2}}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, rec.addr()))
	for i := range 6 {
		c, _ := h3Client(t)
		if resp, _ := do(t, c, "GET", baseURL(o.g, "tls")+"/", nil, nil); resp.StatusCode != 200 {
			t.Fatalf("connection %d: status %d", i, resp.StatusCode)
		}
	}
	if got := exactSeriesValue(t, o.reg, "penstock_quic_retries_total", "listener=tls"); got < 1 {
		t.Errorf("penstock_quic_retries_total = %v, want at least 1", got)
	}
}

// holdHandshake is a client UDP socket that delays every datagram carrying
// a Handshake packet (RFC 9000 §17.2.4), so the client's Finished, and with
// it the handshake's completion, reaches the server only after the delay:
// requests sent in 0-RTT arrive while the server still waits for it, as on a
// long-distance link.
type holdHandshake struct {
	net.PacketConn
	delay time.Duration
}

func (h *holdHandshake) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !carriesHandshake(b) {
		return h.PacketConn.WriteTo(b, addr)
	}
	p := append([]byte(nil), b...)
	time.AfterFunc(h.delay, func() { h.PacketConn.WriteTo(p, addr) })
	return len(b), nil
}

// carriesHandshake walks the QUIC v1 packets coalesced in datagram b (RFC
// 9000 §12.2) and reports whether one is a Handshake packet.
func carriesHandshake(b []byte) bool {
	for len(b) > 7 && b[0]&0x80 != 0 { // long header
		typ := (b[0] & 0x30) >> 4
		if typ == 2 {
			return true
		}
		i := 5
		i += 1 + int(b[i]) // destination connection id
		if i >= len(b) {
			return false
		}
		i += 1 + int(b[i]) // source connection id
		if typ == 0 {      // Initial: token
			n, w := varint(b[i:])
			i += w + int(n)
		}
		if i >= len(b) {
			return false
		}
		n, w := varint(b[i:])
		i += w + int(n)
		if i > len(b) {
			return false
		}
		b = b[i:]
	}
	return false
}

// varint decodes a QUIC variable-length integer (RFC 9000 §16).
func varint(b []byte) (uint64, int) {
	if len(b) == 0 {
		return 0, 1
	}
	w := 1 << (b[0] >> 6)
	if len(b) < w {
		return 0, len(b) + 1
	}
	v := uint64(b[0] & 0x3f)
	for _, c := range b[1:w] {
		v = v<<8 | uint64(c)
	}
	return v, w
}

// earlyClient dials addr with QUIC, resuming from cache, and returns an
// HTTP/3 client connection; with hold it delays the handshake's completion.
func earlyClient(t *testing.T, addr string, cache tls.ClientSessionCache, tokens quic.TokenStore, hold time.Duration) *http3.ClientConn {
	t.Helper()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var pc net.PacketConn = udp
	if hold > 0 {
		pc = &holdHandshake{PacketConn: udp, delay: hold}
	}
	tr := &quic.Transport{Conn: pc}
	t.Cleanup(func() { tr.Close(); udp.Close() })
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := tr.DialEarly(ctx, ua,
		&tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache, NextProtos: []string{http3.NextProtoH3}, ServerName: "localhost"},
		&quic.Config{TokenStore: tokens})
	if err != nil {
		t.Fatal(err)
	}
	// Close so that the server hears of it at once rather than after its
	// idle timeout: the close may be coalesced with a Handshake packet and
	// held too, so the socket stays open until the hold has passed.
	t.Cleanup(func() {
		conn.CloseWithError(0x100, "")
		if hold > 0 {
			time.Sleep(hold + 100*time.Millisecond)
		}
	})
	return (&http3.Transport{}).NewClientConn(conn)
}

// TestZeroRTT resumes a connection with 0-RTT and checks RFC 8470's rules:
// an early GET on a route with early_data reaches the upstream at once with
// "Early-Data: 1"; an early GET elsewhere waits for the handshake; an early
// POST is never forwarded and gets 425.
func TestZeroRTT(t *testing.T) {
	if raceDetector {
		// quic-go's client writes the server's transport parameters while
		// a 0-RTT connection already opens streams with them, a data race
		// in the client library (quic-go/quic-go#4303, open), not in
		// penstock. scripts/test runs this test again without -race.
		t.Skip("quic-go's 0-RTT client races (quic-go#4303); runs without -race")
	}
	var arrived atomic.Int64 // when the upstream last saw a request, UnixNano
	var count atomic.Int64
	up := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count.Add(1)
		if r.URL.Path == "/retry" && r.Header.Get("Early-Data") == "1" {
			// An upstream that refuses anything that might be a replay.
			w.WriteHeader(http.StatusTooEarly)
			io.WriteString(w, "too early")
			return
		}
		arrived.Store(time.Now().UnixNano())
		io.WriteString(w, r.Header.Get("Early-Data"))
	}))
	g := startGateway(t, lines(`listeners:
  - {name: tls, address: "127.0.0.1:0", protocols: [h1, h2, h3], tls: {self_signed: true}, http3: {zero_rtt: true}}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - {name: early, match: {path: /early}, upstream: up, early_data: true}
  - {name: retry, match: {path: /retry}, upstream: up, early_data: true}
  - {name: plain, match: {path_prefix: /plain}, upstream: up}
`, up))
	addr := g.Addr("tls").String()
	const hold = 300 * time.Millisecond

	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantEarly  string // Early-Data header the upstream sees
		wantWait   bool   // the request must reach the upstream only after the handshake
		wantCalls  int64  // requests the upstream gets; 0 means 1 for a 200
	}{
		{name: "GET on an early_data route goes at once", method: http3.MethodGet0RTT, path: "/early", wantStatus: 200, wantEarly: "1"},
		{name: "GET elsewhere waits for the handshake", method: http3.MethodGet0RTT, path: "/plain", wantStatus: 200, wantWait: true},
		{name: "POST is never forwarded early", method: "POST", path: "/early", wantStatus: 425},
		{name: "upstream 425 is retried after the handshake", method: http3.MethodGet0RTT, path: "/retry", wantStatus: 200, wantWait: true, wantCalls: 2},
	}
	// send resumes a connection with 0-RTT and sends one request in its
	// first flight; it returns the response, its body, how long after
	// sending the upstream saw the request and how many requests it got.
	send := func(t *testing.T, method, path string) (*http.Response, string, time.Duration, int64) {
		cache := tls.NewLRUClientSessionCache(4)
		tokens := quic.NewLRUTokenStore(4, 4)
		// A first, complete connection leaves a session ticket behind.
		first := earlyClient(t, addr, cache, tokens, 0)
		req, _ := http.NewRequest("GET", "https://"+addr+"/plain/warmup", nil)
		resp, err := first.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		first.CloseWithError(0x100, "")

		before := count.Load()
		cc := earlyClient(t, addr, cache, tokens, hold)
		start := time.Now()
		if method == "POST" {
			// http3's RoundTrip never sends a POST early; a raw stream
			// does, as a replaying attacker would.
			str, err := cc.OpenRequestStream(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("POST", "https://"+addr+path, nil)
			if err := str.SendRequestHeader(req); err != nil {
				t.Fatal(err)
			}
			str.Close()
			resp, err = str.ReadResponse()
		} else {
			req, _ := http.NewRequest(method, "https://"+addr+path, nil)
			resp, err = cc.RoundTrip(req)
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(body), time.Unix(0, arrived.Load()).Sub(start), count.Load() - before
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp *http.Response
			var body string
			var took time.Duration
			var calls int64
			// 0-RTT packets can be lost (dropped while the server sets the
			// connection up) and are then resent after the handshake, as
			// ordinary requests. Try again until the request did arrive
			// early, which each case can tell from what came back.
			for attempt := 1; ; attempt++ {
				resp, body, took, calls = send(t, tt.method, tt.path)
				arrivedEarly := true
				switch {
				case tt.method == "POST":
					arrivedEarly = resp.StatusCode != 200
				case tt.wantEarly == "1":
					arrivedEarly = body == "1"
				case tt.wantCalls == 2:
					arrivedEarly = calls == 2
				}
				if arrivedEarly || attempt == 3 {
					break
				}
				t.Logf("attempt %d: the request arrived after the handshake; again", attempt)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus != 200 {
				if calls != 0 {
					t.Errorf("upstream got %d requests, want none", calls)
				}
				return
			}
			if want := max(tt.wantCalls, 1); calls != want {
				t.Errorf("upstream got %d requests, want %d", calls, want)
			}
			if body != tt.wantEarly {
				t.Errorf("upstream saw Early-Data %q, want %q", body, tt.wantEarly)
			}
			// The client holds its handshake back for hold, so a request
			// that waited for the handshake arrives after it.
			if tt.wantWait && took < hold {
				t.Errorf("upstream reached after %v, before the %v handshake completed", took, hold)
			}
		})
	}
}
