package server

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/snapshot"
)

// ConfigSource is a configuration kept elsewhere than in a file: etcd
// (*fleet.Source). Its documents go through the same steps as a file's:
// strict decoding, validation, compilation, swap or refusal.
type ConfigSource interface {
	// Load returns the document to start with and the name its errors
	// cite, choosing one that check accepts.
	Load(ctx context.Context, check func(data []byte, name string) error) (data []byte, name string, err error)
	// Run follows the source until ctx ends, calling apply with each new
	// document (never concurrently); apply's error is a refusal. Metrics go
	// to reg.
	Run(ctx context.Context, apply func(data []byte, name string) error, log *slog.Logger, reg prometheus.Registerer)
	// Resync reads the source now and applies what is new (SIGHUP, POST
	// /config/reload).
	Resync() error
	// State is shown by GET /config/source.
	State() any
	// Nodes lists the fleet's nodes for GET /config/source/nodes.
	Nodes(ctx context.Context) (any, error)
	// Close releases the source, once Run has returned.
	Close() error
}

// parseDocument decodes a document from a source as Load decodes a file,
// defaults applied.
func parseDocument(data []byte, name string) (*config.Config, error) {
	cfg, err := config.Check(data, name, snapshot.CheckRoutes)
	if err != nil {
		return nil, err
	}
	cfg.SetDefaults()
	return cfg, nil
}

// CheckDocument checks a document as penstock validate checks a file:
// decoded, validated and compiled (then discarded).
func CheckDocument(data []byte, name string) error {
	cfg, err := config.Check(data, name, snapshot.CheckRoutes)
	if err != nil {
		return err
	}
	s, err := snapshot.Compile(cfg, snapshot.Env{})
	if err != nil {
		return err
	}
	s.Close()
	return nil
}

// loadSource reads the first configuration from the source.
func (o RunOptions) loadSource() (*config.Config, error) {
	data, name, err := o.Source.Load(context.Background(), CheckDocument)
	if err != nil {
		return nil, err
	}
	return parseDocument(data, name)
}

// followSource applies the source's changes from a goroutine of their own,
// off the request path, until ctx ends; SIGHUP and POST /config/reload
// read the source again.
func (p *process) followSource(ctx context.Context) {
	src := p.o.Source
	p.reload = src.Resync
	p.sourceDone = make(chan struct{})
	go func() {
		defer close(p.sourceDone)
		src.Run(ctx, func(data []byte, name string) error {
			return p.apply(func() (*config.Config, error) { return parseDocument(data, name) })
		}, p.log, p.reg)
	}()
}

// stopSource waits for the source to stop (its context is cancelled): the
// node's registration is revoked before the process drains.
func (p *process) stopSource() {
	if p.sourceDone != nil {
		<-p.sourceDone
	}
}

// sourceState is GET /config/source on the admin API: nil without a source.
func (p *process) sourceState() any {
	if p.o.Source == nil {
		return nil
	}
	return p.o.Source.State()
}

// sourceNodes is GET /config/source/nodes; nil without a source.
func (p *process) sourceNodes() func(ctx context.Context) (any, error) {
	if p.o.Source == nil {
		return nil
	}
	return p.o.Source.Nodes
}

// fleetView is the dashboard's fleet section: the nodes registered in the
// configuration source with the revision each serves; nil without a
// source. The dashboard asks every second from its sampler, which must not
// wait on etcd: the answer is the last reading, refreshed in the
// background at most every fleetRefresh.
func (p *process) fleetView() func() any {
	nodes := p.sourceNodes()
	if nodes == nil {
		return nil
	}
	var (
		mu      sync.Mutex
		last    any
		at      time.Time
		reading bool
	)
	return func() any {
		mu.Lock()
		defer mu.Unlock()
		if !reading && time.Since(at) >= fleetRefresh {
			reading = true
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				v, err := nodes(ctx)
				cancel()
				if err != nil {
					v = map[string]string{"error": err.Error()}
				}
				mu.Lock()
				last, at, reading = v, time.Now(), false
				mu.Unlock()
			}()
		}
		return last
	}
}

// fleetRefresh is how often the dashboard's fleet section reads etcd.
const fleetRefresh = 5 * time.Second
