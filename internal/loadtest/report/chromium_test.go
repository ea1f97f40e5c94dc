package report

import (
	"context"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/browsertest"
)

// headless runs Chromium on a local file with everything that would reach
// the network turned off, and returns its standard output.
func headless(t *testing.T, bin, page string, extra ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(),
	}, extra...)
	args = append(args, "file://"+page)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", extra, err, stderr.String())
	}
	return out
}

// TestReportInChromium opens a two-run report in a real browser: the
// rendered DOM must hold the three charts with drawn paths, and the
// screenshot must show both runs' colours in quantity.
func TestReportInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := browsertest.Chromium(t)
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, []byte(render(t, fixedRuns(t))), 0o644); err != nil {
		t.Fatal(err)
	}

	dom := string(headless(t, bin, page, "--dump-dom"))
	for _, id := range chartIDs {
		svg := svgOf(dom, id)
		if svg == "" {
			t.Errorf("rendered DOM has no <svg id=%q>", id)
			continue
		}
		if n := len(drawnPath.FindAllString(svg, -1)); n < 2 {
			t.Errorf("rendered %s has %d drawn paths, want one per run at least", id, n)
		}
	}

	shot := filepath.Join(dir, "report.png")
	headless(t, bin, page, "--screenshot="+shot, "--window-size=1400,3000")
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1400 || b.Dy() != 3000 {
		t.Errorf("screenshot is %dx%d, want 1400x3000", b.Dx(), b.Dy())
	}
	var ink, runA, runB int
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			if c.R < 240 || c.G < 240 || c.B < 240 {
				ink++
			}
			switch {
			case near(c, colors[0]):
				runA++
			case near(c, colors[1]):
				runB++
			}
		}
	}
	total := b.Dx() * b.Dy()
	t.Logf("non-white %.1f%%, run A colour %d px, run B colour %d px", 100*float64(ink)/float64(total), runA, runB)
	if float64(ink) < 0.03*float64(total) {
		t.Errorf("screenshot is nearly blank: %d of %d pixels are not white", ink, total)
	}
	// Each run has six lines, a spectrum and a histogram outline, each
	// hundreds of pixels long at 2 px width.
	if runA < 3000 || runB < 3000 {
		t.Errorf("run colours drawn on %d (A) and %d (B) pixels, want thousands each", runA, runB)
	}
	if keep := os.Getenv("PENSTOCK_REPORT_SCREENSHOT"); keep != "" {
		data, _ := os.ReadFile(shot)
		os.WriteFile(keep, data, 0o644)
	}
}

// near reports whether c is within a small distance of the hex colour.
func near(c color.NRGBA, hex string) bool {
	var r, g, b uint8
	parse := func(s string) uint8 {
		var v uint8
		for _, ch := range s {
			v <<= 4
			switch {
			case ch >= '0' && ch <= '9':
				v |= uint8(ch - '0')
			case ch >= 'a' && ch <= 'f':
				v |= uint8(ch-'a') + 10
			}
		}
		return v
	}
	r, g, b = parse(hex[1:3]), parse(hex[3:5]), parse(hex[5:7])
	d := func(x, y uint8) int {
		if x > y {
			return int(x - y)
		}
		return int(y - x)
	}
	return d(c.R, r)+d(c.G, g)+d(c.B, b) < 40
}
