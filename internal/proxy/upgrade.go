package proxy

import (
	"bufio"
	"errors"
	"io"
	"net/http"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/requestid"
)

// switchProtocols completes an HTTP/1.1 upgrade to WebSocket that the
// upstream accepted with 101: it takes over the client connection, relays
// the 101 response, then pumps bytes both ways until either side closes. A
// 101 to anything else (a request penstock did not upgrade, or another
// protocol) is the upstream's protocol error: nothing is tunnelled.
func (f *Forwarder) switchProtocols(x *exchange.Exchange, header http.Header, backend io.ReadWriteCloser) {
	defer backend.Close()
	if f.upgradeToken(x) == "" || !exchange.EqualFold(header.Get("Upgrade"), "websocket") {
		f.fail(x, failure.UpstreamProtocol, errUnaskedUpgrade)
		return
	}
	conn, brw, err := x.W.Hijack()
	if err != nil {
		f.fail(x, failure.UpstreamProtocol, err)
		return
	}
	defer conn.Close()
	x.State.Status = http.StatusSwitchingProtocols

	if err := writeSwitchingProtocols(brw.Writer, header, x.State.RequestID); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	pump := func(dst io.Writer, src io.Reader) {
		bp := copyBufPool.Get().(*[]byte)
		io.CopyBuffer(dst, src, *bp)
		copyBufPool.Put(bp)
		done <- struct{}{}
	}
	// The client's reader may already hold bytes sent right after the
	// upgrade request; read through it so none are lost.
	go pump(backend, brw.Reader)
	go pump(conn, backend)
	var cut <-chan struct{}
	if f.Streams != nil {
		cut = f.Streams.begin()
		defer f.Streams.end()
	}
	// When one direction ends, closing both ends the other.
	select {
	case <-done:
	case <-x.Ctx.Done():
	case <-cut:
	}
	conn.Close()
	backend.Close()
	<-done
}

// errUnaskedUpgrade reports a 101 response to a request penstock did not
// upgrade, or to a protocol it does not tunnel.
var errUnaskedUpgrade = errors.New("upstream switched to a protocol not asked for")

// writeSwitchingProtocols writes the upstream's 101 response to the client.
func writeSwitchingProtocols(w *bufio.Writer, header http.Header, requestID string) error {
	w.WriteString("HTTP/1.1 101 Switching Protocols\r\n")
	for name, values := range header {
		if exchange.EqualFold(name, "Connection") || exchange.EqualFold(name, "Upgrade") {
			continue
		}
		for _, v := range values {
			w.WriteString(name + ": " + v + "\r\n")
		}
	}
	w.WriteString("Connection: Upgrade\r\nUpgrade: " + header.Get("Upgrade") + "\r\n")
	if requestID != "" && header.Get(requestid.Header) == "" {
		w.WriteString(requestid.Header + ": " + requestID + "\r\n")
	}
	w.WriteString("\r\n")
	return w.Flush()
}
