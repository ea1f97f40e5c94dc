package pgproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// The package's tests run against a real PostgreSQL: a primary and a
// streaming replica made with pg_basebackup -R, in a temporary directory,
// on free loopback ports, started once by TestMain and stopped at the end.
// Root cannot run PostgreSQL: as root, the servers run as nobody.

// Test credentials. The superuser logs in with SCRAM over TCP.
const (
	testSuperuser = "postgres"
	testSuperPass = "super-secret"
	testUser      = "app"
	testPass      = "app-secret"
	testDB        = "app"
)

// pgServer is one running postgres process.
type pgServer struct {
	dir  string
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (s *pgServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

type pgCluster struct {
	bin     string
	base    string
	cred    *syscall.Credential
	primary *pgServer
	replica *pgServer
	// caFile verifies the servers' certificate (server_ca_file).
	caFile string
}

// writeSelfSigned writes an ECDSA certificate for 127.0.0.1 that is its own
// CA, and its key (mode 0600, as PostgreSQL requires).
func writeSelfSigned(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
}

var testCluster *pgCluster

func TestMain(m *testing.M) {
	c, err := startCluster()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgproxy tests: no PostgreSQL:", err)
	}
	testCluster = c
	code := m.Run()
	if c != nil {
		c.stop()
	}
	os.Exit(code)
}

// needCluster skips when PostgreSQL is not installed (scripts/test
// installs it).
func needCluster(t testing.TB) *pgCluster {
	t.Helper()
	if testCluster == nil {
		t.Skip("PostgreSQL is not installed (scripts/test installs the postgresql package)")
	}
	return testCluster
}

func findBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("no /usr/lib/postgresql/*/bin/initdb")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func startCluster() (*pgCluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "pgproxy-test-")
	if err != nil {
		return nil, err
	}
	c := &pgCluster{bin: bin, base: base}
	if os.Getuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return nil, fmt.Errorf("running as root and no user nobody to run postgres as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		c.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(base, uid, gid); err != nil {
			return nil, err
		}
	}
	pw := filepath.Join(base, "pwfile")
	if err := os.WriteFile(pw, []byte(testSuperPass+"\n"), 0o600); err != nil {
		return nil, err
	}
	if c.cred != nil {
		os.Chown(pw, int(c.cred.Uid), int(c.cred.Gid))
	}
	// The servers offer TLS with a self-signed certificate for 127.0.0.1,
	// which also serves as the CA that verifies it.
	certFile, keyFile := filepath.Join(base, "server.crt"), filepath.Join(base, "server.key")
	if err := writeSelfSigned(certFile, keyFile); err != nil {
		return nil, err
	}
	if c.cred != nil {
		os.Chown(certFile, int(c.cred.Uid), int(c.cred.Gid))
		os.Chown(keyFile, int(c.cred.Uid), int(c.cred.Gid))
	}
	c.caFile = certFile
	pdir := filepath.Join(base, "primary")
	if out, err := c.run("initdb", "-D", pdir, "-U", testSuperuser, "--pwfile", pw, "-E", "UTF8", "--locale", "C",
		"--auth-local", "trust", "--auth-host", "scram-sha-256", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	conf := `listen_addresses = '127.0.0.1'
unix_socket_directories = '` + base + `'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = replica
max_wal_senders = 5
hot_standby = on
wal_keep_size = '256MB'
log_min_messages = fatal
ssl = on
ssl_cert_file = '` + certFile + `'
ssl_key_file = '` + keyFile + `'
`
	if err := appendFile(filepath.Join(pdir, "postgresql.conf"), conf); err != nil {
		return nil, err
	}
	if err := appendFile(filepath.Join(pdir, "pg_hba.conf"), "host replication all 127.0.0.1/32 scram-sha-256\n"); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	c.primary = &pgServer{dir: pdir, port: port}
	if err := c.start(c.primary); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, sql := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", testUser, testPass),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s", testDB, testUser),
	} {
		if err := c.exec(ctx, c.primary, testSuperuser, testSuperPass, "postgres", sql); err != nil {
			c.stop()
			return nil, err
		}
	}
	rdir := filepath.Join(base, "replica")
	if out, err := c.runEnv([]string{"PGPASSWORD=" + testSuperPass}, "pg_basebackup", "-h", "127.0.0.1", "-p", strconv.Itoa(port),
		"-U", testSuperuser, "-D", rdir, "-R", "-X", "stream", "-c", "fast", "--no-sync"); err != nil {
		c.stop()
		return nil, fmt.Errorf("pg_basebackup: %v: %s", err, out)
	}
	rport, err := freePort()
	if err != nil {
		c.stop()
		return nil, err
	}
	c.replica = &pgServer{dir: rdir, port: rport}
	if err := c.start(c.replica); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(text)
	return err
}

func (c *pgCluster) command(env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = c.base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred, Pdeathsig: syscall.SIGQUIT}
	return cmd
}

func (c *pgCluster) run(name string, args ...string) ([]byte, error) {
	return c.command(nil, name, args...).CombinedOutput()
}

func (c *pgCluster) runEnv(env []string, name string, args ...string) ([]byte, error) {
	return c.command(env, name, args...).CombinedOutput()
}

// start runs postgres on s and waits until it accepts connections.
func (c *pgCluster) start(s *pgServer) error {
	cmd := c.command(nil, "postgres", "-D", s.dir, "-p", strconv.Itoa(s.port))
	logf, err := os.OpenFile(filepath.Join(c.base, filepath.Base(s.dir)+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	s.done = make(chan struct{})
	go func() { cmd.Wait(); close(s.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.exec(ctx, s, testSuperuser, testSuperPass, "postgres", "SELECT 1")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-s.done:
			return fmt.Errorf("postgres on %s exited: see %s.log", s.addr(), filepath.Join(c.base, filepath.Base(s.dir)))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres on %s did not start: %v", s.addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops s at once (SIGKILL to the postmaster; its backends follow
// when they notice), as a crash would.
func (c *pgCluster) kill(s *pgServer) {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// shutdown stops s cleanly (fast shutdown).
func (c *pgCluster) shutdown(s *pgServer) {
	if s == nil || s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

func (c *pgCluster) stop() {
	c.shutdown(c.replica)
	c.shutdown(c.primary)
	os.RemoveAll(c.base)
}

// exec runs sql directly on s (not through the proxy).
func (c *pgCluster) exec(ctx context.Context, s *pgServer, user, password, db, sql string) error {
	pc, err := pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=%s password=%s dbname=%s sslmode=disable", s.port, user, password, db))
	if err != nil {
		return err
	}
	defer pc.Close(context.Background())
	_, err = pc.Exec(ctx, sql).ReadAll()
	return err
}
