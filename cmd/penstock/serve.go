package main

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/penstock-dev/penstock/internal/demo"
	"github.com/penstock-dev/penstock/internal/server"
)

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "serve [-c FILE | --config-source etcd://HOST:PORT/PREFIX] [-pid-file FILE]", stderr)
	file := fs.String("c", "", "configuration `file` (YAML); without it, serve the built-in demo")
	sf := sourceFlags(fs)
	pidFile := fs.String("pid-file", "", "write the process id to this `file` (rewritten by a binary upgrade)")
	upgradeTimeout := fs.Duration("upgrade-timeout", time.Minute, "how long a binary upgrade waits for the new process to be ready")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	o := server.RunOptions{File: *file, Args: args, PIDFile: *pidFile, Executable: executable(),
		UpgradeTimeout: *upgradeTimeout, Version: versionString(), Log: stderr}
	if sf.url != "" {
		if *file != "" {
			fmt.Fprintln(stderr, "penstock serve: -c FILE and --config-source are exclusive: the configuration comes from one place")
			return errUsage
		}
		src, err := sf.source()
		if err != nil {
			return err
		}
		o.Source, o.Rollouts = src, src.Rollouts()
	} else if *file == "" {
		backend, addr, err := demo.StartBackend(demo.BackendAddress)
		if err != nil {
			return err
		}
		defer backend.Close()
		o.Config = demo.Config
		o.Serving = func(s *server.Server, admin net.Addr, log *slog.Logger) {
			log.Info("demo backend listening", "address", addr.String())
			adminAddr := ""
			if admin != nil {
				adminAddr = admin.String()
			}
			fmt.Fprint(stdout, demo.Banner(s.Addr("http").String(), s.Addr("https").String(), adminAddr))
		}
	}
	return server.Run(o)
}

// exePath is the binary as invoked, resolved when the process started, so
// that an upgrade runs whatever file is at that path now (a newer binary
// installed over the old one), not the old inode os.Executable would name.
var exePath = func() string {
	p, err := exec.LookPath(os.Args[0])
	if err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	return ""
}()

func executable() string {
	if exePath != "" {
		return exePath
	}
	p, _ := os.Executable()
	return p
}
