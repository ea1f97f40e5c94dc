package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a length of time written in the file as a Go duration string:
// a sequence of numbers with units "ns", "us" (or "µs"), "ms", "s", "m", "h",
// such as "250ms", "10s" or "1m30s". A bare 0 is accepted and means zero;
// any other bare number is an error because its unit would be a guess.
// Negative durations are rejected.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML decodes a duration string (or 0) from a YAML scalar.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be a duration such as \"10s\", got %s", kindName(n))
	}
	switch n.ShortTag() {
	case nullTag:
		*d = 0
		return nil
	case intTag, floatTag:
		// A bare number has no unit; only zero is unambiguous.
		if f, err := strconv.ParseFloat(n.Value, 64); err == nil && f == 0 {
			*d = 0
			return nil
		}
		return fmt.Errorf("invalid duration %s: add a unit, e.g. \"%ss\" or \"%sms\"", n.Value, n.Value, n.Value)
	case strTag:
	default:
		return fmt.Errorf("must be a duration such as \"10s\", got %s", kindName(n))
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML encodes d as a duration string, so a Config written back out
// decodes to the same values.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// ParseDuration parses a non-negative duration as written in a config file
// ("250ms", "10s", "1m30s", "0").
func ParseDuration(s string) (Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty duration: use a number with a unit such as \"250ms\", \"10s\" or \"1m30s\"")
	}
	v, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: use a number with a unit such as \"250ms\", \"10s\" or \"1m30s\"", s)
	}
	if v < 0 {
		return 0, fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	return Duration(v), nil
}

// ByteSize is an amount of bytes. In the file it is a whole number of bytes
// (512) or a string with a unit: "B"; binary "KiB", "MiB", "GiB", "TiB"
// (powers of 1024); or decimal "KB", "MB", "GB", "TB" (powers of 1000), for
// example "64KiB", "10MiB" or "10MB". Units are case-insensitive and may be
// separated from the number by a space. Negative sizes are rejected.
type ByteSize int64

// Int64 returns the size in bytes.
func (b ByteSize) Int64() int64 { return int64(b) }

// String formats b in the largest binary unit that divides it exactly, e.g.
// "64KiB", or in bytes, e.g. "1000".
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.mult == 0 {
			return strconv.FormatInt(int64(b)/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(int64(b), 10)
}

// UnmarshalYAML decodes a byte count or a size string from a YAML scalar.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("must be a size such as 65536 or \"64KiB\", got %s", kindName(n))
	}
	switch n.ShortTag() {
	case nullTag:
		*b = 0
		return nil
	case intTag:
		var v int64
		if err := n.Decode(&v); err != nil {
			return fmt.Errorf("invalid size %s: too large", n.Value)
		}
		if v < 0 {
			return fmt.Errorf("invalid size %s: must not be negative", n.Value)
		}
		*b = ByteSize(v)
		return nil
	case strTag:
	default:
		return fmt.Errorf("must be a size such as 65536 or \"64KiB\", got %s", kindName(n))
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML encodes b as a size string or byte count, so a Config written
// back out decodes to the same values.
func (b ByteSize) MarshalYAML() (any, error) {
	s := b.String()
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	return s, nil
}

// byteUnits maps a lowercase unit to its multiplier.
var byteUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"tb":  1000 * 1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
	"tib": 1 << 40,
}

// ParseByteSize parses a non-negative size as written in a config file
// ("512", "64KiB", "10MiB", "10MB").
func ParseByteSize(s string) (ByteSize, error) {
	const hint = `use bytes or a whole number with a unit such as "64KiB", "10MiB" or "10MB"`
	t := strings.TrimSpace(s)
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("invalid size %q: must not be negative", s)
	}
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("invalid size %q: %s", s, hint)
	}
	mult, ok := byteUnits[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("invalid size %q: %s", s, hint)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return ByteSize(n * mult), nil
}

// YAML core schema tags, as reported by yaml.Node.ShortTag.
const (
	nullTag  = "!!null"
	boolTag  = "!!bool"
	intTag   = "!!int"
	floatTag = "!!float"
	strTag   = "!!str"
	mergeTag = "!!merge"
)

// kindName describes a node for "got ..." in type errors.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case nullTag:
		return "null"
	case boolTag:
		return "boolean " + n.Value
	case intTag:
		return "integer " + n.Value
	case floatTag:
		return "number " + n.Value
	case strTag:
		return strconv.Quote(n.Value)
	}
	return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
}
