package h3

import (
	"testing"

	"golang.org/x/net/bpf"
)

// The steering program sends a datagram to the old process's socket only
// when its destination connection ID carries another generation's marker.
func TestSteerProgram(t *testing.T) {
	const gen = 7
	short := func(cid ...byte) []byte { return append([]byte{0x40}, append(cid, 1, 2, 3, 4)...) }
	long := func(cid ...byte) []byte {
		b := []byte{0xc0, 0, 0, 0, 1, byte(len(cid))}
		return append(append(b, cid...), 0, 0, 0)
	}
	tests := []struct {
		name   string
		packet []byte
		want   int
	}{
		{"short header, this generation", short(cidMagic, gen, 1, 2, 3, 4, 5, 6), newIndex},
		{"short header, the old generation", short(cidMagic, gen-1, 1, 2, 3, 4, 5, 6), oldIndex},
		{"short header, no marker", short(0x11, gen-1, 1, 2, 3, 4, 5, 6), newIndex},
		{"initial with a client-chosen connection ID", long(0x3a, 0x01, 2, 3, 4, 5, 6, 7), newIndex},
		{"initial with a longer client-chosen connection ID", long(cidMagic, gen-1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11), newIndex},
		{"handshake packet to the old generation", long(cidMagic, gen-1, 2, 3, 4, 5, 6, 7), oldIndex},
		{"handshake packet to this generation", long(cidMagic, gen, 2, 3, 4, 5, 6, 7), newIndex},
	}
	raw, err := steerProgram(gen)
	if err != nil {
		t.Fatal(err)
	}
	prog, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the program does not disassemble")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := vm.Run(tc.packet)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("socket %d, want %d", got, tc.want)
			}
		})
	}
}

// Connection IDs carry the marker and this process's generation.
func TestConnIDs(t *testing.T) {
	a, err := connIDs{}.GenerateConnectionID()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := connIDs{}.GenerateConnectionID()
	if a.Len() != cidLen || a.Bytes()[0] != cidMagic || a.Bytes()[1] != generation {
		t.Fatalf("connection ID %x: want %d bytes starting %02x%02x", a.Bytes(), cidLen, cidMagic, generation)
	}
	if a == b {
		t.Fatal("two connection IDs are equal")
	}
}
