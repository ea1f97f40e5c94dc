// Command netem joins two network namespaces with a link that delays and
// drops packets, for the lossy-network benchmark.
//
// Linux's own emulator (the netem queueing discipline) is the usual tool,
// but it is a kernel module that small VM kernels often leave out. This
// program does the same job in user space: it creates a TUN device in each
// namespace, reads every IP packet one side sends, drops it with the given
// probability, and writes it into the other side after the given one-way
// delay. Both TCP and QUIC see a real lossy path, with their own congestion
// control and retransmission, because packets (not streams) are dropped.
//
//	netem -ns-a client -ns-b server -addr-a 10.77.0.1 -addr-b 10.77.0.2 \
//	      -delay 10ms -loss 0.01 -for 5m
//
// It configures the addresses itself (with `ip`), prints "ready" when the
// link is up, and exits after -for or on SIGINT/SIGTERM, when the devices go
// away with their file descriptors.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	nsA := flag.String("ns-a", "", "network namespace of side A (required)")
	nsB := flag.String("ns-b", "", "network namespace of side B (required)")
	addrA := flag.String("addr-a", "10.77.0.1", "IPv4 address of side A")
	addrB := flag.String("addr-b", "10.77.0.2", "IPv4 address of side B")
	delay := flag.Duration("delay", 0, "one-way delay added to every packet (RTT is twice this)")
	loss := flag.Float64("loss", 0, "probability that a packet is dropped, per direction (0.01 = 1%)")
	lifetime := flag.Duration("for", 10*time.Minute, "exit after this long (the link never outlives it)")
	flag.Parse()
	if *nsA == "" || *nsB == "" || *loss < 0 || *loss >= 1 || *delay < 0 {
		fmt.Fprintln(os.Stderr, "netem: -ns-a and -ns-b are required; -loss must be in [0,1); -delay ≥ 0")
		os.Exit(2)
	}
	ta, err := tunIn(*nsA, "pstun-a")
	if err != nil {
		fail(err)
	}
	tb, err := tunIn(*nsB, "pstun-b")
	if err != nil {
		fail(err)
	}
	for _, c := range [][]string{
		{"-n", *nsA, "addr", "add", *addrA + "/32", "peer", *addrB, "dev", "pstun-a"},
		{"-n", *nsB, "addr", "add", *addrB + "/32", "peer", *addrA, "dev", "pstun-b"},
		{"-n", *nsA, "link", "set", "pstun-a", "up"},
		{"-n", *nsB, "link", "set", "pstun-b", "up"},
		{"-n", *nsA, "link", "set", "lo", "up"},
		{"-n", *nsB, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			fail(fmt.Errorf("ip %v: %v: %s", c, err, out))
		}
	}
	var dropped, passed atomic.Int64
	go pump(ta, tb, *delay, *loss, &passed, &dropped)
	go pump(tb, ta, *delay, *loss, &passed, &dropped)
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case <-time.After(*lifetime):
	}
	fmt.Fprintf(os.Stderr, "netem: %d packets passed, %d dropped\n", passed.Load(), dropped.Load())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "netem:", err)
	os.Exit(1)
}

// tunIn creates a TUN device named name inside network namespace ns and
// returns it open. The calling thread enters the namespace only for the
// create and returns to its own afterwards.
func tunIn(ns, name string) (*os.File, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, err
	}
	defer self.Close()
	target, err := os.Open("/run/netns/" + ns)
	if err != nil {
		return nil, fmt.Errorf("namespace %q: %w", ns, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("enter namespace %q: %w", ns, err)
	}
	defer unix.Setns(int(self.Fd()), unix.CLONE_NEWNET)

	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	// struct ifreq: 16-byte name, then the flags.
	var ifr [40]byte
	copy(ifr[:unix.IFNAMSIZ-1], name)
	*(*uint16)(unsafe.Pointer(&ifr[unix.IFNAMSIZ])) = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); errno != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, errno)
	}
	return os.NewFile(uintptr(fd), name), nil
}

type packet struct {
	due  time.Time
	data []byte
}

// pump moves packets from src to dst, dropping a share of them and holding
// each for the delay. The delay is the same for every packet, so a FIFO
// keeps them in order (netem's default without jitter).
func pump(src, dst *os.File, delay time.Duration, loss float64, passed, dropped *atomic.Int64) {
	q := make(chan packet, 1<<16)
	go func() {
		for p := range q {
			if d := time.Until(p.due); d > 0 {
				time.Sleep(d)
			}
			dst.Write(p.data)
		}
	}()
	buf := make([]byte, 65536)
	for {
		n, err := src.Read(buf)
		if err != nil {
			fail(err)
		}
		if loss > 0 && rand.Float64() < loss {
			dropped.Add(1)
			continue
		}
		passed.Add(1)
		select {
		case q <- packet{due: time.Now().Add(delay), data: append([]byte(nil), buf[:n]...)}:
		default:
			dropped.Add(1) // queue full: a router's tail drop
		}
	}
}
