package upgrade

import (
	"os"
	"strings"
	"testing"
	"time"
)

// A command watching this process's upgrade hears the outcome from Start
// as soon as Start knows it.
func TestStartReportsItsOutcome(t *testing.T) {
	tests := []struct {
		name    string
		script  string // run by /bin/sh as the "new process" (exec: so that Kill stops it)
		wantErr string // "" for success
	}{
		{name: "new process fails at once", script: "exit 3", wantErr: "exit status 3"},
		{name: "new process closes its ready pipe", script: `eval "exec $PENSTOCK_READY_FD>&-"; exec sleep 30`, wantErr: "closed its ready pipe"},
		{name: "new process reports ready", script: `eval "echo ready >&$PENSTOCK_READY_FD"; exec sleep 30`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			outcome, stop, err := WatchOutcome(os.Getpid())
			if err != nil {
				t.Fatal(err)
			}
			defer stop()
			proc, err := Start("/bin/sh", []string{"-c", tc.script}, nil, time.Minute)
			if proc != nil {
				defer func() { proc.Kill(); proc.Wait() }()
			}
			o := <-outcome
			if tc.wantErr == "" {
				if err != nil || o.Err != nil || proc == nil || o.NewPID != proc.Pid {
					t.Fatalf("Start: %v; reported %+v, want ready with the new process's pid", err, o)
				}
				return
			}
			if err == nil || o.Err == nil || o.Err.Error() != err.Error() || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Start: %v; reported %+v; want an error with %q, reported as returned", err, o, tc.wantErr)
			}
		})
	}
}

func TestParseOutcome(t *testing.T) {
	tests := []struct {
		name, msg string
		pid       int
		err       string
	}{
		{name: "ready", msg: "ready 4242", pid: 4242},
		{name: "failed", msg: "failed new process exited before it was ready: exit status 3", err: "new process exited before it was ready: exit status 3"},
		{name: "ready without a pid", msg: "ready", err: `unrecognised report "ready"`},
		{name: "unknown verb", msg: "hello", err: `unrecognised report "hello"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := parseOutcome(tc.msg)
			if o.NewPID != tc.pid || (o.Err == nil) != (tc.err == "") || o.Err != nil && o.Err.Error() != tc.err {
				t.Errorf("parseOutcome(%q) = %+v, want pid %d, error %q", tc.msg, o, tc.pid, tc.err)
			}
		})
	}
}
