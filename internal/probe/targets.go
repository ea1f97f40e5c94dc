package probe

import (
	"bufio"
	"bytes"
	"fmt"
	"math/big"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"
)

// Targets is a loaded target list: lines of "TARGET [MODULE]", where
// TARGET is a URL, host:port, a host, or a CIDR range (with an optional
// :port) expanded lazily, one target per address. It is immutable; a
// reload loads a new one.
type Targets struct {
	entries []targetEntry
	// ends[i] is the number of targets in entries[:i+1].
	ends  []uint64
	total uint64
}

type targetEntry struct {
	target string       // a single target, or "" for a range
	prefix netip.Prefix // a range
	port   string       // a range's port ("" for none)
	module string
	line   int
}

// maxRange bounds the addresses one CIDR line may expand to (a /8 of
// IPv4): a larger IPv6 range is refused rather than walked for ever.
const maxRange = 1 << 24

// Target is one target to probe.
type Target struct {
	Target, Module string
}

// LoadTargetsFile reads and checks a targets file.
func LoadTargetsFile(path, defaultModule string, mods *Modules) (*Targets, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return LoadTargets(data, path, defaultModule, mods)
}

// LoadTargets parses a target list. Blank lines and # comments are
// skipped. A line without a module uses defaultModule. Every error names
// the file and line ("targets.txt:3: unknown module \"web\""); when mods is
// nil, module names are not checked.
func LoadTargets(data []byte, filename, defaultModule string, mods *Modules) (*Targets, error) {
	t := &Targets{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var errs []string
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.Fields(text)
		if len(fields) == 0 {
			continue
		}
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Sprintf("%s:%d: %s", filename, line, fmt.Sprintf(format, args...)))
		}
		if len(fields) > 2 {
			fail("want TARGET [MODULE], got %d fields", len(fields))
			continue
		}
		e := targetEntry{module: defaultModule, line: line}
		if len(fields) == 2 {
			e.module = fields[1]
		}
		if e.module == "" {
			fail("no module (give one on the line or a default)")
			continue
		}
		if mods != nil && mods.Modules[e.module] == nil {
			fail("unknown module %q", e.module)
			continue
		}
		if err := parseTarget(fields[0], &e); err != nil {
			fail("target %q: %v", fields[0], err)
			continue
		}
		t.entries = append(t.entries, e)
		t.total += e.count()
		t.ends = append(t.ends, t.total)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Sprintf("%s:%d: %v", filename, line+1, err))
	}
	if len(errs) > 0 {
		if len(errs) > 20 {
			errs = append(errs[:20], fmt.Sprintf("… and %d more", len(errs)-20))
		}
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return t, nil
}

// parseTarget checks a target and fills e.
func parseTarget(s string, e *targetEntry) error {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return err
		}
		if u.Host == "" {
			return fmt.Errorf("no host")
		}
		e.target = s
		return nil
	}
	if strings.Contains(s, "/") {
		// A range: 10.0.0.0/24 or 10.0.0.0/24:443 or [2001:db8::/120]:443.
		pfx, port := s, ""
		if strings.HasPrefix(s, "[") {
			end := strings.Index(s, "]")
			if end < 0 {
				return fmt.Errorf("missing ]")
			}
			pfx, port = s[1:end], strings.TrimPrefix(s[end+1:], ":")
		} else if i := strings.LastIndexByte(s, ':'); i > strings.IndexByte(s, '/') && strings.Count(s, ":") == 1 {
			pfx, port = s[:i], s[i+1:]
		}
		p, err := netip.ParsePrefix(pfx)
		if err != nil {
			return err
		}
		if port != "" {
			if err := checkPort(port); err != nil {
				return err
			}
		}
		e.prefix, e.port = p.Masked(), port
		if bits := p.Addr().BitLen() - p.Bits(); bits > 24 {
			return fmt.Errorf("range of 2^%d addresses (at most 2^24 per line)", bits)
		}
		return nil
	}
	host, port := s, ""
	if h, p, ok := cutHostPort(s); ok {
		host, port = h, p
		if err := checkPort(port); err != nil {
			return err
		}
	}
	if host == "" {
		return fmt.Errorf("no host")
	}
	if strings.ContainsAny(host, " \t\"'") {
		return fmt.Errorf("bad host")
	}
	e.target = s
	return nil
}

func cutHostPort(s string) (string, string, bool) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 || !strings.HasPrefix(s[end+1:], ":") {
			return strings.Trim(s, "[]"), "", false
		}
		return s[1:end], s[end+2:], true
	}
	if strings.Count(s, ":") == 1 {
		i := strings.IndexByte(s, ':')
		return s[:i], s[i+1:], true
	}
	return s, "", false
}

func checkPort(p string) error {
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return fmt.Errorf("port %q: not a number", p)
		}
		n = n*10 + int(c-'0')
		if n > 65535 {
			break
		}
	}
	if p == "" || n < 1 || n > 65535 {
		return fmt.Errorf("port %q: want 1 to 65535", p)
	}
	return nil
}

func (e *targetEntry) count() uint64 {
	if e.target != "" {
		return 1
	}
	return 1 << (e.prefix.Addr().BitLen() - e.prefix.Bits())
}

// Len is the number of targets, ranges expanded.
func (t *Targets) Len() uint64 { return t.total }

// At returns the i-th target (0 <= i < Len), expanding a range's address
// on demand: a /8 costs one line, not sixteen million strings.
func (t *Targets) At(i uint64) Target {
	k := sort.Search(len(t.ends), func(k int) bool { return t.ends[k] > i })
	e := &t.entries[k]
	if e.target != "" {
		return Target{Target: e.target, Module: e.module}
	}
	start := uint64(0)
	if k > 0 {
		start = t.ends[k-1]
	}
	a := addAddr(e.prefix.Addr(), i-start)
	s := a.String()
	if e.port != "" {
		if a.Is6() {
			s = "[" + s + "]"
		}
		s += ":" + e.port
	}
	return Target{Target: s, Module: e.module}
}

// addAddr returns a + n.
func addAddr(a netip.Addr, n uint64) netip.Addr {
	if a.Is4() {
		b := a.As4()
		v := uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
		v += n
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	b := a.As16()
	x := new(big.Int).SetBytes(b[:])
	x.Add(x, new(big.Int).SetUint64(n))
	x.FillBytes(b[:])
	return netip.AddrFrom16(b)
}
