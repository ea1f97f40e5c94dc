package server

import (
	"context"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/pgproxy"
)

// startPostgres starts the PostgreSQL proxy when the configuration has a
// postgres section.
func (p *process) startPostgres(ctx context.Context, cfg *config.Config) error {
	if cfg.Postgres == nil {
		return nil
	}
	pg, err := pgproxy.New(cfg.Postgres, p.log, p.reg)
	if err != nil {
		return err
	}
	if err := pg.Start(ctx); err != nil {
		return err
	}
	p.pg.Store(pg)
	return nil
}

// reloadPostgres applies a reloaded configuration's postgres section: the
// proxy is started, reconfigured or stopped. The section is validated with
// the rest of the file before this runs; reloads are serialised by the
// server.
func (p *process) reloadPostgres(cfg *config.Config) {
	pg := p.pg.Load()
	switch {
	case pg == nil && cfg.Postgres != nil:
		if err := p.startPostgres(context.Background(), cfg); err != nil {
			p.log.Error("reload: postgres proxy not started", "error", err)
		}
	case pg != nil && cfg.Postgres == nil:
		p.stopPostgres()
	case pg != nil:
		if err := pg.Reload(cfg.Postgres); err != nil {
			p.log.Error("reload: postgres section kept on its previous settings", "error", err)
		}
	}
}

// stopPostgres disconnects the proxy's clients and closes its server
// connections.
func (p *process) stopPostgres() {
	if pg := p.pg.Swap(nil); pg != nil {
		pg.Close()
	}
}

// postgresState is GET /postgres on the admin API: nil without a proxy.
func (p *process) postgresState() any {
	if pg := p.pg.Load(); pg != nil {
		return pg.State()
	}
	return nil
}
