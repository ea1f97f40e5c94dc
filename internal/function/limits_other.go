//go:build !linux

package function

import (
	"log/slog"
	"os/exec"
	"syscall"

	"github.com/penstock-dev/penstock/internal/config"
)

// sysProcAttr starts an instance in a process group of its own, so a kill
// reaches the children it forks.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// limiter applies no memory or CPU caps outside Linux, and says so.
type limiter struct {
	mechanism string
	asked     bool
}

func newLimiter(cfg config.Function) limiter {
	return limiter{mechanism: "none", asked: cfg.Memory > 0 || cfg.CPU > 0}
}

func (l *limiter) report(log *slog.Logger) {
	if l.asked {
		log.Warn("function limits", "mechanism", "none", "reason", "memory and cpu caps need Linux")
	}
}

type placement struct{}

func (l *limiter) prepare(*exec.Cmd, int) (placement, error) { return placement{}, nil }
func (placement) apply(int) string                           { return "none" }
func (placement) undo()                                      {}
func (l *limiter) close()                                    {}
