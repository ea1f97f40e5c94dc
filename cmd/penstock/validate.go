package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// errInvalid reports that validation printed errors; the exit code is 1 and
// nothing more needs printing.
var errInvalid = errors.New("configuration is invalid")

func runValidate(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("validate", "validate -c FILE", stderr)
	file := fs.String("c", "", "configuration `file` to check (required)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		fmt.Fprintln(stderr, "penstock validate: -c FILE is required")
		fs.Usage()
		return errUsage
	}
	// The router's checks (patterns, conflicts) run even when decoding
	// failed, so one run lists every problem.
	cfg, err := config.Load(*file, snapshot.CheckRoutes)
	if err == nil {
		// Compiling validates, and builds the pools as serve would.
		var s *snapshot.Snapshot
		if s, err = snapshot.Compile(cfg, snapshot.Env{}); err == nil {
			s.Close()
		}
	}
	if err != nil {
		var errs config.Errors
		if errors.As(err, &errs) {
			for _, e := range errs {
				fmt.Fprintln(stderr, e)
			}
			fmt.Fprintf(stderr, "%s: %d error(s)\n", *file, len(errs))
		} else {
			fmt.Fprintln(stderr, err)
		}
		return errInvalid
	}
	fmt.Fprintf(stdout, "%s: ok (%d listeners, %d upstreams, %d routes)\n", *file, len(cfg.Listeners), len(cfg.Upstreams), len(cfg.Routes))
	return nil
}
