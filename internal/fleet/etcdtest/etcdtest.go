// Package etcdtest runs a real etcd (the Debian package etcd-server,
// /usr/bin/etcd, which scripts/test installs) for tests: one member on free
// loopback ports, its data in a temporary directory. A package's TestMain
// starts one and stops it at the end; Stop and Restart (same ports, same
// data) let a test take etcd away from the gateways and bring it back.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Etcd is an etcd member the tests started.
type Etcd struct {
	// Addr is the client address, 127.0.0.1:PORT.
	Addr string
	path string
	dir  string
	args []string
	log  *os.File

	mu  sync.Mutex
	cmd *exec.Cmd
}

// Installed reports whether an etcd binary is on the PATH.
func Installed() bool {
	_, err := exec.LookPath("etcd")
	return err == nil
}

// Start starts a member with its data under a new directory in dir ("":
// the system's temporary directory) and waits until it answers.
func Start(dir string) (*Etcd, error) {
	path, err := exec.LookPath("etcd")
	if err != nil {
		return nil, err
	}
	if dir, err = os.MkdirTemp(dir, "etcdtest-"); err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	e := &Etcd{Addr: "127.0.0.1:" + strconv.Itoa(ports[0]), path: path, dir: dir, args: []string{
		"--name", "test", "--data-dir", dir + "/data",
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "test=" + peer, "--initial-cluster-state", "new",
		"--logger", "zap", "--log-level", "error",
		// A one-member cluster elects itself; short ticks make that quick.
		"--heartbeat-interval", "50", "--election-timeout", "500",
	}}
	if e.log, err = os.Create(dir + "/etcd.log"); err != nil {
		return nil, err
	}
	if err := e.Restart(); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// freePorts returns n loopback ports free now.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// URL is an etcd:// configuration source on this member, under prefix
// (which starts with "/").
func (e *Etcd) URL(prefix string) string { return "etcd://" + e.Addr + prefix }

// Stop kills the member (as a crash or a partition would look to its
// clients); its data stays for Restart.
func (e *Etcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Signal(syscall.SIGKILL)
	e.cmd.Wait()
	e.cmd = nil
}

// Restart starts the member again on the same ports and data, and waits
// until it answers (at most 20 s).
func (e *Etcd) Restart() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd != nil {
		return nil
	}
	cmd := exec.Command(e.path, e.args...)
	cmd.Stdout, cmd.Stderr = e.log, e.log
	// A test binary that dies (a panic, a timeout) takes its etcd with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	e.cmd = cmd
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.Addr}, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(e.dir + "/etcd.log")
			return fmt.Errorf("etcd on %s did not answer: %v\n%s", e.Addr, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close stops the member and removes its data.
func (e *Etcd) Close() {
	e.Stop()
	if e.log != nil {
		e.log.Close()
	}
	os.RemoveAll(e.dir)
}
