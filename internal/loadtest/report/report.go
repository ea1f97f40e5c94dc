// Package report renders one or two `penstock bench` runs as a single
// self-contained HTML file: inline CSS and inline SVG charts, no script, no
// font or style sheet from the network, so the file can be mailed, attached
// to an issue or opened offline years later and look the same.
//
// The charts are drawn on the server side as SVG paths (deterministic and
// testable): latency over time (P50, P99 and max of every interval, per run),
// the percentile spectrum on HdrHistogram's log "nines" axis, and the
// latency histograms of the runs overlaid. Tables summarise each run and,
// with two runs, show the comparison of package compare.
package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/penstock-dev/penstock/internal/loadtest/compare"
	"github.com/penstock-dev/penstock/internal/loadtest/runlog"
)

// Run is one run to report.
type Run struct {
	// Name labels the run in legends and tables, e.g. its file name.
	Name string
	Log  *runlog.Log
}

// Options tune a report.
type Options struct {
	// Title heads the page. Default "penstock bench report".
	Title string
	// Compare configures the comparison of two runs; its Phase (default
	// runlog.Total) is also the phase every chart shows.
	Compare compare.Options
}

// colors of run A and run B (colour-blind safe blue and orange).
var colors = []string{"#1f6fb4", "#e07b00"}

//go:embed report.html.tmpl
var pageSource string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"micros": formatMicros,
	"pct":    func(v float64) string { return fmt.Sprintf("%+.1f%%", v) },
	"signed": func(v float64) string {
		if v > 0 {
			return "+" + formatMicros(v)
		}
		if v < 0 {
			return "−" + formatMicros(-v)
		}
		return "0"
	},
	"f4":   func(v float64) string { return fmt.Sprintf("%.4f", v) },
	"g2":   func(v float64) string { return fmt.Sprintf("%.2g", v) },
	"x100": func(v float64) string { return trimFloat(100 * v) },
}).Parse(pageSource))

// view is what the template renders.
type view struct {
	Title   string
	Phase   string
	Runs    []runView
	Charts  []chart
	Compare *compare.Result
}

type runView struct {
	Name, Color string
	Count       int64
	Duration    string
	Rate        string
	Stats       []statView
	Meta        []metaView
}

type statView struct {
	Name  string
	Value float64
}

type metaView struct{ Key, Value string }

// Write renders the report of one or two runs to w.
func Write(w io.Writer, runs []Run, opt Options) error {
	if len(runs) < 1 || len(runs) > 2 {
		return fmt.Errorf("report: want one or two runs, got %d", len(runs))
	}
	if opt.Title == "" {
		opt.Title = "penstock bench report"
	}
	phase := opt.Compare.Phase
	if phase == "" {
		phase = runlog.Total
	}
	v := view{Title: opt.Title, Phase: phase}
	merged := make([]*hdrhistogram.Histogram, len(runs))
	for i, r := range runs {
		ivs := r.Log.Phase(phase)
		merged[i] = r.Log.Merged(phase)
		if merged[i] == nil || merged[i].TotalCount() == 0 {
			return fmt.Errorf("report: run %q has no latencies in phase %q", r.Name, phase)
		}
		v.Runs = append(v.Runs, summarize(r, ivs, merged[i], colors[i]))
	}
	v.Charts = []chart{
		latencyOverTime(runs, phase),
		percentileSpectrum(runs, merged),
		histogramOverlay(runs, merged),
	}
	if len(runs) == 2 {
		opt.Compare.Phase = phase
		res, err := compare.Compare(runs[0].Log, runs[1].Log, opt.Compare)
		if err != nil {
			return fmt.Errorf("report: %w", err)
		}
		v.Compare = res
	}
	return page.Execute(w, v)
}

func summarize(r Run, ivs []runlog.Interval, h *hdrhistogram.Histogram, color string) runView {
	rv := runView{Name: r.Name, Color: color, Count: h.TotalCount()}
	var span time.Duration
	if len(ivs) > 0 {
		span = ivs[len(ivs)-1].End - ivs[0].Start
	}
	rv.Duration = span.String()
	if span > 0 {
		rv.Rate = fmt.Sprintf("%.1f/s", float64(h.TotalCount())/span.Seconds())
	}
	for _, q := range []struct {
		name string
		q    float64
	}{{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}, {"p99.99", 99.99}} {
		rv.Stats = append(rv.Stats, statView{q.name, float64(h.ValueAtQuantile(q.q))})
	}
	rv.Stats = append(rv.Stats, statView{"max", float64(h.Max())}, statView{"mean", h.Mean()})
	keys := make([]string, 0, len(r.Log.Meta))
	for k := range r.Log.Meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		rv.Meta = append(rv.Meta, metaView{k, r.Log.Meta[k]})
	}
	return rv
}

