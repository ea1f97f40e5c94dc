// Package upgrade replaces a running penstock with a new process, possibly
// from a newer binary, without refusing a connection.
//
// The old process starts the new one with its listening sockets as extra
// file descriptors (as HAProxy and Pingora hand theirs over). The new
// process serves on those same sockets and, once it is serving, writes
// "ready" on a pipe. Only then does the old process stop accepting (closing
// its own copies of the descriptors: the sockets stay open in the new
// process, so connections keep queueing and are accepted there) and drain
// its in-flight requests. If the new process exits or is not ready in time,
// the old one keeps serving as if nothing happened.
package upgrade

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Environment variables from the old process to the new one.
const (
	// envListen lists the inherited sockets' addresses; the i-th is file
	// descriptor 3+i.
	envListen = "PENSTOCK_INHERIT_ADDRS"
	// envReady is the descriptor of the pipe the new process reports
	// readiness on.
	envReady = "PENSTOCK_READY_FD"
)

// Socket is a listening socket to hand over.
type Socket interface {
	// Dup returns a duplicate of the socket's descriptor, without changing
	// the socket's blocking mode. The caller closes it.
	Dup() (int, error)
}

// Start runs exe with args, handing it sockets (by address), and waits up
// to timeout for it to report ready. On success the new process is running
// and serving; the caller stops accepting and drains. On failure the new
// process has been stopped and the error says why.
//
// The process is started with syscall.ForkExec on raw descriptors rather
// than os/exec: ExtraFiles calls File.Fd, which switches a descriptor to
// blocking mode, and O_NONBLOCK is shared by every duplicate of a socket, so
// this process's own accept loop would then block in a system call that
// closing the listener cannot interrupt.
//
// The outcome is also reported to a `penstock upgrade` command waiting on
// this process ([WatchOutcome]), so that it learns of a failure at once.
func Start(exe string, args []string, sockets map[string]Socket, timeout time.Duration) (*os.Process, error) {
	proc, err := start(exe, args, sockets, timeout)
	if err != nil {
		reportOutcome("failed " + err.Error())
	} else {
		reportOutcome("ready " + strconv.Itoa(proc.Pid))
	}
	return proc, err
}

func start(exe string, args []string, sockets map[string]Socket, timeout time.Duration) (*os.Process, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()

	var fds []int
	var addrs []string
	defer func() {
		for _, fd := range fds {
			syscall.Close(fd)
		}
	}()
	for addr, s := range sockets {
		fd, err := s.Dup()
		if err != nil {
			w.Close()
			return nil, fmt.Errorf("socket %s: %w", addr, err)
		}
		fds = append(fds, fd)
		addrs = append(addrs, addr)
	}
	files := []uintptr{os.Stdin.Fd(), os.Stdout.Fd(), os.Stderr.Fd()}
	for _, fd := range fds {
		files = append(files, uintptr(fd))
	}
	files = append(files, w.Fd())
	env := append(os.Environ(),
		envListen+"="+strings.Join(addrs, ","),
		envReady+"="+strconv.Itoa(3+len(fds)),
	)
	argv := append([]string{exe}, args...)
	pid, err := syscall.ForkExec(exe, argv, &syscall.ProcAttr{Env: env, Files: files})
	w.Close() // the child holds the write end now
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", exe, err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}

	exited := make(chan error, 1)
	go func() {
		st, err := proc.Wait()
		if err == nil {
			err = errors.New(st.String())
		}
		exited <- err
	}()
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err != nil {
			ready <- fmt.Errorf("new process closed its ready pipe without reporting ready")
			return
		}
		if strings.TrimSpace(line) != "ready" {
			ready <- fmt.Errorf("new process reported %q", strings.TrimSpace(line))
			return
		}
		ready <- nil
	}()
	select {
	case err := <-ready:
		if err == nil {
			return proc, nil
		}
		proc.Kill()
		return nil, fmt.Errorf("%w (%v)", err, <-exited)
	case err := <-exited:
		return nil, fmt.Errorf("new process exited before it was ready: %v", err)
	case <-time.After(timeout):
		proc.Kill()
		<-exited
		return nil, fmt.Errorf("new process not ready after %s", timeout)
	}
}

// Inherited returns the listening sockets handed over by a previous process,
// by address, and a function to call once this process is serving (it
// reports ready to the previous process). Outside an upgrade it returns an
// empty map and a no-op.
func Inherited() (map[string]net.Listener, func(), error) {
	addrs := os.Getenv(envListen)
	readyFD := os.Getenv(envReady)
	os.Unsetenv(envListen)
	os.Unsetenv(envReady)
	out := map[string]net.Listener{}
	if addrs == "" && readyFD == "" {
		return out, func() {}, nil
	}
	for i, addr := range strings.Split(addrs, ",") {
		if addr == "" {
			continue
		}
		f := os.NewFile(uintptr(3+i), "inherited:"+addr)
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("inherited socket %s: %w", addr, err)
		}
		out[addr] = ln
	}
	ready := func() {}
	if n, err := strconv.Atoi(readyFD); err == nil {
		pipe := os.NewFile(uintptr(n), "ready-pipe")
		ready = func() {
			pipe.WriteString("ready\n")
			pipe.Close()
		}
	} else if readyFD != "" {
		return nil, nil, errors.New("bad " + envReady)
	}
	return out, ready, nil
}
