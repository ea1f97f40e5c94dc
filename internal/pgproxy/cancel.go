package pgproxy

import (
	"context"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// sendCancel sends a CancelRequest for backend pid to the server at addr
// on a new connection, as the protocol wants (section 55.2.8); the server
// answers nothing and closes it.
func sendCancel(ctx context.Context, addr string, pid uint32, key []byte, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.CancelRequest{ProcessID: pid, SecretKey: key})
	if fe.Flush() != nil {
		return
	}
	// Wait for the server to close, so the cancel has been read.
	var b [1]byte
	conn.Read(b[:])
}
