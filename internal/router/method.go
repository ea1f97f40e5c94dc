package router

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// MaxMethods is the most distinct request methods one router can name
// across all its routes.
const MaxMethods = 63

// otherMethod is the bit a request method not named by any route gets; only
// any-method routes (all bits set) match it.
const otherMethod = uint64(1) << 63

// anyMethod is the method set of a route with no Methods.
const anyMethod = ^uint64(0)

// standardMethods fixes the order of methods in Allow headers: RFC 9110
// section 9 methods first, PATCH (RFC 5789) after PUT, others alphabetical.
var standardMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}

// isTokenChar reports whether c is a tchar (RFC 9110 section 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// validateMethods checks Spec.Methods and returns them without duplicates.
func validateMethods(ms []string) ([]string, error) {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		if !isToken(m) {
			return nil, fmt.Errorf("method %q: not an RFC 9110 token", m)
		}
		// Methods are case-sensitive (RFC 9110 section 9.1); a lowercase
		// "get" would never match a real GET, so reject it.
		if strings.ToUpper(m) != m {
			return nil, fmt.Errorf("method %q: must be uppercase", m)
		}
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out, nil
}

// methodSet numbers the methods a router knows and renders Allow values.
type methodSet struct {
	names []string // bit i is names[i]
	// std[i] is the bit of standardMethods[i], or otherMethod if no
	// route names it.
	std [9]uint64
	// table holds the Allow value for every mask when there are few
	// methods (the usual case), so 405 answers never build a string.
	table []string
	// lazy caches Allow values when there are too many methods for table;
	// it is copy-on-write so readers take no lock.
	lazy   atomic.Pointer[map[uint64]string]
	lazyMu sync.Mutex
}

// eagerAllowMethods bounds the eager Allow table at 2^10 strings.
const eagerAllowMethods = 10

func newMethodSet(used []string) (*methodSet, error) {
	var names []string
	for _, m := range standardMethods {
		if slices.Contains(used, m) {
			names = append(names, m)
		}
	}
	var other []string
	for _, m := range used {
		if !slices.Contains(standardMethods, m) && !slices.Contains(other, m) {
			other = append(other, m)
		}
	}
	slices.Sort(other)
	names = append(names, other...)
	if len(names) > MaxMethods {
		return nil, fmt.Errorf("routes name %d distinct methods; at most %d are supported", len(names), MaxMethods)
	}
	s := &methodSet{names: names}
	for i, m := range standardMethods {
		s.std[i] = otherMethod
		if j := slices.Index(names, m); j >= 0 {
			s.std[i] = 1 << j
		}
	}
	if len(names) <= eagerAllowMethods {
		s.table = make([]string, 1<<len(names))
		for mask := range s.table {
			s.table[mask] = s.render(uint64(mask))
		}
	} else {
		s.lazy.Store(&map[uint64]string{})
	}
	return s, nil
}

// bit returns the bit of request method m. GET, by far the most common,
// is tested here so that this much inlines into the lookup.
func (s *methodSet) bit(m string) uint64 {
	if m == "GET" {
		return s.std[0]
	}
	return s.otherStd(m)
}

// otherStd is bit for methods other than GET. The switch on standard
// methods compiles to inline length and word compares; other methods take a
// linear scan, which beats a map for the handful of methods routers name.
func (s *methodSet) otherStd(m string) uint64 {
	switch m {
	case "GET":
		return s.std[0]
	case "HEAD":
		return s.std[1]
	case "POST":
		return s.std[2]
	case "PUT":
		return s.std[3]
	case "PATCH":
		return s.std[4]
	case "DELETE":
		return s.std[5]
	case "CONNECT":
		return s.std[6]
	case "OPTIONS":
		return s.std[7]
	case "TRACE":
		return s.std[8]
	}
	return s.otherBit(m)
}

// otherBit is bit for methods outside standardMethods.
func (s *methodSet) otherBit(m string) uint64 {
	for i, n := range s.names {
		if n == m {
			return 1 << i
		}
	}
	return otherMethod
}

// mask returns the method set of a route's methods.
func (s *methodSet) mask(ms []string) uint64 {
	if len(ms) == 0 {
		return anyMethod
	}
	var m uint64
	for _, name := range ms {
		m |= s.bit(name)
	}
	return m
}

func (s *methodSet) render(mask uint64) string {
	var b strings.Builder
	for i, n := range s.names {
		if mask&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(n)
		}
	}
	return b.String()
}

// allow returns the Allow header value for mask.
func (s *methodSet) allow(mask uint64) string {
	mask &^= otherMethod
	if s.table != nil {
		return s.table[mask]
	}
	if v, ok := (*s.lazy.Load())[mask]; ok {
		return v
	}
	// More than eagerAllowMethods methods: build once per distinct mask.
	s.lazyMu.Lock()
	defer s.lazyMu.Unlock()
	old := *s.lazy.Load()
	if v, ok := old[mask]; ok {
		return v
	}
	v := s.render(mask)
	next := make(map[uint64]string, len(old)+1)
	for k, x := range old {
		next[k] = x
	}
	next[mask] = v
	s.lazy.Store(&next)
	return v
}
