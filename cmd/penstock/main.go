// Command penstock is an edge gateway for teams that serve their own models.
//
// Usage:
//
//	penstock serve [-c FILE]      run the gateway (no -c: the built-in demo)
//	penstock validate -c FILE     check a configuration file
//	penstock config demo          print the demo configuration
//	penstock config push|history|show|rollback|nodes etcd://HOST:PORT/PREFIX   a fleet's configuration
//	penstock demo-backend         run the demo model backend alone
//	penstock demo-function        the demo function (started by penstock serve)
//	penstock bench run|compare|report   load testing and A/B comparison
//	penstock probe once|serve|run  network prober (blackbox_exporter compatible)
//	penstock upgrade -pid-file F  replace a running penstock (binary upgrade)
//	penstock rollout list|show|pause|resume|promote|abort   gray releases
//	penstock version              print the version (also: penstock --version)
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// errUsage is returned when a subcommand was called wrongly; its usage has
// already been printed.
var errUsage = errors.New("usage")

type command struct {
	name    string
	summary string
	run     func(args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"serve", "run the gateway (with no -c: the built-in demo)", runServe},
		{"validate", "check a configuration file and print every error", runValidate},
		{"config", "the demo configuration; a fleet's configuration in etcd: push, history, show, rollback, nodes", runConfig},
		{"demo-backend", "run the built-in demo model backend alone", runDemoBackend},
		{"demo-function", "run the demo function (penstock starts it; it speaks the Lambda Runtime API)", runDemoFunction},
		{"bench", "measure a server: open-loop load, run comparison, HTML report", runBench},
		{"probe", "probe networks: once, as a blackbox_exporter (serve), or a target list (run)", runProbe},
		{"upgrade", "replace a running penstock with a new process, without dropping a connection", runUpgrade},
		{"rollout", "list, show, pause, resume, promote or abort the rollouts of a running penstock", runRollout},
		{"version", "print the version", runVersion},
	}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		// The spelling most tools accept, beside the version command.
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			switch {
			case err == nil, errors.Is(err, flag.ErrHelp):
				return 0
			case errors.Is(err, errUsage):
				return 2
			case errors.Is(err, errInvalid):
				return 1 // the errors are printed already
			}
			fmt.Fprintf(stderr, "penstock %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "penstock: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "penstock: an edge gateway for teams that serve their own models\n\nUsage: penstock <command> [flags]\n\nCommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-13s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'penstock <command> --help' for a command's flags; 'penstock --version' prints the version.\n")
}

// newFlagSet returns a flag set whose --help prints the command's synopsis.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("penstock "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: penstock %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping a parse failure to errUsage (the flag
// package has printed the problem and the usage already).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	return nil
}
