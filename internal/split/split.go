// Package split divides a route's requests between upstream pools, the
// arms of a gray release or an A/B test, and copies a share of them to a
// shadow pool (mirror.go). A Splitter is a route's terminal handler: it
// chooses the arm of each request (a force header or cookie first, then
// by weight, by a sticky key or by trace id; select.go), records it in the
// exchange's state (the access log, the client span and the arm metric
// read it there), names it in a response header when asked, and hands the
// exchange to the arm's forwarder. Choosing allocates nothing and takes no
// lock.
package split

import (
	"math/rand/v2"
	"strings"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
)

// Counter is a monotonic counter (a prometheus.Counter).
type Counter interface{ Inc() }

// Arm is one arm of a split.
type Arm struct {
	// Name is the arm's config name.
	Name string
	// Next serves the arm's requests: its upstream's forwarder.
	Next exchange.Handler
	// Requests counts the arm's requests. Nil counts none.
	Requests Counter
}

// Splitter is a split route's terminal handler. Build it with New; it is
// read-only afterwards and safe for concurrent use.
type Splitter struct {
	arms      []Arm
	sel       *Selector
	by        string
	keyHeader string
	keyCookie string
	// force* choose an arm by a header or cookie value; forceArm maps a
	// value to an arm index.
	forceHeader string
	forceCookie string
	forceArm    map[string]int
	armHeader   string
	mirror      *Mirror
	canary      *Canary
}

// New builds the splitter of cfg (defaults applied, valid) over arms, in
// the order of cfg.Arms. mirror and canary (a rollout's data path) may be
// nil.
func New(cfg *config.RouteSplit, arms []Arm, mirror *Mirror, canary *Canary) *Splitter {
	weights := make([]float64, len(cfg.Arms))
	names := make([]string, len(cfg.Arms))
	index := make(map[string]int, len(cfg.Arms))
	for i, a := range cfg.Arms {
		weights[i], names[i] = a.Weight, a.Name
		index[a.Name] = i
	}
	s := &Splitter{
		arms:      arms,
		sel:       NewSelector(names, weights),
		by:        cfg.By,
		keyHeader: cfg.Key.Header,
		keyCookie: cfg.Key.Cookie,
		armHeader: cfg.ArmHeader,
		mirror:    mirror,
		canary:    canary,
	}
	if f := cfg.Force; f != nil {
		s.forceHeader, s.forceCookie = f.Header, f.Cookie
		s.forceArm = make(map[string]int)
		if len(f.Values) == 0 {
			s.forceArm = index
		}
		for v, arm := range f.Values {
			s.forceArm[v] = index[arm]
		}
	}
	return s
}

// ServeExchange chooses x's arm and forwards x to it.
func (s *Splitter) ServeExchange(x *exchange.Exchange) {
	i, forced := s.choose(x)
	a := &s.arms[i]
	x.State.Arm = a.Name
	if a.Requests != nil {
		a.Requests.Inc()
	}
	if s.armHeader != "" {
		x.W.Header().Set(s.armHeader, a.Name)
	}
	if s.mirror == nil {
		s.serve(x, a, i, forced)
		return
	}
	cp, chosen := s.mirror.Offer(x)
	s.serve(x, a, i, forced)
	s.mirror.Send(cp, x, chosen)
}

// serve hands x to arm a (index i), judged by the rollout unless a force
// header or cookie chose the arm.
func (s *Splitter) serve(x *exchange.Exchange, a *Arm, i int, forced bool) {
	if s.canary != nil && !forced {
		// A forced request is served but not judged: it is not a random
		// sample of the route's traffic.
		s.canary.serve(x, a.Next, i)
		return
	}
	a.Next.ServeExchange(x)
}

// Choose returns the index of x's arm: the one the force header or cookie
// names, else the one the split's mode picks.
func (s *Splitter) Choose(x *exchange.Exchange) int {
	i, _ := s.choose(x)
	return i
}

// choose is Choose, and reports whether a force header or cookie chose.
func (s *Splitter) choose(x *exchange.Exchange) (int, bool) {
	if s.forceArm != nil {
		if v, ok := source(x, s.forceHeader, s.forceCookie); ok {
			if i, ok := s.forceArm[v]; ok {
				return i, true
			}
		}
	}
	sel := s.sel
	if s.canary != nil {
		sel = s.canary.selector()
	}
	switch s.by {
	case config.SplitByTraceID:
		return sel.Hash(TraceHash(x.State.Trace.TraceID)), false
	case config.SplitByKey:
		if v, ok := source(x, s.keyHeader, s.keyCookie); ok {
			return sel.Hash(KeyHash(v)), false
		}
		ip := x.Req.RemoteAddr.Addr().As16()
		return sel.Hash(bytesHash(ip[:])), false
	}
	return sel.Random(rand.Uint64()), false
}

// source returns the value of header (if set) or cookie in x's request.
func source(x *exchange.Exchange, header, cookie string) (string, bool) {
	if header != "" {
		return x.Req.Header.Get(header)
	}
	if cookie == "" {
		return "", false
	}
	// HTTP/2 and HTTP/3 may split cookies into several fields (RFC 9113
	// §8.2.3); look at each.
	var val string
	var found bool
	x.Req.Header.Values("Cookie", func(v string) bool {
		val, found = cookieValue(v, cookie)
		return !found
	})
	return val, found
}

// cookieValue finds cookie name in a Cookie field value
// ("a=1; name=value"), RFC 6265 §5.4.
func cookieValue(field, name string) (string, bool) {
	for field != "" {
		var pair string
		pair, field, _ = strings.Cut(field, ";")
		pair = strings.TrimSpace(pair)
		k, v, ok := strings.Cut(pair, "=")
		if ok && k == name {
			return strings.Trim(v, `"`), true
		}
	}
	return "", false
}
