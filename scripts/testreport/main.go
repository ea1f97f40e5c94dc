// Command testreport reads `go test -json` on stdin and prints what a
// person reading a CI log needs: one "ok" or "FAIL" line per package, the
// whole output of every failed test and of every package that failed
// outside a test, build errors, and nothing of tests that passed. It also
// lists the tests that skipped, which `go test` without -v never shows.
//
//	go test -json ./... 2>&1 | go run ./scripts/testreport -skipped skips.txt
//
// Lines that are not JSON are printed as they come. The exit status is 1 if
// any test, package or build failed.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// event is one line of test2json output (go doc test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output and build-fail
}

func main() {
	skipped := flag.String("skipped", "", "write the skipped tests to this `file`, one \"package test\" a line")
	flag.Parse()
	r, err := report(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testreport:", err)
		os.Exit(1)
	}
	if *skipped != "" {
		var b strings.Builder
		for _, s := range r.skipped {
			fmt.Fprintf(&b, "%s %s\n", s.pkg, s.test)
		}
		if err := os.WriteFile(*skipped, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "testreport:", err)
			os.Exit(1)
		}
	}
	if r.failed {
		os.Exit(1)
	}
}

type skip struct{ pkg, test string }

type result struct {
	skipped []skip
	failed  bool
}

// report copies the readable part of the event stream in to out.
func report(in io.Reader, out io.Writer) (result, error) {
	var (
		res    result
		output = map[[2]string][]string{} // package, test → output lines
	)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(out, "%s\n", line)
			continue
		}
		key := [2]string{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			fmt.Fprint(out, e.Output)
		case "build-fail":
			res.failed = true
		case "output":
			output[key] = append(output[key], e.Output)
		case "fail":
			res.failed = true
			fallthrough
		case "pass", "skip":
			lines := output[key]
			delete(output, key)
			switch {
			case e.Action == "skip" && e.Test != "":
				res.skipped = append(res.skipped, skip{e.Package, e.Test})
			case e.Action == "fail":
				// A failed test's output, or a failed package's (its
				// FAIL line, a panic outside a test, a timeout). A
				// package that fails with tests still running (a
				// timeout, a crash) ends them without an event of their
				// own: their output, which holds the panic and the
				// goroutines, comes first.
				if e.Test == "" {
					keys := slices.SortedFunc(maps.Keys(output), func(a, b [2]string) int {
						return strings.Compare(a[0]+"\x00"+a[1], b[0]+"\x00"+b[1])
					})
					for _, k := range keys {
						if k[0] == e.Package && k[1] != "" {
							fmt.Fprintf(out, "--- UNFINISHED: %s\n%s", k[1], strings.Join(output[k], ""))
							delete(output, k)
						}
					}
				}
				fmt.Fprint(out, strings.Join(lines, ""))
			case e.Test == "" && len(lines) > 0:
				fmt.Fprint(out, lines[len(lines)-1]) // "ok  pkg 1.2s", "?  pkg [no test files]"
			}
		}
	}
	return res, sc.Err()
}
