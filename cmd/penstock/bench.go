package main

import (
	"fmt"
	"io"
)

// benchSubcommands are the verbs of `penstock bench`: run produces a run log,
// compare and report read run logs.
func benchSubcommands() []command {
	return []command{
		{"run", "send load at a target (open-loop --rate or closed-loop --concurrency)", runBenchRun},
		{"compare", "compare two run logs: percentile deltas with confidence intervals and a KS test", runBenchCompare},
		{"report", "write a self-contained HTML report of one or two run logs", runBenchReport},
	}
}

// runBench dispatches `penstock bench <verb>`.
func runBench(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(stderr, "Usage: penstock bench <run|compare|report> [flags]\n\n")
		for _, c := range benchSubcommands() {
			fmt.Fprintf(stderr, "  %-8s %s\n", c.name, c.summary)
		}
		if len(args) == 0 {
			return errUsage
		}
		return nil
	}
	for _, c := range benchSubcommands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "penstock bench: unknown verb %q (run, compare, report)\n", args[0])
	return errUsage
}
