package fleet

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// DefaultPort is etcd's client port (IANA-registered), used when a URL
// names a host without one.
const DefaultPort = "2379"

// Target is a parsed etcd://HOST:PORT[,HOST:PORT...]/PREFIX: the cluster's
// client endpoints and the key prefix under which one fleet keeps its
// configuration (PREFIX/config) and its node registrations (PREFIX/nodes/).
type Target struct {
	// Endpoints are the members to dial, as host:port.
	Endpoints []string
	// Prefix is the key prefix: starts with "/", no trailing "/".
	Prefix string
}

// ParseURL parses an etcd configuration source:
//
//	etcd://127.0.0.1:2379/penstock
//	etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/prod/edge
//	etcd://[::1]:2379/penstock
//
// The port defaults to 2379. The prefix is required (several fleets can
// share one cluster) and is kept with its leading "/"; a trailing "/" is
// dropped. Credentials, query strings and fragments are refused rather than
// ignored: etcd authentication and TLS are not supported in the URL.
func ParseURL(s string) (Target, error) {
	var t Target
	rest, ok := strings.CutPrefix(s, "etcd://")
	if !ok {
		if scheme, _, found := strings.Cut(s, "://"); found {
			return t, fmt.Errorf("config source %q: unsupported scheme %q (want etcd://HOST:PORT/PREFIX)", s, scheme)
		}
		return t, fmt.Errorf("config source %q: want etcd://HOST:PORT/PREFIX", s)
	}
	hosts, path, _ := strings.Cut(rest, "/")
	path = "/" + path
	if strings.ContainsAny(hosts, "@") {
		return t, fmt.Errorf("config source %q: credentials in the URL are not supported", s)
	}
	if strings.ContainsAny(path, "?#") {
		return t, fmt.Errorf("config source %q: a query or fragment is not supported", s)
	}
	if hosts == "" {
		return t, fmt.Errorf("config source %q: no host (want etcd://HOST:PORT/PREFIX)", s)
	}
	for h := range strings.SplitSeq(hosts, ",") {
		ep, err := endpoint(h)
		if err != nil {
			return t, fmt.Errorf("config source %q: %w", s, err)
		}
		t.Endpoints = append(t.Endpoints, ep)
	}
	prefix := strings.TrimRight(path, "/")
	if prefix == "" {
		return t, fmt.Errorf("config source %q: no key prefix (want etcd://HOST:PORT/PREFIX, e.g. etcd://127.0.0.1:2379/penstock)", s)
	}
	if strings.Contains(prefix, "//") {
		return t, fmt.Errorf("config source %q: key prefix %q has an empty segment", s, prefix)
	}
	for _, r := range prefix {
		if r < 0x21 || r == 0x7f {
			return t, fmt.Errorf("config source %q: key prefix %q holds a space or control character", s, prefix)
		}
	}
	if p, err := url.PathUnescape(prefix); err != nil || p != prefix {
		return t, fmt.Errorf("config source %q: key prefix %q must be written as is, not percent-encoded", s, prefix)
	}
	t.Prefix = prefix
	return t, nil
}

// endpoint checks one host[:port] of the URL and adds the default port.
func endpoint(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty host in the endpoint list")
	}
	host, port, err := net.SplitHostPort(h)
	if err != nil {
		// No port: a bare name, IPv4 address, or bracketed IPv6 address.
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			host, port = h[1:len(h)-1], DefaultPort
		} else if !strings.ContainsAny(h, ":[]") {
			host, port = h, DefaultPort
		} else {
			return "", fmt.Errorf("bad endpoint %q: want HOST:PORT", h)
		}
	}
	if host == "" {
		return "", fmt.Errorf("bad endpoint %q: no host", h)
	}
	if strings.ContainsAny(host, " /%") {
		return "", fmt.Errorf("bad endpoint %q: invalid host", h)
	}
	if (strings.HasPrefix(h, "[") || strings.Contains(host, ":")) && (net.ParseIP(host) == nil || !strings.Contains(host, ":")) {
		return "", fmt.Errorf("bad endpoint %q: invalid IPv6 address", h)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
		return "", fmt.Errorf("bad endpoint %q: port %q is not a number from 1 to 65535", h, port)
	}
	return net.JoinHostPort(host, port), nil
}

// String is the URL again, in its canonical form.
func (t Target) String() string {
	return "etcd://" + strings.Join(t.Endpoints, ",") + t.Prefix
}

// ConfigKey is the key holding the whole configuration document.
func (t Target) ConfigKey() string { return t.Prefix + "/config" }

// MetaKey holds who pushed the configuration, when, and its digest; it is
// written in the same transaction as ConfigKey, so both share a revision.
func (t Target) MetaKey() string { return t.Prefix + "/config.meta" }

// NodesPrefix is where the nodes register, one lease-bound key each.
func (t Target) NodesPrefix() string { return t.Prefix + "/nodes/" }

// NodeKey is the key node id registers.
func (t Target) NodeKey(id string) string { return t.NodesPrefix() + id }
