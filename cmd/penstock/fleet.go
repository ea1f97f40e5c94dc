package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/fleet"
	"github.com/penstock-dev/penstock/internal/server"
)

// configCommandsUsage lists the fleet subcommands of penstock config.
const configCommandsUsage = `
A fleet's configuration in etcd (the key PREFIX/config):
  penstock config push -c FILE [-base-revision N] [-m NOTE] etcd://HOST:PORT/PREFIX
  penstock config history [-n N] etcd://HOST:PORT/PREFIX
  penstock config show [-rev REV] etcd://HOST:PORT/PREFIX
  penstock config rollback -to REV [-base-revision N] [-m NOTE] etcd://HOST:PORT/PREFIX
  penstock config nodes etcd://HOST:PORT/PREFIX
`

func configCommand(name string) func(args []string, stdout, stderr io.Writer) error {
	switch name {
	case "push":
		return runConfigPush
	case "history":
		return runConfigHistory
	case "rollback":
		return runConfigRollback
	case "nodes":
		return runConfigNodes
	case "show":
		return runConfigShow
	}
	return nil
}

// serveSourceFlags are penstock serve's flags for a configuration source.
type serveSourceFlags struct {
	url, cache, node string
}

func sourceFlags(fs *flag.FlagSet) *serveSourceFlags {
	f := &serveSourceFlags{}
	fs.StringVar(&f.url, "config-source", "", "read the configuration from etcd and follow it: `URL` etcd://HOST:PORT[,HOST:PORT]/PREFIX (key PREFIX/config)")
	fs.StringVar(&f.cache, "config-cache", "", "with --config-source: the `file` keeping the last good configuration, served when etcd is unreachable at start (default: under $XDG_CACHE_HOME or ~/.cache)")
	fs.StringVar(&f.node, "node-id", "", "with --config-source: this node's `id` under PREFIX/nodes/ (default: the host name)")
	return f
}

func (f *serveSourceFlags) source() (*fleet.Source, error) {
	t, err := fleet.ParseURL(f.url)
	if err != nil {
		return nil, err
	}
	if f.cache == "" {
		if f.cache, err = fleet.DefaultCacheFile(t); err != nil {
			return nil, err
		}
	}
	return fleet.New(fleet.Options{Target: t, CacheFile: f.cache, NodeID: f.node, Version: versionString()})
}

// parseWithURL parses a fleet subcommand's flags and its one etcd URL;
// flags may come before or after the URL.
func parseWithURL(fs *flag.FlagSet, args []string) (fleet.Target, error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return fleet.Target{}, err
		}
		return fleet.Target{}, errUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(fs.Output(), "the etcd URL is required (etcd://HOST:PORT/PREFIX)")
		fs.Usage()
		return fleet.Target{}, errUsage
	}
	url := fs.Arg(0)
	if err := parseFlags(fs, fs.Args()[1:]); err != nil {
		return fleet.Target{}, err
	}
	return fleet.ParseURL(url)
}

// baseRevision is -base-revision; unset, the push replaces the revision
// read just before writing.
type baseRevision struct {
	set bool
	n   int64
}

func (b *baseRevision) String() string {
	if b == nil || !b.set {
		return ""
	}
	return strconv.FormatInt(b.n, 10)
}

func (b *baseRevision) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("want a revision (0: the key must not exist yet)")
	}
	b.set, b.n = true, n
	return nil
}

// rev is the base revision for fleet.Push: -1 when unset.
func (b *baseRevision) rev() int64 {
	if !b.set {
		return -1
	}
	return b.n
}

func baseRevisionFlag(fs *flag.FlagSet, what string) *baseRevision {
	b := &baseRevision{}
	fs.Var(b, "base-revision", "the `revision` this "+what+" replaces: refused if the key changed since (0: the key must not exist; default: the revision read just before writing)")
	return b
}

// etcdFlags are the flags every fleet subcommand takes.
func etcdFlags(fs *flag.FlagSet) *time.Duration {
	return fs.Duration("timeout", 10*time.Second, "how long the command may take, connecting to etcd included")
}

