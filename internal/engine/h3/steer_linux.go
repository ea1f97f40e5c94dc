package h3

import (
	"fmt"
	"syscall"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Indexes in the port's reuseport group: the old process's socket joined
// first, this one second. (An upgrade started while an older process still
// drains finds more sockets; its new connections then go by the kernel's
// hash, as without steering.)
const (
	oldIndex = 0
	newIndex = 1
)

// steerProgram returns the classic BPF program, run by the kernel on each
// datagram with the UDP payload at offset 0, that returns the index of the
// socket to deliver it to: oldIndex for a destination connection ID marked
// with another generation than gen, newIndex otherwise. An index past the
// group's end (the old socket closed, this one moved to index 0) makes the
// kernel fall back to its hash, over the one socket left.
func steerProgram(gen byte) ([]bpf.RawInstruction, error) {
	// Short header (RFC 9000 §17.3): the first byte's top bit is clear and
	// the destination connection ID follows it. Long header (§17.2): byte 5
	// is the destination connection ID's length and the ID follows.
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: 0, Size: 1},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x80, SkipFalse: 4}, // short header: 6
		/* 2 */ bpf.LoadAbsolute{Off: 5, Size: 1},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: cidLen, SkipFalse: 9}, // not one of ours: 13
		/* 4 */ bpf.LoadAbsolute{Off: 6, Size: 2},
		/* 5 */ bpf.Jump{Skip: 1},
		/* 6 */ bpf.LoadAbsolute{Off: 1, Size: 2},
		// A = the connection ID's first two bytes: marker and generation.
		/* 7 */ bpf.TAX{},
		/* 8 */ bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 8},
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: cidMagic, SkipFalse: 3}, // unmarked: 13
		/* 10 */ bpf.TXA{},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(cidMagic)<<8 | uint32(gen), SkipTrue: 1},
		/* 12 */ bpf.RetConstant{Val: oldIndex},
		/* 13 */ bpf.RetConstant{Val: newIndex},
	}
	return bpf.Assemble(prog)
}

// steer attaches the steering program to the reuseport group of c's
// socket, in a process that replaced another.
func steer(c syscall.RawConn) error {
	if !upgraded {
		return nil
	}
	raw, err := steerProgram(generation)
	if err != nil {
		return err
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &prog)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_ATTACH_REUSEPORT_CBPF: %w", serr)
	}
	return nil
}
