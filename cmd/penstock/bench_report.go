package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/penstock-dev/penstock/internal/loadtest/compare"
	"github.com/penstock-dev/penstock/internal/loadtest/report"
	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

const reportSynopsis = `bench report A.hlog [B.hlog] [-o report.html] [--phase total] [--title T]

Writes one self-contained HTML file (inline CSS and SVG, nothing fetched from
the network): latency over time, percentile spectrum and histogram charts,
summary tables, and with two runs the comparison of 'penstock bench compare'.`

func runBenchReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench report", reportSynopsis, stderr)
	out := fs.String("o", "report.html", "output `file`")
	phase := fs.String("phase", runlog.Total, "`phase` to chart and compare: "+phaseNames)
	title := fs.String("title", "", "page title (default \"penstock bench report\")")
	conf := fs.Float64("confidence", 0.95, "coverage of the confidence intervals, between 0 and 1")
	alpha := fs.Float64("alpha", 0.05, "significance level of the KS verdict, between 0 and 1")
	resamples := fs.Int("resamples", 2000, "bootstrap resamples and block permutations")
	seed := fs.Uint64("seed", 1, "resampling seed (equal seeds give equal output)")
	files, err := parseWithArgs(fs, args)
	if err != nil {
		return err
	}
	if len(files) < 1 || len(files) > 2 {
		fmt.Fprintf(stderr, "penstock bench report: want one or two run logs, got %d\n", len(files))
		fs.Usage()
		return errUsage
	}
	var runs []report.Run
	for _, f := range files {
		l, err := readRunLog(f)
		if err != nil {
			return err
		}
		runs = append(runs, report.Run{Name: filepath.Base(f), Log: l})
	}
	var buf bytes.Buffer
	err = report.Write(&buf, runs, report.Options{
		Title:   *title,
		Compare: compare.Options{Phase: *phase, Confidence: *conf, Alpha: *alpha, Resamples: *resamples, Seed: *seed},
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (%d bytes)\n", *out, buf.Len())
	return nil
}
