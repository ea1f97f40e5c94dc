package h3

import (
	"crypto/rand"
	"os"
	"strconv"

	"github.com/quic-go/quic-go"
)

// HTTP/3 across a binary upgrade.
//
// During an upgrade the old and the new process each hold a UDP socket on
// the same port (SO_REUSEPORT). By default the kernel spreads datagrams
// over the sockets of a port by a hash of the addresses, so about half of
// the new handshakes would reach the old process (which refuses them while
// it drains) and packets of its own connections could reach the new one
// (which does not know them). penstock steers instead, by connection ID:
//
//   - every process puts a marker in the connection IDs it issues: the byte
//     cidMagic and its generation (one more than the process it replaced);
//   - the new process attaches a classic BPF program to the port's reuseport
//     group (steer_linux.go) that sends a datagram whose destination
//     connection ID carries another generation's marker to the old socket,
//     and everything else (new connections, its own) to its own socket.
//
// The old process then finishes its connections undisturbed and never sees
// a new handshake. This is the technique of QUIC-LB (draft-ietf-quic-load-
// balancers), applied between two processes of one host.

// Connection IDs: cidMagic, the generation, then random bytes.
const (
	cidLen   = 8
	cidMagic = 0x9d
	// genEnv carries a process's generation to the process that replaces
	// it (the environment is inherited through the upgrade's fork/exec).
	genEnv = "PENSTOCK_QUIC_GENERATION"
)

// generation is this process's marker; previous is the one of the process
// it replaced, and upgraded tells whether it replaced one.
var generation, previous, upgraded = func() (byte, byte, bool) {
	prev, err := strconv.ParseUint(os.Getenv(genEnv), 10, 8)
	gen := byte(prev + 1)
	if err != nil {
		gen = 1
	}
	os.Setenv(genEnv, strconv.Itoa(int(gen)))
	return gen, byte(prev), err == nil
}()

// connIDs issues this process's connection IDs.
type connIDs struct{}

func (connIDs) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [cidLen]byte
	b[0], b[1] = cidMagic, generation
	if _, err := rand.Read(b[2:]); err != nil {
		return quic.ConnectionID{}, err
	}
	return quic.ConnectionIDFromBytes(b[:]), nil
}

func (connIDs) ConnectionIDLen() int { return cidLen }
