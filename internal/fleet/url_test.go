package fleet_test

import (
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/fleet"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		endpoints []string
		prefix    string
		err       string
	}{
		{name: "host port prefix", in: "etcd://127.0.0.1:2379/penstock", endpoints: []string{"127.0.0.1:2379"}, prefix: "/penstock"},
		{name: "default port", in: "etcd://etcd.internal/penstock", endpoints: []string{"etcd.internal:2379"}, prefix: "/penstock"},
		{name: "nested prefix, trailing slash dropped", in: "etcd://h:1/prod/edge/", endpoints: []string{"h:1"}, prefix: "/prod/edge"},
		{name: "cluster", in: "etcd://a:2379,b:2380,c/p", endpoints: []string{"a:2379", "b:2380", "c:2379"}, prefix: "/p"},
		{name: "ipv6", in: "etcd://[::1]:2379/p", endpoints: []string{"[::1]:2379"}, prefix: "/p"},
		{name: "ipv6 default port", in: "etcd://[::1]/p", endpoints: []string{"[::1]:2379"}, prefix: "/p"},
		{name: "other scheme", in: "http://127.0.0.1:2379/p", err: `unsupported scheme "http"`},
		{name: "no scheme", in: "127.0.0.1:2379/p", err: "want etcd://HOST:PORT/PREFIX"},
		{name: "empty", in: "", err: "want etcd://HOST:PORT/PREFIX"},
		{name: "no prefix", in: "etcd://127.0.0.1:2379", err: "no key prefix"},
		{name: "root prefix", in: "etcd://127.0.0.1:2379/", err: "no key prefix"},
		{name: "no host", in: "etcd:///penstock", err: "no host"},
		{name: "empty endpoint", in: "etcd://a:1,,b:2/p", err: "empty host"},
		{name: "port not a number", in: "etcd://h:port/p", err: `port "port" is not a number`},
		{name: "port out of range", in: "etcd://h:70000/p", err: `port "70000" is not a number from 1 to 65535`},
		{name: "port zero", in: "etcd://h:0/p", err: `port "0"`},
		{name: "empty port", in: "etcd://h:/p", err: `port ""`},
		{name: "credentials", in: "etcd://user:pw@h:2379/p", err: "credentials in the URL are not supported"},
		{name: "query", in: "etcd://h:2379/p?x=1", err: "query or fragment"},
		{name: "fragment", in: "etcd://h:2379/p#x", err: "query or fragment"},
		{name: "empty segment", in: "etcd://h:2379/a//b", err: "empty segment"},
		{name: "space in prefix", in: "etcd://h:2379/a b", err: "space or control character"},
		{name: "percent-encoded", in: "etcd://h:2379/a%20b", err: "percent-encoded"},
		{name: "bad ipv6", in: "etcd://[zz]:1/p", err: "invalid IPv6"},
		{name: "colon soup", in: "etcd://a:b:c/p", err: "want HOST:PORT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fleet.ParseURL(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseURL(%q) error = %v, want one containing %q", tt.in, err, tt.err)
				}
				if !strings.Contains(err.Error(), "config source") {
					t.Errorf("error %q does not say it is about the config source", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseURL(%q): %v", tt.in, err)
			}
			if strings.Join(got.Endpoints, ",") != strings.Join(tt.endpoints, ",") || got.Prefix != tt.prefix {
				t.Errorf("ParseURL(%q) = %v %q, want %v %q", tt.in, got.Endpoints, got.Prefix, tt.endpoints, tt.prefix)
			}
			// The canonical form parses to the same target.
			again, err := fleet.ParseURL(got.String())
			if err != nil || again.String() != got.String() {
				t.Errorf("String() %q does not parse back: %v %v", got.String(), again, err)
			}
			if got.ConfigKey() != tt.prefix+"/config" || got.NodeKey("n1") != tt.prefix+"/nodes/n1" {
				t.Errorf("keys %q %q", got.ConfigKey(), got.NodeKey("n1"))
			}
		})
	}
}

func TestCheckNodeID(t *testing.T) {
	for _, ok := range []string{"gw-1", "host.example.com", "a_b:9901"} {
		if err := fleet.CheckNodeID(ok); err != nil {
			t.Errorf("CheckNodeID(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a b", strings.Repeat("x", 129)} {
		if err := fleet.CheckNodeID(bad); err == nil {
			t.Errorf("CheckNodeID(%q) accepted", bad)
		}
	}
}
