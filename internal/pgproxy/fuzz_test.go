package pgproxy

import (
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/penstock-dev/penstock/internal/config"
)

// FuzzClientMessages sends arbitrary bytes after a login, as the stream of
// protocol messages: the proxy must answer or close, never panic or hang,
// and keep serving other clients.
func FuzzClientMessages(f *testing.F) {
	msg := func(typ byte, body []byte) []byte {
		b := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
		return append(b, body...)
	}
	f.Add(msg('Q', []byte("SELECT 1\x00")))
	f.Add(append(msg('P', []byte("s1\x00SELECT $1::int\x00\x00\x00")), msg('S', nil)...))
	f.Add(append(msg('B', []byte("\x00nope\x00\x00\x00\x00\x00\x00\x00")), msg('S', nil)...))
	f.Add(msg('Q', []byte("no terminator")))
	f.Add([]byte{'Q', 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{'Z', 0, 0, 0, 4})
	f.Add(msg('X', nil))
	f.Add(append(msg('H', nil), msg('S', nil)...))
	f.Add(msg('d', []byte("copy data outside copy")))
	c := needCluster(f)
	pc := testConfig(c, false)
	pc.AuthType = config.PostgresAuthTrust
	pc.MaxMessageBytes = 1 << 20
	pc.Timeouts.QueryWait = config.Duration(2 * time.Second)
	fuzzProxy, _ := startProxy(f, pc)
	f.Fuzz(func(t *testing.T, data []byte) {
		conn, _ := rawLogin(t, fuzzProxy)
		conn.SetDeadline(time.Now().Add(time.Second))
		// A Terminate after the input ends it, unless the input left a
		// message open (then the deadline does).
		conn.Write(append(data, 'X', 0, 0, 0, 4))
		io.Copy(io.Discard, conn)
		conn.Close()
		// Still serving: a new client logs in and runs a query.
		conn2, fe := rawLogin(t, fuzzProxy)
		fe.Send(&pgproto3.Query{String: "SELECT 1"})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for {
			m, err := fe.Receive()
			if err != nil {
				t.Fatalf("proxy stopped serving after input %q: %v", data, err)
			}
			if _, ok := m.(*pgproto3.ReadyForQuery); ok {
				break
			}
		}
		conn2.Close()
	})
}
