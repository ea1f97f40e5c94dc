package config

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// FieldError is one problem with one field of a configuration file.
//
// Its text names the field path and, when known, the file and line:
//
//	routes[2].match.path (line 41): must start with "/"
//	penstock.yaml: routes[2].match.path (line 41): must start with "/"
//
// The file prefix is present when the config was read with a file name (Load,
// or Parse with a non-empty filename). The line is omitted when unknown (for
// example for a Config built in Go rather than decoded).
type FieldError struct {
	// Path is the field path in the file's own spelling, e.g.
	// "listeners[0].tls.certificates[1].cert_file". Empty for problems with
	// the file as a whole (syntax errors, an empty file).
	Path string
	// Line is the 1-based line in the file, or 0 when unknown.
	Line int
	// File is the name the config was read from, or empty.
	File string
	// Msg says what is wrong, lowercase, without the path.
	Msg string
}

// Error formats the error as "[file: ]path (line N): msg".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(": ")
	}
	switch {
	case e.Path != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s (line %d): ", e.Path, e.Line)
	case e.Path != "":
		b.WriteString(e.Path)
		b.WriteString(": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one configuration, reported together so a
// user can fix them all in one pass. Parse and Validate return it (as error)
// when anything is wrong, as does Load unless the file cannot be read; none
// of them returns an empty Errors.
type Errors []*FieldError

// Error lists the errors one per line, ordered by line (errors without a line
// come last); errors on the same line keep the order they were found in.
func (es Errors) Error() string {
	sorted := slices.Clone(es)
	sortByLine(sorted)
	lines := make([]string, len(sorted))
	for i, e := range sorted {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the individual errors so errors.As can find a *FieldError.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func sortByLine(es Errors) {
	slices.SortStableFunc(es, func(a, b *FieldError) int {
		// A line of 0 means "unknown"; those read better after the located
		// errors than before them.
		la, lb := a.Line, b.Line
		if la == 0 {
			la = int(^uint(0) >> 1)
		}
		if lb == 0 {
			lb = int(^uint(0) >> 1)
		}
		return cmp.Compare(la, lb)
	})
}

// Collector gathers FieldErrors about one Config, filling in file and line
// from the positions recorded when the Config was decoded. Validate uses one;
// so can any package that checks a Config further (for example the gateway
// compiling routes), so that its errors read the same way:
//
//	col := config.NewCollector(cfg)
//	col.Addf("routes[2].match.path", "conflicts with route %q", other)
//	if err := col.Err(); err != nil {
//		return err
//	}
//
// The zero value is usable and reports no file or lines.
type Collector struct {
	cfg  *Config
	errs Errors
}

// NewCollector returns a Collector whose errors cite cfg's file and lines.
// cfg may be nil or a Config built in Go; lines are then omitted.
func NewCollector(cfg *Config) *Collector {
	return &Collector{cfg: cfg}
}

// Addf records an error at the field path (see Config.Line for the syntax).
func (c *Collector) Addf(path, format string, args ...any) {
	c.errs = append(c.errs, c.cfg.Errorf(path, format, args...))
}

// Add records errors already built: a *FieldError, an Errors, or any other
// error, which is recorded without a path. A nil err is ignored.
func (c *Collector) Add(err error) {
	switch e := err.(type) {
	case nil:
	case *FieldError:
		c.errs = append(c.errs, e)
	case Errors:
		c.errs = append(c.errs, e...)
	default:
		c.errs = append(c.errs, &FieldError{File: c.cfg.file(), Msg: err.Error()})
	}
}

// Len reports how many errors have been recorded.
func (c *Collector) Len() int { return len(c.errs) }

// Err returns the recorded errors sorted by line as Errors, or nil if there
// are none.
func (c *Collector) Err() error {
	if len(c.errs) == 0 {
		return nil
	}
	out := slices.Clone(c.errs)
	sortByLine(out)
	return out
}
