package probe

import (
	"strings"
	"testing"
)

func TestLoadTargets(t *testing.T) {
	mods := modules(t, "modules:\n  tcp: {prober: tcp}\n  web: {prober: http}\n")
	text := `# comment
http://127.0.0.1:8080/healthz web
127.0.0.1:22            # default module
[::1]:443 tcp
10.1.2.0/30:443
192.0.2.254/31
[2001:db8::/126]:80 tcp
localhost:9
`
	tg, err := LoadTargets([]byte(text), "t.txt", "tcp", mods)
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{
		{"http://127.0.0.1:8080/healthz", "web"}, {"127.0.0.1:22", "tcp"}, {"[::1]:443", "tcp"},
		{"10.1.2.0:443", "tcp"}, {"10.1.2.1:443", "tcp"}, {"10.1.2.2:443", "tcp"}, {"10.1.2.3:443", "tcp"},
		{"192.0.2.254", "tcp"}, {"192.0.2.255", "tcp"},
		{"[2001:db8::]:80", "tcp"}, {"[2001:db8::1]:80", "tcp"}, {"[2001:db8::2]:80", "tcp"}, {"[2001:db8::3]:80", "tcp"},
		{"localhost:9", "tcp"},
	}
	if tg.Len() != uint64(len(want)) {
		t.Fatalf("Len %d, want %d", tg.Len(), len(want))
	}
	for i, w := range want {
		if got := tg.At(uint64(i)); got != w {
			t.Errorf("At(%d) = %v, want %v", i, got, w)
		}
	}
}

// A /8 is one line, not sixteen million strings.
func TestLoadTargetsLargeRange(t *testing.T) {
	tg, err := LoadTargets([]byte("10.0.0.0/8:80\n"), "t.txt", "tcp", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tg.Len() != 1<<24 || tg.At(1<<24-1).Target != "10.255.255.255:80" || tg.At(256).Target != "10.0.1.0:80" {
		t.Fatalf("len %d last %v", tg.Len(), tg.At(1<<24-1))
	}
}

func TestLoadTargetsErrors(t *testing.T) {
	mods := modules(t, "modules:\n  tcp: {prober: tcp}\n")
	for _, c := range []struct{ name, text, want string }{
		{"unknown module", "127.0.0.1:1 web\n", `t.txt:1: unknown module "web"`},
		{"too many fields", "\n127.0.0.1:1 tcp extra\n", "t.txt:2: want TARGET [MODULE], got 3 fields"},
		{"bad port", "127.0.0.1:99999\n", `t.txt:1: target "127.0.0.1:99999": port "99999": want 1 to 65535`},
		{"bad range", "10.0.0.0/33\n", `t.txt:1: target "10.0.0.0/33"`},
		{"range too large", "2001:db8::/64\n", "at most 2^24 per line"},
		{"url without host", "http:///x\n", "no host"},
		{"no module", "127.0.0.1:1\n", "no module"},
	} {
		t.Run(c.name, func(t *testing.T) {
			def := "tcp"
			if c.name == "no module" {
				def = ""
			}
			_, err := LoadTargets([]byte(c.text), "t.txt", def, mods)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

func FuzzLoadTargets(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:80\n", "http://example.org/ web\n", "10.0.0.0/30:443 tcp\n", "[2001:db8::/126]:80\n",
		"# only a comment\n", "a b c\n", "[::1\n", "0.0.0.0/0\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		tg, err := LoadTargets([]byte(text), "fuzz.txt", "tcp", nil)
		if err != nil {
			return
		}
		// Every target the list holds can be read back.
		n := tg.Len()
		for _, i := range []uint64{0, n / 2, n - 1} {
			if i < n {
				if got := tg.At(i); got.Target == "" || got.Module == "" {
					t.Fatalf("At(%d) = %+v", i, got)
				}
			}
		}
	})
}
