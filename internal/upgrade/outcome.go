package upgrade

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
)

// An upgrade is asked for by a signal, which carries no answer. So that
// `penstock upgrade` learns a failure when the old process does (rather than
// at the end of its own timeout), it listens on a unix datagram socket named
// for the old process, and the old process sends the outcome there: "ready
// PID" or "failed REASON". The name is in Linux's abstract socket namespace:
// no file to create or clean up. Where that does not exist, or when nobody
// listens, the report is dropped and the command falls back to watching the
// pid file.

// outcomeAddr is the socket a command waiting on process pid listens on.
func outcomeAddr(pid int) *net.UnixAddr {
	return &net.UnixAddr{Name: "@penstock-upgrade-" + strconv.Itoa(pid), Net: "unixgram"}
}

// reportOutcome sends msg to a command waiting on this process's upgrade,
// if one is.
func reportOutcome(msg string) {
	c, err := net.DialUnix("unixgram", nil, outcomeAddr(os.Getpid()))
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(msg))
}

// Outcome is what the old process reports of an upgrade.
type Outcome struct {
	NewPID int   // the new process, when it is serving
	Err    error // why the upgrade failed; nil when it succeeded
}

// WatchOutcome listens for the outcome of the next upgrade of process pid
// (call it before signalling the process). The channel receives one
// Outcome, unless stop is called first; stop releases the socket.
func WatchOutcome(pid int) (outcome <-chan Outcome, stop func(), err error) {
	c, err := net.ListenUnixgram("unixgram", outcomeAddr(pid))
	if err != nil {
		return nil, nil, fmt.Errorf("listen for the outcome of process %d's upgrade: %w", pid, err)
	}
	ch := make(chan Outcome, 1)
	go func() {
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			return // stopped
		}
		ch <- parseOutcome(string(buf[:n]))
	}()
	return ch, func() { c.Close() }, nil
}

func parseOutcome(msg string) Outcome {
	verb, rest, _ := strings.Cut(msg, " ")
	switch verb {
	case "ready":
		if pid, err := strconv.Atoi(rest); err == nil && pid > 0 {
			return Outcome{NewPID: pid}
		}
	case "failed":
		return Outcome{Err: errors.New(rest)}
	}
	return Outcome{Err: fmt.Errorf("unrecognised report %q", msg)}
}
