package pgproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/testpki"
)

// Clients reach the proxy over TLS (verified against the proxy's CA), and
// the proxy reaches the server over TLS (verify-full against the server's
// certificate): both legs are encrypted.
func TestTLSBothLegs(t *testing.T) {
	c := needCluster(t)
	ca := testpki.NewCA(t, "proxy CA")
	dir := t.TempDir()
	certFile, keyFile := ca.Server(t, "127.0.0.1").Write(t, dir, "proxy")
	caFile := ca.WriteCA(t, filepath.Join(dir, "ca.pem"))
	pc := testConfig(c, false)
	pc.TLS = &config.PostgresTLS{CertFile: certFile, KeyFile: keyFile}
	pc.ServerSSLMode = "verify-full"
	pc.ServerCAFile = c.caFile
	p, _ := startProxy(t, pc)
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=verify-full&sslrootcert=%s",
		testUser, testPass, p.Addr().String(), testDB, caFile))
	if err != nil {
		t.Fatalf("TLS login: %v", err)
	}
	defer conn.Close(context.Background())
	if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
		t.Fatalf("client connection is %T, want *tls.Conn", conn.PgConn().Conn())
	}
	var serverSSL bool
	if err := conn.QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&serverSSL); err != nil {
		t.Fatal(err)
	}
	if !serverSSL {
		t.Error("the proxy's server connection is not encrypted")
	}
	// A client that insists on TLS from a proxy without it is refused by
	// its own driver, having been answered "N".
	plain, _ := startProxy(t, testConfig(c, false))
	_, err = pgx.Connect(ctx, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=require", testUser, testPass, plain.Addr().String(), testDB))
	var pgErr *pgconn.PgError
	if err == nil || errors.As(err, &pgErr) {
		t.Fatalf("sslmode=require against a proxy without TLS: err = %v", err)
	}
}
