// Package pipeline holds the route pipeline: the ordered table of stages
// (early data, body limit, early hints, cache) that run between routing and
// forwarding, each stage with its own settings.
package pipeline

import (
	"fmt"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/metrics"
)

// Stage is one step of a route's pipeline. New is called once per route when
// a config is compiled, never per request: it rejects bad settings there and
// returns next unchanged when the stage has nothing to do for the route.
type Stage struct {
	// Name identifies the stage in errors and docs.
	Name string
	// New wraps next for route r.
	New func(r *config.Route, next exchange.Handler) (exchange.Handler, error)
}

// Stages is the route pipeline in request order: the first stage sees the
// request first. Routing and the request id happen before it (they are needed
// to choose the route and to answer 404s); forwarding to the upstream comes
// after the last stage. A new stage is one file and one line here.
var Stages = []Stage{
	{Name: "early_data", New: newEarlyData},
	{Name: "body_limit", New: newBodyLimit},
	{Name: "early_hints", New: newEarlyHints},
	{Name: "cache", New: newCache},
}

// Env is what a route's stages may use besides the route's config: things
// the gateway owns and keeps across reloads.
type Env struct {
	// Metrics receives the stages' metrics (the cache's); nil records none.
	Metrics *metrics.Metrics
}

// envUser is implemented by stage handlers that need the Env; BuildWith
// hands it to them right after New.
type envUser interface {
	useEnv(env Env)
}

// Build composes the stages for route r in front of terminal, with an empty
// Env.
func Build(r *config.Route, terminal exchange.Handler) (exchange.Handler, error) {
	return BuildWith(r, terminal, Env{})
}

// BuildWith composes the stages for route r in front of terminal.
func BuildWith(r *config.Route, terminal exchange.Handler, env Env) (exchange.Handler, error) {
	h := terminal
	for i := len(Stages) - 1; i >= 0; i-- {
		next, err := Stages[i].New(r, h)
		if err != nil {
			return nil, fmt.Errorf("stage %s: %w", Stages[i].Name, err)
		}
		if u, ok := next.(envUser); ok && next != h {
			u.useEnv(env)
		}
		h = next
	}
	return h, nil
}

type bodyLimit struct {
	limit int64
	next  exchange.Handler
}

func newBodyLimit(r *config.Route, next exchange.Handler) (exchange.Handler, error) {
	if r.MaxRequestBody.Int64() <= 0 {
		return next, nil
	}
	return &bodyLimit{limit: r.MaxRequestBody.Int64(), next: next}, nil
}

func (b *bodyLimit) ServeExchange(x *exchange.Exchange) {
	if LimitBody(x, b.limit) {
		b.next.ServeExchange(x)
	}
}