// latencyOverTime plots P50, P99 and max of every interval of every run
// against the interval's end, on a logarithmic latency axis.
func latencyOverTime(runs []Run, phase string) chart {
	c := chart{
		ID: "chart-latency-over-time", Title: "Latency over time",
		Caption: "P50 (solid), P99 (dashed) and max (dotted) of each interval.",
		XLabel:  "time since start (s)", YLabel: "latency (log scale)",
	}
	lo, hi, end := math.Inf(1), 0.0, 0.0
	for _, r := range runs {
		for _, iv := range r.Log.Phase(phase) {
			if iv.Hist.TotalCount() == 0 {
				continue
			}
			lo = min(lo, float64(iv.Hist.ValueAtQuantile(50)))
			hi = max(hi, float64(iv.Hist.Max()))
			end = max(end, iv.End.Seconds())
		}
	}
	lo, hi = niceLogRange(lo, hi)
	xs := scale{min: 0, max: max(end, 1), from: plotLeft, to: plotRight}
	ys := scale{min: lo, max: hi, log: true, from: plotBot, to: plotTop}
	c.XTicks = linearTicks(xs, 10, trimFloat)
	c.YTicks = latencyTicks(ys)
	lines := []struct {
		name string
		dash string
		val  func(h *hdrhistogram.Histogram) float64
	}{
		{"P50", "", func(h *hdrhistogram.Histogram) float64 { return float64(h.ValueAtQuantile(50)) }},
		{"P99", "8 4", func(h *hdrhistogram.Histogram) float64 { return float64(h.ValueAtQuantile(99)) }},
		{"max", "2 3", func(h *hdrhistogram.Histogram) float64 { return float64(h.Max()) }},
	}
	for i, r := range runs {
		for _, l := range lines {
			var p path
			for _, iv := range r.Log.Phase(phase) {
				y := math.NaN()
				if iv.Hist.TotalCount() > 0 {
					y = ys.pos(l.val(iv.Hist))
				}
				p.point(xs.pos(iv.End.Seconds()), y)
			}
			c.Series = append(c.Series, series{Name: r.Name + " " + l.name, Color: colors[i], Dash: l.dash, Path: p.String()})
		}
	}
	return c
}

// nines is the percentile spectrum's x axis: x = log10(1/(1−q)), so 90% is
// 1, 99% is 2, 99.9% is 3 (HdrHistogram's plots).
const nines = 5

// percentileSpectrum plots latency against percentile on the nines axis.
func percentileSpectrum(runs []Run, merged []*hdrhistogram.Histogram) chart {
	c := chart{
		ID: "chart-percentiles", Title: "Percentile spectrum",
		Caption: "Latency at each percentile of the whole run; the axis stretches the tail (90%, 99%, 99.9%, ...).",
		XLabel:  "percentile", YLabel: "latency",
	}
	hi := 0.0
	for _, h := range merged {
		hi = max(hi, float64(h.Max()))
	}
	xs := scale{min: 0, max: nines, from: plotLeft, to: plotRight}
	ys := scale{min: 0, max: float64(niceStep(hi/5)) * math.Ceil(hi/niceStep(hi/5)), from: plotBot, to: plotTop}
	for x := 0; x <= nines; x++ {
		label := "0%"
		if x > 0 {
			label = trimFloat(100*(1-math.Pow(10, -float64(x)))) + "%"
			if x > 2 {
				label = fmt.Sprintf("%.*f%%", x-2, 100*(1-math.Pow(10, -float64(x))))
			}
		}
		c.XTicks = append(c.XTicks, tick{xs.pos(float64(x)), label})
	}
	c.YTicks = linearTicks(ys, 5, formatMicros)
	const steps = 20 // points per nine
	for i, h := range merged {
		var p path
		for k := 0; k <= nines*steps; k++ {
			x := float64(k) / steps
			q := 100 * (1 - math.Pow(10, -x))
			p.point(xs.pos(x), ys.pos(float64(h.ValueAtQuantile(q))))
		}
		c.Series = append(c.Series, series{Name: runs[i].Name, Color: colors[i], Path: p.String()})
	}
	return c
}

// histogramBins is the number of logarithmic bins of the histogram chart.
const histogramBins = 80

// histogramOverlay draws each run's latency distribution as the share of
// its requests in logarithmic latency bins, overlaid.
func histogramOverlay(runs []Run, merged []*hdrhistogram.Histogram) chart {
	c := chart{
		ID: "chart-histogram", Title: "Latency histogram",
		Caption: "Share of requests per latency bin (bins of equal width on the log scale).",
		XLabel:  "latency (log scale)", YLabel: "share of requests",
	}
	lo, hi := math.Inf(1), 0.0
	for _, h := range merged {
		lo = min(lo, float64(h.Min()))
		hi = max(hi, float64(h.Max()))
	}
	lo, hi = niceLogRange(lo, hi)
	xs := scale{min: lo, max: hi, log: true, from: plotLeft, to: plotRight}
	llo, lhi := math.Log10(lo), math.Log10(hi)
	shares := make([][]float64, len(merged))
	top := 0.0
	for i, h := range merged {
		bins := make([]float64, histogramBins)
		for _, b := range h.Distribution() {
			if b.Count == 0 {
				continue
			}
			mid := float64(b.From+b.To) / 2
			k := int(float64(histogramBins) * (math.Log10(max(mid, lo)) - llo) / (lhi - llo))
			bins[min(max(k, 0), histogramBins-1)] += float64(b.Count)
		}
		for k := range bins {
			bins[k] /= float64(h.TotalCount())
			top = max(top, bins[k])
		}
		shares[i] = bins
	}
	ys := scale{min: 0, max: niceStep(top/4) * math.Ceil(top/niceStep(top/4)), from: plotBot, to: plotTop}
	c.XTicks = latencyTicks(xs)
	c.YTicks = linearTicks(ys, 4, func(v float64) string { return trimFloat(100*v) + "%" })
	edge := func(k int) float64 {
		return xs.pos(math.Pow(10, llo+(lhi-llo)*float64(k)/histogramBins))
	}
	for i, bins := range shares {
		var p path
		p.point(edge(0), ys.pos(0))
		for k, s := range bins {
			p.point(edge(k), ys.pos(s))
			p.point(edge(k+1), ys.pos(s))
		}
		p.point(edge(histogramBins), ys.pos(0))
		c.Series = append(c.Series, series{Name: runs[i].Name, Color: colors[i], Fill: true, Path: p.String()})
	}
	return c
}
