package main

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/penstock-dev/penstock/internal/upgrade"
)

// runUpgrade asks a running `penstock serve -pid-file FILE` to replace
// itself with a new process started from the binary at its path (SIGUSR2),
// and waits to report the outcome.
func runUpgrade(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("upgrade", "upgrade -pid-file FILE [-timeout 90s]", stderr)
	pidFile := fs.String("pid-file", "", "the pid `file` written by penstock serve -pid-file (required)")
	timeout := fs.Duration("timeout", 90*time.Second, "how long to wait for the new process to take over")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *pidFile == "" {
		fmt.Fprintln(stderr, "penstock upgrade: -pid-file FILE is required")
		fs.Usage()
		return errUsage
	}
	old, err := readPidFile(*pidFile)
	if err != nil {
		return err
	}
	// Listen for the old process's report first, so that a failure is
	// known when the old process knows it; without the report (another
	// platform, or a penstock that does not send it) the pid file tells.
	outcome, stopWatch, err := upgrade.WatchOutcome(old)
	if err != nil {
		fmt.Fprintf(stderr, "penstock upgrade: %v; watching the pid file only\n", err)
	} else {
		defer stopWatch()
	}
	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		return fmt.Errorf("signal process %d: %w", old, err)
	}
	fmt.Fprintf(stdout, "asked process %d to upgrade\n", old)
	deadline := time.NewTimer(*timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case o := <-outcome:
			if o.Err != nil {
				return fmt.Errorf("process %d keeps serving; the upgrade failed: %v", old, o.Err)
			}
			fmt.Fprintf(stdout, "process %d is serving; process %d is draining and will exit\n", o.NewPID, old)
			return nil
		case <-tick.C:
			next, err := readPidFile(*pidFile)
			if err == nil && next != old {
				fmt.Fprintf(stdout, "process %d is serving; process %d is draining and will exit\n", next, old)
				return nil
			}
			if syscall.Kill(old, 0) != nil {
				return fmt.Errorf("process %d exited and no new process took over", old)
			}
		case <-deadline.C:
			return fmt.Errorf("no new process took over within %s; process %d keeps serving (see its log)", *timeout, old)
		}
	}
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s: no process id in it", path)
	}
	return pid, nil
}
