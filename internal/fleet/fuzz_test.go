package fleet_test

import (
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/fleet"
)

// FuzzParseURL checks that no input makes the URL parser panic, that what it
// accepts is well formed, and that its canonical form parses to itself.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"etcd://127.0.0.1:2379/penstock", "etcd://a,b:1/p/", "etcd://[::1]/p", "etcd://h:0/p",
		"etcd://u@h/p", "etcd:///", "etcd://h/p?q#f", "http://x/y", "etcd://[::1/p", "etcd://h:2379/a%2fb",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := fleet.ParseURL(s)
		if err != nil {
			return
		}
		if len(tg.Endpoints) == 0 || !strings.HasPrefix(tg.Prefix, "/") || strings.HasSuffix(tg.Prefix, "/") {
			t.Fatalf("ParseURL(%q) accepted a malformed target %+v", s, tg)
		}
		again, err := fleet.ParseURL(tg.String())
		if err != nil || again.String() != tg.String() {
			t.Fatalf("ParseURL(%q).String() = %q does not parse back: %v", s, tg.String(), err)
		}
	})
}
