package epoll

import "testing"

func TestTable(t *testing.T) {
	var tab table[int]
	tests := []struct {
		name string
		fd   int
		ok   bool
	}{
		{name: "zero", fd: 0, ok: true},
		{name: "first page", fd: 1023, ok: true},
		{name: "second page", fd: 1024, ok: true},
		{name: "last", fd: 1<<20 - 1, ok: true},
		{name: "beyond", fd: 1 << 20, ok: false},
		{name: "negative", fd: -1, ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tab.slot(tt.fd)
			if (s != nil) != tt.ok {
				t.Fatalf("slot(%d) = %v, want ok = %v", tt.fd, s, tt.ok)
			}
			if s == nil {
				return
			}
			v := tt.fd
			s.Store(&v)
			if got := tab.slot(tt.fd).Load(); got != &v {
				t.Fatalf("slot(%d) does not keep what was stored", tt.fd)
			}
		})
	}
}
