package loadtest

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// okBody is what the test servers answer: a small response, like most API
// traffic.
var okBody = []byte(`{"ok":true}`)

// counting is a fast handler that counts the requests it answers.
type counting struct{ n atomic.Int64 }

func (c *counting) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.Write(okBody)
}

// startH1 serves HTTP/1.1 in cleartext on loopback.
func startH1(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL + "/"
}

// startTLS serves HTTP/1.1 and HTTP/2 over TLS on loopback (a self-signed
// certificate for 127.0.0.1); onHandshake, if set, sees every handshake.
func startTLS(t *testing.T, h http.Handler, onHandshake func(tls.ConnectionState)) (string, *tls.Config) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{}
	if onHandshake != nil {
		srv.TLS.VerifyConnection = func(cs tls.ConnectionState) error { onHandshake(cs); return nil }
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL + "/", srv.TLS
}

// startH2C serves HTTP/1.1 and HTTP/2 with prior knowledge in cleartext.
func startH2C(t *testing.T, h http.Handler) string {
	t.Helper()
	return startH2CLimited(t, h, 0)
}

// startH2CLimited is startH2C with at most maxStreams concurrent streams per
// connection (0: Go's default).
func startH2CLimited(t *testing.T, h http.Handler, maxStreams int) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p, HTTP2: &http.HTTP2Config{MaxConcurrentStreams: maxStreams}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

// startH3 serves HTTP/3 on loopback UDP with the certificate of a TLS
// test server.
func startH3(t *testing.T, h http.Handler, onHandshake func(tls.ConnectionState)) string {
	t.Helper()
	_, cfg := startTLS(t, http.NotFoundHandler(), nil)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tc := &tls.Config{Certificates: cfg.Certificates}
	if onHandshake != nil {
		tc.VerifyConnection = func(cs tls.ConnectionState) error { onHandshake(cs); return nil }
	}
	srv := &http3.Server{Handler: h, TLSConfig: http3.ConfigureTLSConfig(tc)}
	go srv.Serve(pc)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		pc.Close()
	})
	return "https://" + pc.LocalAddr().String() + "/"
}

// stalling answers at once, except for one window of stall, starting
// after the first request at after: every request arriving in the window
// is held until its end.
type stalling struct {
	after, stall time.Duration
	first        atomic.Pointer[time.Time]
}

func (s *stalling) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.first.CompareAndSwap(nil, &now)
	from := s.first.Load().Add(s.after)
	if until := from.Add(s.stall); now.After(from) && now.Before(until) {
		time.Sleep(until.Sub(now))
	}
	w.Write(okBody)
}