func dialFor(t fleet.Target, timeout time.Duration) (*clientv3.Client, context.Context, func(), error) {
	cli, err := fleet.Dial(t, fleet.DefaultDialTimeout)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("etcd %s: %w", t, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	return cli, ctx, func() { cancel(); cli.Close() }, nil
}

// etcdErr names the cluster in an error from it, and says what a timeout
// most likely means.
func etcdErr(t fleet.Target, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("etcd %s did not answer in time (is it running and reachable?): %w", t, err)
	}
	return err
}

// checkDocument validates data as penstock validate does, printing every
// error with its field and line.
func checkDocument(data []byte, name string, stderr io.Writer) error {
	err := server.CheckDocument(data, name)
	if err == nil {
		return nil
	}
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(stderr, e)
		}
		fmt.Fprintf(stderr, "%s: %d error(s); nothing was written to etcd\n", name, len(errs))
	} else {
		fmt.Fprintf(stderr, "%s: %v; nothing was written to etcd\n", name, err)
	}
	return errInvalid
}

func runConfigPush(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config push", "config push -c FILE [-base-revision N] [-m NOTE] etcd://HOST:PORT/PREFIX", stderr)
	file := fs.String("c", "", "configuration `file` to push (required); validated first, as penstock validate does")
	base := baseRevisionFlag(fs, "push")
	note := fs.String("m", "", "a `note` on the change, shown by penstock config history")
	timeout := etcdFlags(fs)
	t, err := parseWithURL(fs, args)
	if err != nil {
		return err
	}
	if *file == "" {
		fmt.Fprintln(stderr, "penstock config push: -c FILE is required")
		fs.Usage()
		return errUsage
	}
	data, err := os.ReadFile(*file)
	if err != nil {
		return err
	}
	if err := checkDocument(data, *file, stderr); err != nil {
		return err
	}
	cli, ctx, done, err := dialFor(t, *timeout)
	if err != nil {
		return err
	}
	defer done()
	res, err := fleet.Push(ctx, cli, t, data, base.rev(), fleet.Meta{Source: *file, Note: *note})
	if err != nil {
		return etcdErr(t, err)
	}
	if res.Unchanged {
		fmt.Fprintf(stdout, "%s: unchanged: %s at revision %d already holds this configuration\n", *file, t.ConfigKey(), res.Revision)
		return nil
	}
	fmt.Fprintf(stdout, "%s: pushed to %s: revision %d (replacing %d), %s\n", *file, t.ConfigKey(), res.Revision, res.Base, fleet.Digest(data))
	return nil
}

