package loadtest

import (
	"fmt"
	"io"
	"os"
	"time"
)

// IsTerminal reports whether w is a terminal (a character device), where a
// live progress line makes sense.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ProgressLine returns an OnInterval function that rewrites one status
// line on w: elapsed time, achieved rate, errors, late starts and the last
// interval's P99. Call the returned done function after the run to end the
// line.
func ProgressLine(w io.Writer, total time.Duration) (on func(Progress), done func()) {
	wrote := false
	on = func(p Progress) {
		wrote = true
		fmt.Fprintf(w, "\r\033[K%6.1fs/%s  %9.1f req/s  %d responses  %d errors  %d late  p99 %.2f ms",
			p.Elapsed.Seconds(), total, p.Rate, p.Responses, p.Errors, p.Late, float64(p.P99)/1e6)
	}
	done = func() {
		if wrote {
			fmt.Fprint(w, "\r\033[K")
		}
	}
	return on, done
}
