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
// away with their file descriptors. On exit it prints to stderr how many
// packets it passed and dropped, and how late it delivered them: its own
// error on top of -delay, to judge whether the link or the machine limited a
// measurement.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync"
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
	rt := flag.Bool("rt", true, "run the packet threads at real-time priority (SCHED_FIFO) when allowed")
	lifetime := flag.Duration("for", 10*time.Minute, "exit after this long (the link never outlives it)")
	flag.Parse()
	if *nsA == "" || *nsB == "" || *loss < 0 || *loss >= 1 || *delay < 0 {
		fmt.Fprintln(os.Stderr, "netem: -ns-a and -ns-b are required; -loss must be in [0,1); -delay ≥ 0")
		os.Exit(2)
	}
	// Each of the four packet threads (a reader and a writer per direction)
	// needs a P to run Go code when its system call returns. With no more Ps
	// than cores, a P may be held by a normal-priority thread that the kernel
	// has descheduled on a busy machine, and the real-time thread waits for
	// it: enough Ps for all of them avoids that inversion.
	runtime.GOMAXPROCS(max(runtime.NumCPU(), 4) + 4)
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
	var st stats
	go pump(ta, tb, *delay, *loss, *rt, &st)
	go pump(tb, ta, *delay, *loss, *rt, &st)
	fmt.Println("ready")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
	case <-time.After(*lifetime):
	}
	st.print(os.Stderr)
	// The pumps use the raw descriptors: keep the files (and their
	// finalizers, which would close them) alive until the end.
	runtime.KeepAlive(ta)
	runtime.KeepAlive(tb)
}

// stats counts the link's packets and how late netem delivered them: the
// time from a packet's due time to the end of its write into the other side.
// Lateness is netem's own error (timer wake-up, scheduling on a busy CPU),
// added to the configured delay.
type stats struct {
	passed, dropped, full atomic.Int64
	lateSum, lateMax      atomic.Int64 // nanoseconds
	late1ms, late5ms      atomic.Int64 // packets delivered more than 1 ms, 5 ms late
	noRT                  atomic.Bool  // -rt was asked for and refused
}

func (s *stats) delivered(late time.Duration) {
	s.lateSum.Add(int64(late))
	for {
		m := s.lateMax.Load()
		if int64(late) <= m || s.lateMax.CompareAndSwap(m, int64(late)) {
			break
		}
	}
	if late > time.Millisecond {
		s.late1ms.Add(1)
	}
	if late > 5*time.Millisecond {
		s.late5ms.Add(1)
	}
}

func (s *stats) print(w *os.File) {
	n := s.passed.Load()
	mean := int64(0)
	if n > 0 {
		mean = s.lateSum.Load() / n
	}
	fmt.Fprintf(w, "netem: %d packets passed, %d dropped (%d of them by a full queue); "+
		"delivered late by %.3fms on average, %.3fms at most, %d packets by more than 1ms, %d by more than 5ms\n",
		n, s.dropped.Load(), s.full.Load(), float64(mean)/1e6, float64(s.lateMax.Load())/1e6,
		s.late1ms.Load(), s.late5ms.Load())
	if s.noRT.Load() {
		fmt.Fprintln(w, "netem: real-time priority was refused; packet threads ran at normal priority")
	}
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
	due  int64 // CLOCK_MONOTONIC, nanoseconds
	data []byte
}

// slabSize holds any packet of a 1500-byte MTU. Packets are copied into
// pooled slabs so that the link allocates (and the garbage collector stops
// its threads) next to never; a larger packet gets its own buffer.
const slabSize = 2048

var slabs = sync.Pool{New: func() any { return make([]byte, 0, slabSize) }}

func copyPacket(b []byte) []byte {
	if len(b) > slabSize {
		return append([]byte(nil), b...)
	}
	return append(slabs.Get().([]byte), b...)
}

// monotonic is the CLOCK_MONOTONIC time in nanoseconds, the clock that
// clock_nanosleep waits on.
func monotonic() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// realtime moves the calling OS thread to SCHED_FIFO, so that a busy machine
// does not hold a due packet back behind other processes' time slices. The
// threads it is used on sleep in read(2) or clock_nanosleep(2) almost all the
// time. It reports whether the kernel agreed.
func realtime() bool {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 10}
	return unix.SchedSetAttr(0, &attr, 0) == nil
}

// pump moves packets from src to dst, dropping a share of them and holding
// each for the delay. The delay is the same for every packet, so a FIFO
// keeps them in order (netem's default without jitter).
//
// Reader and writer each own an OS thread: the reader blocks in read(2) and
// stamps each packet as it wakes; the writer sleeps until the packet's due
// time with an absolute clock_nanosleep (a kernel high-resolution timer; the
// Go runtime's timers wake up to a millisecond late) and writes it. With rt,
// both threads run at real-time priority when the kernel allows it.
func pump(src, dst *os.File, delay time.Duration, loss float64, rt bool, st *stats) {
	q := make(chan packet, 1<<16)
	srcFd, dstFd := int(src.Fd()), int(dst.Fd())
	go func() {
		runtime.LockOSThread()
		if rt && !realtime() {
			st.noRT.Store(true)
		}
		for p := range q {
			ts := unix.NsecToTimespec(p.due)
			for {
				err := unix.ClockNanosleep(unix.CLOCK_MONOTONIC, unix.TIMER_ABSTIME, &ts, nil)
				if err != unix.EINTR {
					break
				}
			}
			unix.Write(dstFd, p.data)
			st.delivered(time.Duration(monotonic() - p.due))
			if cap(p.data) == slabSize {
				slabs.Put(p.data[:0])
			}
		}
	}()
	runtime.LockOSThread()
	if rt && !realtime() {
		st.noRT.Store(true)
	}
	buf := make([]byte, 65536)
	for {
		n, err := unix.Read(srcFd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			fail(err)
		}
		if loss > 0 && rand.Float64() < loss {
			st.dropped.Add(1)
			continue
		}
		select {
		case q <- packet{due: monotonic() + int64(delay), data: copyPacket(buf[:n])}:
			st.passed.Add(1)
		default:
			st.dropped.Add(1) // queue full: a router's tail drop
			st.full.Add(1)
		}
	}
}
