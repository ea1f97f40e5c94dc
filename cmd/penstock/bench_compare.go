package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/penstock-dev/penstock/internal/loadtest/compare"
	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

const compareSynopsis = `bench compare A.hlog B.hlog [--phase total] [--confidence 0.95] [--alpha 0.05] [--resamples 2000] [--json]

Compares run B against run A: P50, P90, P99, P99.9 and mean with the
difference B - A and its confidence interval (block bootstrap), and a
Kolmogorov-Smirnov test whose p-value comes from permuting whole blocks of
seconds between the runs (see docs/bench-compare.md). The exit code is 0
whether or not the runs differ; it is 1 when a log cannot be read or an
option is out of range, 2 on wrong usage. Read the verdict from the output ("ks.different" in JSON).`

func runBenchCompare(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench compare", compareSynopsis, stderr)
	phase := fs.String("phase", runlog.Total, "`phase` to compare: "+phaseNames)
	conf := fs.Float64("confidence", 0.95, "coverage of the confidence intervals, between 0 and 1")
	alpha := fs.Float64("alpha", 0.05, "significance level of the KS verdict, between 0 and 1")
	resamples := fs.Int("resamples", 2000, "bootstrap resamples and block permutations")
	block := fs.Int("block", 0, "`intervals` per resampled block (0: chosen from the data)")
	seed := fs.Uint64("seed", 1, "resampling seed (equal seeds give equal output)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	files, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(files) != 2 {
		fmt.Fprintf(stderr, "penstock bench compare: want two run logs, got %d\n", len(files))
		fs.Usage()
		return errUsage
	}
	a, err := readRunLog(files[0])
	if err != nil {
		return err
	}
	b, err := readRunLog(files[1])
	if err != nil {
		return err
	}
	r, err := compare.Compare(a, b, compare.Options{
		Phase: *phase, Confidence: *conf, Alpha: *alpha, Resamples: *resamples, BlockLen: *block, Seed: *seed,
	})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			FileA string `json:"file_a"`
			FileB string `json:"file_b"`
			*compare.Result
		}{files[0], files[1], r})
	}
	return writeComparison(stdout, files[0], files[1], r)
}

// writeComparison prints r as a table and a verdict line.
func writeComparison(w io.Writer, fileA, fileB string, r *compare.Result) error {
	fmt.Fprintf(w, "phase %s, A = %s (%d requests, %d intervals), B = %s (%d requests, %d intervals)\n\n",
		r.Phase, fileA, r.A.Count, r.A.Intervals, fileB, r.B.Count, r.B.Intervals)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%-5s\tA\tB\tdelta\tdelta %%\t%g%% CI of delta\t\n", "stat", 100*r.Confidence)
	for _, s := range r.Stats {
		fmt.Fprintf(tw, "%-5s\t%s\t%s\t%s\t%+.1f%%\t[%s, %s]\t\n", s.Name,
			formatMicros(s.A, false), formatMicros(s.B, false), formatMicros(s.Delta, true), s.DeltaPct,
			formatMicros(s.Low, true), formatMicros(s.High, true))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	verdict := "no significant difference"
	if r.KS.Different {
		verdict = fmt.Sprintf("different at p<%g", r.Alpha)
	}
	fmt.Fprintf(w, "\nKS: D = %.4f, p = %.4f (%s of %d+%d blocks of %d intervals; i.i.d. p = %.2g, not valid here): %s\n",
		r.KS.D, r.KS.P, dealsText(r.KS), r.A.Blocks, r.B.Blocks, r.BlockLen, r.KS.ClassicalP, verdict)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

// dealsText says how many block deals the p-value rests on.
func dealsText(ks compare.KS) string {
	if ks.Exact {
		return fmt.Sprintf("all %d deals", ks.Deals)
	}
	return fmt.Sprintf("%d random deals", ks.Deals)
}

// formatMicros renders a latency in µs with a unit that suits it; signed
// adds a + to positive values.
func formatMicros(us float64, signed bool) string {
	sign := ""
	if signed && us > 0 {
		sign = "+"
	}
	a := math.Abs(us)
	switch {
	case a < 1000:
		return fmt.Sprintf("%s%.0f µs", sign, us)
	case a < 1e6:
		return fmt.Sprintf("%s%.2f ms", sign, us/1e3)
	default:
		return fmt.Sprintf("%s%.3f s", sign, us/1e6)
	}
}

// readRunLog reads a run log file.
func readRunLog(path string) (*runlog.Log, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	l, err := runlog.Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// parseWithArgs parses flags that may come before, between or after the
// positional arguments ("compare A B --json"), which the flag package alone
// stops at, and returns the positional arguments in order.
func parseWithArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// phaseNames lists the phases, for flag help.
var phaseNames = strings.Join([]string{runlog.Total, runlog.Connect, runlog.TLS, runlog.FirstByte, runlog.Handshake}, ", ")
