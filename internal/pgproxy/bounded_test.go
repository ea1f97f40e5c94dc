package pgproxy

import (
	"bytes"
	"fmt"
	"os/exec"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// boundedOutput runs a client program (psql, pgbench) against the proxy
// and returns its combined output, like CombinedOutput, but gives up after
// limit: it then logs every goroutine of the test process (the proxy runs
// in it, so a stuck session shows where it waits), kills the program, and
// returns an error. A hang becomes a failure with its cause, not a test
// binary timeout.
func boundedOutput(t testing.TB, cmd *exec.Cmd, limit time.Duration) ([]byte, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.Bytes(), err
	case <-time.After(limit):
		var dump strings.Builder
		pprof.Lookup("goroutine").WriteTo(&dump, 1)
		t.Logf("%s still running after %s; the test process's goroutines:\n%s", cmd.Path, limit, dump.String())
		cmd.Process.Kill()
		<-done
		return out.Bytes(), fmt.Errorf("%s: still running after %s, killed", cmd.Path, limit)
	}
}
