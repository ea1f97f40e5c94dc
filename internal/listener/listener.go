package listener

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Listen binds a TCP socket for a listener address. The error names the
// address and says what to check for the common causes.
func Listen(ctx context.Context, address string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", address)
	if err != nil {
		hint := ""
		switch {
		case strings.Contains(err.Error(), "address already in use"):
			hint = " (another process holds the port; choose another address)"
		case strings.Contains(err.Error(), "permission denied"):
			hint = " (ports below 1024 need CAP_NET_BIND_SERVICE)"
		}
		return nil, fmt.Errorf("listen %s: %w%s", address, err, hint)
	}
	return ln, nil
}

// TrustedSet is a listener's trusted_proxies, parsed once.
type TrustedSet []netip.Prefix

// ParseTrusted parses CIDRs and single addresses.
func ParseTrusted(entries []string) (TrustedSet, error) {
	var s TrustedSet
	for i, e := range entries {
		// Peers are compared unmapped (Contains), so IPv4-mapped IPv6
		// entries ("::ffff:10.0.0.0/104") are stored as the IPv4 they mean.
		if p, err := netip.ParsePrefix(e); err == nil {
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
			s = append(s, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("trusted_proxies[%d]: %q is neither an address nor a CIDR", i, e)
		}
		a = a.Unmap()
		s = append(s, netip.PrefixFrom(a, a.BitLen()))
	}
	return s, nil
}

// Contains reports whether a is in the set.
func (s TrustedSet) Contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
