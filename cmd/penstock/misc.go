package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/penstock-dev/penstock/internal/demo"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise the module version from the build info is used.
var version = ""

func versionString() string {
	v := version
	info, ok := debug.ReadBuildInfo()
	if v == "" && ok && info.Main.Version != "" {
		v = info.Main.Version
	}
	if v == "" {
		v = "(devel)"
	}
	goVersion := "unknown"
	if ok {
		goVersion = info.GoVersion
	}
	return fmt.Sprintf("penstock %s (%s)", v, goVersion)
}

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "version", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}

func runConfig(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if sub := configCommand(args[0]); sub != nil {
			return sub(args[1:], stdout, stderr)
		}
	}
	fs := newFlagSet("config", "config demo", stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: penstock config demo\n\nPrints the embedded demo configuration, a starting point for your own.\n%s", configCommandsUsage)
	}
	if len(args) > 0 && args[0] != "demo" && args[0][0] != '-' {
		fmt.Fprintf(stderr, "penstock config: unknown configuration %q (known: demo; commands: push, history, show, rollback, nodes)\n", args[0])
		return errUsage
	}
	if len(args) > 0 && args[0] == "demo" {
		args = args[1:]
	} else if err := parseFlags(fs, args); err != nil {
		return err
	} else {
		fs.Usage()
		return errUsage
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	_, err := stdout.Write(demo.Config)
	return err
}

func runDemoBackend(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo-backend", "demo-backend [-addr HOST:PORT]", stderr)
	addr := fs.String("addr", demo.BackendAddress, "address to listen on")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	srv, a, err := demo.StartBackend(*addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "demo backend listening on http://%s\n", a)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	return srv.Shutdown(context.Background())
}
