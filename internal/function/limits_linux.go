package function

import (
	"bufio"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/penstock-dev/penstock/internal/config"
)

// sysProcAttr starts an instance in a process group of its own (so a kill
// reaches the children it forks) that the kernel kills if penstock dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Limit mechanisms, as the admin API and the log name them.
const (
	limitsNone   = "none"
	limitsCgroup = "cgroup_v2"
	limitsRlimit = "rlimit"
)

// limiter applies a function's memory and CPU caps to its instances: each
// instance in its own cgroup v2 (memory.max, cpu.max) when penstock can
// create cgroups below its own and they have the memory and cpu
// controllers; otherwise RLIMIT_DATA for memory (private writable
// mappings, the heap of any runtime, without counting the address space
// that Go and V8 reserve but do not use, which RLIMIT_AS would) and no CPU
// cap, since no rlimit caps a rate.
type limiter struct {
	memory    int64
	cpu       float64
	mechanism string
	dir       string // the function's cgroup, for cgroup_v2
	// why says why cgroups did not apply, for the log.
	why string
}

func newLimiter(cfg config.Function) limiter {
	l := limiter{memory: int64(cfg.Memory), cpu: cfg.CPU, mechanism: limitsNone}
	if l.memory == 0 && l.cpu == 0 {
		return l
	}
	dir, err := functionCgroup(cfg.Name)
	if err == nil {
		l.mechanism, l.dir = limitsCgroup, dir
		return l
	}
	l.mechanism, l.why = limitsRlimit, err.Error()
	return l
}

// report logs which mechanism applies (once, when the function starts).
func (l *limiter) report(log *slog.Logger) {
	switch l.mechanism {
	case limitsCgroup:
		log.Info("function limits", "mechanism", l.mechanism, "cgroup", l.dir, "memory", l.memory, "cpu", l.cpu)
	case limitsRlimit:
		attrs := []any{"mechanism", l.mechanism, "memory", l.memory, "cgroup_v2", l.why}
		if l.cpu > 0 {
			attrs = append(attrs, "cpu", "not applied: no rlimit caps a rate")
		}
		log.Warn("function limits", attrs...)
	}
}

// functionCgroup creates the function's cgroup below penstock's own, with
// the memory and cpu controllers enabled for its children.
func functionCgroup(name string) (string, error) {
	mount, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	own, err := ownCgroup()
	if err != nil {
		return "", err
	}
	parent := filepath.Join(mount, own)
	ctrl, err := os.ReadFile(filepath.Join(parent, "cgroup.controllers"))
	if err != nil {
		return "", err
	}
	have := strings.Fields(string(ctrl))
	for _, c := range []string{"memory", "cpu"} {
		if !contains(have, c) {
			return "", fmt.Errorf("controller %s not available in %s", c, parent)
		}
	}
	dir := filepath.Join(parent, fmt.Sprintf("penstock-%d-%s", os.Getpid(), name))
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+memory +cpu"), 0); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("enable controllers: %w", err)
	}
	return dir, nil
}

func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		// ... mountpoint ... - fstype source options
		pre, post, ok := strings.Cut(s.Text(), " - ")
		if !ok {
			continue
		}
		if fs := strings.Fields(post); len(fs) > 0 && fs[0] == "cgroup2" {
			if f := strings.Fields(pre); len(f) > 4 {
				return f[4], nil
			}
		}
	}
	return "", fmt.Errorf("no cgroup2 file system mounted")
}

func ownCgroup() (string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("not in a cgroup v2 hierarchy")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// placement is one instance's share of the limits.
type placement struct {
	l   *limiter
	dir string // the instance's cgroup
	fd  int
}

// prepare sets cmd up to start inside the instance's cgroup
// (CLONE_INTO_CGROUP), when cgroups apply.
func (l *limiter) prepare(cmd *exec.Cmd, id int) (placement, error) {
	p := placement{l: l, fd: -1}
	if l.mechanism != limitsCgroup {
		return p, nil
	}
	dir := filepath.Join(l.dir, "i"+strconv.Itoa(id))
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return p, err
	}
	p.dir = dir
	if l.memory > 0 {
		if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(strconv.FormatInt(l.memory, 10)), 0); err != nil {
			return p, err
		}
	}
	if l.cpu > 0 {
		const period = 100000
		quota := int64(l.cpu * period)
		if err := os.WriteFile(filepath.Join(dir, "cpu.max"), fmt.Appendf(nil, "%d %d", quota, period), 0); err != nil {
			return p, err
		}
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return p, err
	}
	p.fd = fd
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = fd
	return p, nil
}

// apply finishes placing process pid and describes what applied.
func (p placement) apply(pid int) string {
	l := p.l
	switch l.mechanism {
	case limitsCgroup:
		if p.fd >= 0 {
			unix.Close(p.fd)
			return fmt.Sprintf("cgroup_v2 %s (memory.max=%d cpu=%g)", p.dir, l.memory, l.cpu)
		}
		return "none (cgroup_v2 placement failed)"
	case limitsRlimit:
		if l.memory > 0 {
			lim := unix.Rlimit{Cur: uint64(l.memory), Max: uint64(l.memory)}
			if err := unix.Prlimit(pid, unix.RLIMIT_DATA, &lim, nil); err != nil {
				return "none (prlimit: " + err.Error() + ")"
			}
		}
		s := fmt.Sprintf("rlimit (RLIMIT_DATA=%d", l.memory)
		if l.cpu > 0 {
			s += ", cpu not applied"
		}
		return s + ")"
	}
	return limitsNone
}

// undo removes the instance's cgroup once its process is gone.
func (p placement) undo() {
	if p.dir != "" {
		os.Remove(p.dir)
	}
}

// close removes the function's cgroup.
func (l *limiter) close() {
	if l.dir != "" {
		os.Remove(l.dir)
	}
}
