package report

import (
	"fmt"
	"math"
	"strings"
)

// Chart geometry, in SVG user units. Every chart has the same frame so the
// report reads as one column.
const (
	chartW    = 1200
	chartH    = 380
	marginL   = 80
	marginR   = 48
	marginT   = 20
	marginB   = 48
	plotLeft  = marginL
	plotRight = chartW - marginR
	plotTop   = marginT
	plotBot   = chartH - marginB
)

// chart is one <svg> of the report, ready for the template.
type chart struct {
	ID, Title, Caption string
	XLabel, YLabel     string
	XTicks, YTicks     []tick
	Series             []series
}

// tick is one axis tick: its pixel position and label.
type tick struct {
	Pos   float64
	Label string
}

// series is one line (or filled outline) of a chart.
type series struct {
	Name  string
	Color string
	// Dash is the SVG stroke-dasharray ("" for solid).
	Dash string
	// Fill is true for the histogram's translucent areas.
	Fill bool
	Path string
}

// Geometry the template needs.
func (chart) Width() int      { return chartW }
func (chart) Height() int     { return chartH }
func (chart) Left() int       { return plotLeft }
func (chart) Right() int      { return plotRight }
func (chart) Top() int        { return plotTop }
func (chart) Bottom() int     { return plotBot }
func (chart) MidX() int       { return (plotLeft + plotRight) / 2 }
func (chart) MidY() int       { return (plotTop + plotBot) / 2 }
func (chart) XLabelY() int    { return chartH - 8 }
func (chart) TickLabelY() int { return plotBot + 18 }

// scale maps data values onto a pixel range, linearly or logarithmically.
type scale struct {
	min, max float64
	log      bool
	from, to float64 // pixels for min and max
}

func (s scale) pos(v float64) float64 {
	lo, hi := s.min, s.max
	if s.log {
		v, lo, hi = math.Log10(max(v, s.min)), math.Log10(lo), math.Log10(hi)
	}
	if hi == lo {
		return (s.from + s.to) / 2
	}
	f := (v - lo) / (hi - lo)
	return s.from + f*(s.to-s.from)
}

// path builds an SVG path from points; a NaN y breaks the line.
type path struct {
	b       strings.Builder
	penDown bool
}

func (p *path) point(x, y float64) {
	if math.IsNaN(y) {
		p.penDown = false
		return
	}
	cmd := "L"
	if !p.penDown {
		cmd = "M"
		p.penDown = true
	}
	if p.b.Len() > 0 {
		p.b.WriteByte(' ')
	}
	fmt.Fprintf(&p.b, "%s%.1f %.1f", cmd, x, y)
}

func (p *path) String() string { return p.b.String() }

// latencyTicks are 1-2-5 ticks for a logarithmic latency axis in µs.
func latencyTicks(s scale) []tick {
	var out []tick
	for e := 0.0; e <= 8; e++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, e)
			if v >= s.min*0.999 && v <= s.max*1.001 {
				out = append(out, tick{s.pos(v), formatMicros(v)})
			}
		}
	}
	return out
}

// linearTicks are about n round ticks over a linear axis; label formats a
// value.
func linearTicks(s scale, n int, label func(float64) string) []tick {
	step := niceStep((s.max - s.min) / float64(n))
	var out []tick
	for v := math.Ceil(s.min/step) * step; v <= s.max+step*1e-9; v += step {
		out = append(out, tick{s.pos(v), label(v)})
	}
	return out
}

// niceStep rounds a raw step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

// niceLogRange widens [lo, hi] (µs) to 1-2-5 values so the axis starts and
// ends on a tick.
func niceLogRange(lo, hi float64) (float64, float64) {
	lo, hi = max(lo, 1), max(hi, 1)
	down := func(v float64) float64 {
		p := math.Pow(10, math.Floor(math.Log10(v)))
		for _, m := range []float64{5, 2, 1} {
			if m*p <= v {
				return m * p
			}
		}
		return p
	}
	up := func(v float64) float64 {
		p := math.Pow(10, math.Floor(math.Log10(v)))
		for _, m := range []float64{1, 2, 5, 10} {
			if m*p >= v {
				return m * p
			}
		}
		return 10 * p
	}
	lo, hi = down(lo), up(hi)
	if hi <= lo {
		hi = up(lo * 1.0001)
	}
	return lo, hi
}

// formatMicros renders a latency in µs for a label.
func formatMicros(us float64) string {
	switch {
	case us == 0:
		return "0"
	case us < 1000:
		return trimFloat(us) + " µs"
	case us < 1e6:
		return trimFloat(us/1e3) + " ms"
	default:
		return trimFloat(us/1e6) + " s"
	}
}

// trimFloat prints v with up to 3 significant decimals and no trailing
// zeros.
func trimFloat(v float64) string {
	var s string
	switch a := math.Abs(v); {
	case a >= 100:
		s = fmt.Sprintf("%.0f", v)
	case a >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