func runConfigHistory(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config history", "config history [-n N] etcd://HOST:PORT/PREFIX", stderr)
	limit := fs.Int("n", 20, "show at most this `many` revisions, newest first")
	timeout := etcdFlags(fs)
	t, err := parseWithURL(fs, args)
	if err != nil {
		return err
	}
	if *limit < 1 {
		fmt.Fprintln(stderr, "penstock config history: -n must be at least 1")
		return errUsage
	}
	cli, ctx, done, err := dialFor(t, *timeout)
	if err != nil {
		return err
	}
	defer done()
	h, err := fleet.History(ctx, cli, t, *limit)
	if err != nil {
		return etcdErr(t, err)
	}
	if len(h.Revisions) == 0 && !h.Compacted {
		fmt.Fprintf(stdout, "%s: no configuration yet (push one: penstock config push -c FILE %s)\n", t.ConfigKey(), t)
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tPUSHED\tBY\tSIZE\tDIGEST\tSOURCE\tNOTE")
	for i, r := range h.Revisions {
		pushed, by, src, note := "-", "-", "-", ""
		if r.Meta != nil {
			pushed, by, src, note = r.Meta.PushedAt.Format(time.RFC3339), r.Meta.By, r.Meta.Source, r.Meta.Note
		}
		rev := fmt.Sprint(r.Revision)
		if i == 0 {
			rev += " (current)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", rev, pushed, by, r.Size, r.Digest, src, note)
	}
	tw.Flush()
	switch {
	case h.More:
		fmt.Fprintf(stdout, "(more: -n %d shows older revisions)\n", *limit*2)
	case h.Compacted:
		fmt.Fprintf(stdout, "(older revisions were compacted away: etcd keeps revisions from %d on)\n", h.CompactRevision)
	}
	return nil
}

func runConfigRollback(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config rollback", "config rollback -to REV [-base-revision N] [-m NOTE] etcd://HOST:PORT/PREFIX", stderr)
	to := fs.Int64("to", 0, "the `revision` whose configuration to restore (see penstock config history); required")
	base := baseRevisionFlag(fs, "rollback")
	note := fs.String("m", "", "a `note` on the rollback, shown by penstock config history")
	timeout := etcdFlags(fs)
	t, err := parseWithURL(fs, args)
	if err != nil {
		return err
	}
	if *to <= 0 {
		fmt.Fprintln(stderr, "penstock config rollback: -to REV is required (a revision from penstock config history)")
		fs.Usage()
		return errUsage
	}
	cli, ctx, done, err := dialFor(t, *timeout)
	if err != nil {
		return err
	}
	defer done()
	data, rev, err := fleet.Read(ctx, cli, t, *to)
	if err != nil {
		return etcdErr(t, err)
	}
	name := fmt.Sprintf("etcd:%s@%d", t.ConfigKey(), rev)
	if err := checkDocument(data, name, stderr); err != nil {
		return err
	}
	res, err := fleet.Push(ctx, cli, t, data, base.rev(), fleet.Meta{Source: fmt.Sprintf("rollback to %d", rev), Note: *note})
	if err != nil {
		return etcdErr(t, err)
	}
	if res.Unchanged {
		fmt.Fprintf(stdout, "%s at revision %d already holds the configuration of revision %d\n", t.ConfigKey(), res.Revision, rev)
		return nil
	}
	fmt.Fprintf(stdout, "rolled %s back to the configuration of revision %d: now revision %d (replacing %d), %s\n", t.ConfigKey(), rev, res.Revision, res.Base, fleet.Digest(data))
	return nil
}

func runConfigNodes(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config nodes", "config nodes etcd://HOST:PORT/PREFIX", stderr)
	timeout := etcdFlags(fs)
	t, err := parseWithURL(fs, args)
	if err != nil {
		return err
	}
	cli, ctx, done, err := dialFor(t, *timeout)
	if err != nil {
		return err
	}
	defer done()
	l, err := fleet.Nodes(ctx, cli, t)
	if err != nil {
		return etcdErr(t, err)
	}
	behind := 0
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tREVISION\tSINCE\tFROM\tREFUSED\tHOST\tPID")
	for _, n := range l.Nodes {
		mark := ""
		if n.Revision != l.Revision {
			mark = " (behind)"
			behind++
		}
		refused := "-"
		if n.Refused > 0 {
			refused = fmt.Sprint(n.Refused)
		}
		fmt.Fprintf(tw, "%s\t%d%s\t%s\t%s\t%s\t%s\t%d\n", n.Node, n.Revision, mark, n.Since.Format(time.RFC3339), n.From, refused, n.Host, n.PID)
	}
	tw.Flush()
	var state string
	switch {
	case len(l.Nodes) == 0:
		state = "no node registered"
	case behind == 0:
		state = fmt.Sprintf("%d node(s), converged", len(l.Nodes))
	default:
		state = fmt.Sprintf("%d node(s), %d not serving it (yet, or refused it: see REFUSED and GET /config/source on the node)", len(l.Nodes), behind)
	}
	fmt.Fprintf(stdout, "%s at revision %d: %s\n", t.ConfigKey(), l.Revision, strings.TrimSpace(state))
	return nil
}

func runConfigShow(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("config show", "config show [-rev REV] etcd://HOST:PORT/PREFIX", stderr)
	rev := fs.Int64("rev", 0, "print the configuration as it was at this `revision` (default: the current one)")
	timeout := etcdFlags(fs)
	t, err := parseWithURL(fs, args)
	if err != nil {
		return err
	}
	if *rev < 0 {
		fmt.Fprintln(stderr, "penstock config show: -rev must be a revision from penstock config history")
		return errUsage
	}
	cli, ctx, done, err := dialFor(t, *timeout)
	if err != nil {
		return err
	}
	defer done()
	data, at, err := fleet.Read(ctx, cli, t, *rev)
	if err != nil {
		return etcdErr(t, err)
	}
	fmt.Fprintf(stderr, "# %s at revision %d, %s\n", t.ConfigKey(), at, fleet.Digest(data))
	_, err = stdout.Write(data)
	return err
}
