package snapshot

import (
	"log/slog"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/proxy"
	"github.com/penstock-dev/penstock/internal/split"
	"github.com/penstock-dev/penstock/internal/upstream"
)

// forwarder builds route rc's forwarder to the pool named pool, as Compile
// builds a plain route's.
func (s *Snapshot) forwarder(rc *config.Route, pool string, m *metrics.Metrics, log *slog.Logger, retry *proxy.RetryPolicy) *proxy.Forwarder {
	p := s.Pools[pool]
	epMetrics := make(map[*upstream.Endpoint]*metrics.Upstream, len(p.Endpoints))
	for _, e := range p.Endpoints {
		epMetrics[e] = m.Upstream(p.Name, e.Address)
	}
	return &proxy.Forwarder{
		Pool:                  p,
		NoWebSocket:           len(rc.TunnelledUpgrades()) == 0,
		Tracer:                s.Tracer,
		EndpointMetrics:       epMetrics,
		ConnectTimeout:        rc.Timeouts.Connect.D(),
		ResponseHeaderTimeout: rc.Timeouts.ResponseHeader.D(),
		RequestTimeout:        rc.Timeouts.Request.D(),
		Logger:                log,
		Retry:                 retry,
		Streams:               s.streams,
	}
}

// splitter builds the terminal handler of a split route: one forwarder
// per arm, each to its own pool with the route's timeouts and retry
// policy (one retry budget for the route), and the mirror's forwarder to
// the shadow pool, which records no spans (a copy is not part of the
// client's trace) and retries as a route without a retry block does.
func (s *Snapshot) splitter(cfg *config.Config, rc *config.Route, m *metrics.Metrics, log *slog.Logger, retry *proxy.RetryPolicy) (*split.Splitter, error) {
	sc := rc.Split
	arms := make([]split.Arm, len(sc.Arms))
	for i, a := range sc.Arms {
		arms[i] = split.Arm{
			Name:     a.Name,
			Next:     s.forwarder(rc, a.Upstream, m, log, retry),
			Requests: m.SplitArm(rc.Name, a.Name),
		}
	}
	var mirror *split.Mirror
	if mc := sc.Mirror; mc != nil {
		shadow := s.forwarder(rc, mc.Upstream, m, log, nil)
		shadow.Tracer = nil
		mirror = split.NewMirror(shadow, *mc.Percent, mc.MaxQueue, mc.Timeout.D(), mc.MaxBody.Int64())
		mirror.Route, mirror.Upstream = rc.Name, mc.Upstream
		s.mirrors = append(s.mirrors, mirror)
		c := m.SplitMirror(rc.Name)
		mirror.Copied, mirror.Dropped, mirror.Skipped = c[metrics.MirrorCopied], c[metrics.MirrorDropped], c[metrics.MirrorSkipped]
	}
	var canary *split.Canary
	if sc.Rollout != nil {
		c, err := s.rolloutControl(cfg, rc, m, log)
		if err != nil {
			return nil, err
		}
		names := make([]string, len(sc.Arms))
		weights := make([]float64, len(sc.Arms))
		var b, k int
		for i, a := range sc.Arms {
			names[i], weights[i] = a.Name, a.Weight
			if a.Upstream == rc.Upstream {
				b = i
			}
			if a.Name == sc.Rollout.Canary {
				k = i
			}
		}
		canary = split.NewCanary(c.Rollout(), names, weights, b, k)
	}
	return split.New(sc, arms, mirror, canary), nil
}
