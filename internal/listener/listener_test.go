package listener_test

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/listener"
)

func TestParseTrusted(t *testing.T) {
	tests := []struct {
		name    string
		entries []string
		want    []string // prefixes, in order
		wantErr string   // substring of the error
	}{
		{name: "none", entries: nil, want: nil},
		{name: "IPv4 CIDR", entries: []string{"10.0.0.0/8"}, want: []string{"10.0.0.0/8"}},
		{name: "CIDR with host bits is masked", entries: []string{"10.1.2.3/8"}, want: []string{"10.0.0.0/8"}},
		{name: "single IPv4 address", entries: []string{"192.168.1.7"}, want: []string{"192.168.1.7/32"}},
		{name: "single IPv6 address", entries: []string{"::1"}, want: []string{"::1/128"}},
		{name: "IPv6 CIDR", entries: []string{"2001:db8::/32"}, want: []string{"2001:db8::/32"}},
		{name: "several, in order", entries: []string{"127.0.0.1", "fd00::/8"}, want: []string{"127.0.0.1/32", "fd00::/8"}},
		{name: "prefix too long", entries: []string{"10.0.0.0/33"}, wantErr: `trusted_proxies[0]: "10.0.0.0/33"`},
		{name: "not an address", entries: []string{"10.0.0.1", "proxy.internal"}, wantErr: `trusted_proxies[1]: "proxy.internal"`},
		{name: "empty entry", entries: []string{""}, wantErr: "trusted_proxies[0]"},
		{name: "address with port", entries: []string{"10.0.0.1:80"}, wantErr: "neither an address nor a CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := listener.ParseTrusted(tt.entries)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTrusted error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTrusted: %v", err)
			}
			var got []string
			for _, p := range s {
				got = append(got, p.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParseTrusted = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTrustedSetContains(t *testing.T) {
	s, err := listener.ParseTrusted([]string{"10.0.0.0/8", "192.168.1.7", "::1", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		addr netip.Addr
		want bool
	}{
		{name: "inside an IPv4 CIDR", addr: netip.MustParseAddr("10.20.30.40"), want: true},
		{name: "outside every entry", addr: netip.MustParseAddr("11.0.0.1"), want: false},
		{name: "the single IPv4 address", addr: netip.MustParseAddr("192.168.1.7"), want: true},
		{name: "next to the single IPv4 address", addr: netip.MustParseAddr("192.168.1.8"), want: false},
		{name: "IPv6 loopback", addr: netip.MustParseAddr("::1"), want: true},
		{name: "inside an IPv6 CIDR", addr: netip.MustParseAddr("2001:db8:1::5"), want: true},
		{name: "outside the IPv6 CIDR", addr: netip.MustParseAddr("2001:db9::1"), want: false},
		// A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
		{name: "IPv4-mapped IPv6 inside an IPv4 CIDR", addr: netip.MustParseAddr("::ffff:10.1.1.1"), want: true},
		{name: "IPv4-mapped IPv6 of the single address", addr: netip.MustParseAddr("::ffff:192.168.1.7"), want: true},
		{name: "IPv4-mapped IPv6 outside", addr: netip.MustParseAddr("::ffff:11.0.0.1"), want: false},
		{name: "invalid address", addr: netip.Addr{}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Contains(tt.addr); got != tt.want {
				t.Errorf("Contains(%v) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestTrustedSetWrittenAsIPv4MappedIPv6(t *testing.T) {
	s, err := listener.ParseTrusted([]string{"::ffff:10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.0.0.1", "::ffff:10.0.0.1"} {
		if !s.Contains(netip.MustParseAddr(a)) {
			t.Errorf("Contains(%s) = false for a set written as ::ffff:10.0.0.1", a)
		}
	}
}

func TestEmptyTrustedSetContainsNothing(t *testing.T) {
	var s listener.TrustedSet
	if s.Contains(netip.MustParseAddr("127.0.0.1")) {
		t.Error("an empty set trusts 127.0.0.1")
	}
}

func TestListen(t *testing.T) {
	ctx := context.Background()
	ln, err := listener.Listen(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	defer ln.Close()
	addr := ln.Addr().String()

	// The socket accepts connections.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	c.Close()

	tests := []struct {
		name    string
		address string
		want    []string
	}{
		{name: "port in use", address: addr, want: []string{"listen " + addr, "another process"}},
		{name: "not an address", address: "127.0.0.1", want: []string{"listen 127.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln2, err := listener.Listen(ctx, tt.address)
			if err == nil {
				ln2.Close()
				t.Fatalf("Listen(%q) succeeded, want an error", tt.address)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
