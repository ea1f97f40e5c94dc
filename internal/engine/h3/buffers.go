package h3

import (
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
)

// wantBuffer is the UDP receive and send buffer size quic-go asks for
// (7 MiB): at high rates a smaller receive buffer drops packets before
// quic-go reads them, which QUIC then treats as loss.
const wantBuffer = 7 << 20

var bufferWarning sync.Once

// silenceQUICGoWarning turns off quic-go's own buffer warning (a log.Printf
// per process, read from the environment when a transport first uses a
// socket): penstock sizes the buffers itself and logs one line of its own.
// An operator's explicit setting is kept.
func silenceQUICGoWarning() {
	if _, set := os.LookupEnv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING"); !set {
		os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	}
}

// raiseBuffers grows c's kernel buffers to wantBuffer. The kernel caps
// SO_RCVBUF/SO_SNDBUF at net.core.rmem_max/wmem_max for unprivileged
// processes; when that cap is lower, one line per process says which sysctls
// to raise.
func raiseBuffers(c *net.UDPConn, log *slog.Logger) {
	silenceQUICGoWarning()
	c.SetReadBuffer(wantBuffer)
	c.SetWriteBuffer(wantBuffer)
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	var rcv, snd int
	rc.Control(func(fd uintptr) {
		rcv = bufferSize(int(fd), syscall.SO_RCVBUF, forceRcv)
		snd = bufferSize(int(fd), syscall.SO_SNDBUF, forceSnd)
	})
	if (rcv > 0 && rcv < wantBuffer) || (snd > 0 && snd < wantBuffer) {
		bufferWarning.Do(func() {
			log.Warn("UDP socket buffers are smaller than HTTP/3 needs at high rates; raise the sysctls net.core.rmem_max and net.core.wmem_max to at least 7340032",
				"receive_bytes", rcv, "send_bytes", snd, "want_bytes", wantBuffer)
		})
	}
}

// bufferSize reads a socket buffer option and, if it is below wantBuffer,
// tries the privileged variant (CAP_NET_ADMIN ignores the sysctl cap).
// Linux reports twice the size asked for (the other half is bookkeeping).
func bufferSize(fd, opt, force int) int {
	n, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, opt)
	if err != nil {
		return 0
	}
	if n < wantBuffer && force != 0 {
		syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, force, wantBuffer)
		n, _ = syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, opt)
	}
	return n
}
