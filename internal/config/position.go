package config

import (
	"fmt"
	"strconv"
	"strings"
)

// source is where a decoded Config came from: its file name and the line of
// every field path that appeared in it.
type source struct {
	file  string
	lines map[string]int
	// onDisk is set when file is a file Load read (not a name given to
	// Parse or Check for a configuration in memory, such as the demo's).
	onDisk bool
}

// Line returns the line of the field at path in the file c was decoded from.
//
// A path is written as in the file: field names joined by ".", list items as
// "[i]" and map keys as ".key" (or `["key"]` when the key holds anything but
// letters, digits, "_" and "-"):
//
//	listeners[0].tls.certificates[1].cert_file
//	routes[2].match.headers.X-Tenant
//
// A path absent from the file (a missing required field, a value filled in by
// a default) reports the line of its nearest parent that is present, so an
// error still points at the right block. Line returns 0 when c was not
// decoded from YAML or nothing on the path is known.
func (c *Config) Line(path string) int {
	if c == nil || c.src == nil {
		return 0
	}
	for {
		if line, ok := c.src.lines[path]; ok {
			return line
		}
		parent, ok := parentPath(path)
		if !ok {
			return 0
		}
		path = parent
	}
}

// Errorf returns a FieldError at path with the file and line (see Line)
// filled in. Packages that check a Config beyond Validate use it so that
// their errors cite the file like Validate's do:
//
//	return cfg.Errorf("routes[2].match.path", "conflicts with route %q", name)
func (c *Config) Errorf(path, format string, args ...any) *FieldError {
	return &FieldError{
		Path: path,
		Line: c.Line(path),
		File: c.file(),
		Msg:  fmt.Sprintf(format, args...),
	}
}

// File returns the file name c was decoded from: the path given to Load or
// the filename given to Parse. It is empty for a Config built in Go.
func (c *Config) File() string { return c.file() }

func (c *Config) file() string {
	if c == nil || c.src == nil {
		return ""
	}
	return c.src.file
}

// fieldPath appends a struct field or simple map key to a path.
func fieldPath(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

// indexPath appends a list index to a path.
func indexPath(parent string, i int) string {
	return parent + "[" + strconv.Itoa(i) + "]"
}

// keyPath appends a map key to a path, quoting keys that would otherwise be
// ambiguous (a "." in a header name, say).
func keyPath(parent, key string) string {
	if key != "" && strings.IndexFunc(key, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) < 0 {
		return fieldPath(parent, key)
	}
	return parent + "[" + strconv.Quote(key) + "]"
}

// parentPath drops the last element of a path: "a.b[3]" → "a.b" → "a" → "".
// It reports false for the root path "".
func parentPath(p string) (string, bool) {
	if p == "" {
		return "", false
	}
	last := 0
	for i := 0; i < len(p); {
		switch p[i] {
		case '.':
			last = i
			i++
		case '[':
			last = i
			i++
			if i < len(p) && p[i] == '"' {
				// Skip a quoted key whole: it may contain "." or "]".
				q, err := strconv.QuotedPrefix(p[i:])
				if err != nil {
					return p[:last], true
				}
				i += len(q)
			}
			if j := strings.IndexByte(p[i:], ']'); j >= 0 {
				i += j + 1
			} else {
				i = len(p)
			}
		default:
			i++
		}
	}
	return p[:last], true
}
