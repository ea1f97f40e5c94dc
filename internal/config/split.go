package config

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// RouteSplit divides a route's requests between two or more upstream pools,
// the arms (gray release, A/B tests), and may copy a share of them to a
// shadow pool (mirroring). Each request goes to exactly one arm: the one a
// force header or cookie names, else the one By chooses. The route's
// upstream is the baseline: it must be the upstream of one of the arms.
type RouteSplit struct {
	// Arms are the pools requests are divided between, in order. At least
	// two; names and upstreams unique.
	Arms []SplitArm `yaml:"arms"`
	// By chooses the arm of a request no force applies to: weight (at
	// random by the arms' weights), key (sticky: a hash of Key, so one
	// client or tenant always gets the same arm while the weights hold), or
	// trace_id (sticky per W3C trace id: the bits the trace sampler decides
	// from, so a session that propagates its trace context stays on one
	// arm). The sticky modes use weighted rendezvous hashing: a weight
	// change moves a key only off an arm whose weight fell or onto one
	// whose weight rose. Default weight.
	By string `yaml:"by"`
	// Key is where by: key reads the key: a request header or a cookie;
	// neither (or the request lacks it) hashes the client's IP address.
	Key SplitSource `yaml:"key"`
	// Force, when present, lets a request choose its arm with a header or
	// cookie value (x-model-version: v2), before By is asked.
	Force *SplitForce `yaml:"force"`
	// Mirror, when present, sends a copy of a share of the route's requests
	// to a shadow pool whose responses are discarded.
	Mirror *SplitMirror `yaml:"mirror"`
	// ArmHeader, when set, names a response header that carries the name of
	// the arm that served the request (e.g. X-Penstock-Arm). Default none.
	ArmHeader string `yaml:"arm_header"`
	// Rollout, when present, moves traffic from the baseline arm to a
	// canary arm step by step, judging the canary on live traffic, and
	// rolls it back by itself (see SplitRollout).
	Rollout *SplitRollout `yaml:"rollout"`
}

// SplitArm is one arm of a split.
type SplitArm struct {
	// Name identifies the arm in the access log, spans, metrics, the arm
	// header and force values. Required, unique within the split.
	Name string `yaml:"name"`
	// Upstream is the pool the arm's requests are forwarded to. Required;
	// must exist.
	Upstream string `yaml:"upstream"`
	// Weight is the arm's share, relative to the sum of the arms' weights
	// (percentages when they add up to 100; any non-negative numbers
	// otherwise). 0 makes the arm reachable by force only; at least one
	// arm must weigh more than 0. Default 0.
	Weight float64 `yaml:"weight"`
}

// SplitSource is a request header or a cookie; at most one of the two.
type SplitSource struct {
	// Header is a request header name (case-insensitive).
	Header string `yaml:"header"`
	// Cookie is a cookie name (case-sensitive, RFC 6265 §5.4).
	Cookie string `yaml:"cookie"`
}

// SplitForce lets a header or cookie value choose a request's arm.
type SplitForce struct {
	// Header is the request header whose value forces an arm.
	Header string `yaml:"header"`
	// Cookie is the cookie whose value forces an arm. Exactly one of Header
	// and Cookie is required.
	Cookie string `yaml:"cookie"`
	// Values maps header or cookie values to arm names (v2: models-v2).
	// Empty means each arm's own name is its value. A value that names no
	// arm is ignored (By chooses). Default empty.
	Values map[string]string `yaml:"values"`
}

// SplitMirror copies requests to a shadow pool. A request body is streamed
// to the chosen arm as it arrives and kept, up to MaxBody, as it passes;
// the copy is sent once the client's exchange is done, with that body. A
// larger body is not copied (counted as skipped). The copy's response is
// read and discarded (its status and latency are compared with the arm's:
// GET /mirrors on the admin API); the client's response and latency never
// wait for it.
type SplitMirror struct {
	// Upstream is the shadow pool. Required; must exist.
	Upstream string `yaml:"upstream"`
	// Percent is the share of requests copied (0–100). Default 100.
	Percent *float64 `yaml:"percent"`
	// MaxQueue bounds the copies waiting or in flight at once (count,
	// 1–10000); a copy beyond it is dropped and counted, never waited for.
	// Default 64.
	MaxQueue int `yaml:"max_queue"`
	// Timeout bounds each copy's whole exchange (duration). Default 10s.
	Timeout Duration `yaml:"timeout"`
	// MaxBody bounds the request body a copy carries (size, 0–64MiB); a
	// request whose body is larger is not copied. 0 copies only requests
	// without a body. At most max_queue × max_body bytes are held at once.
	// Default 256KiB.
	MaxBody *ByteSize `yaml:"max_body"`
}

// Split modes, as written in RouteSplit.By.
const (
	SplitByWeight  = "weight"
	SplitByKey     = "key"
	SplitByTraceID = "trace_id"
)

// SplitModes lists the values RouteSplit.By accepts.
func SplitModes() []string { return []string{SplitByWeight, SplitByKey, SplitByTraceID} }

// Split defaults and bounds.
const (
	// DefaultMirrorPercent is SplitMirror.Percent's default.
	DefaultMirrorPercent = 100.0
	// DefaultMirrorMaxQueue is SplitMirror.MaxQueue's default.
	DefaultMirrorMaxQueue = 64
	// MaxMirrorQueue bounds SplitMirror.MaxQueue.
	MaxMirrorQueue = 10000
	// DefaultMirrorTimeout is SplitMirror.Timeout's default.
	DefaultMirrorTimeout = Duration(10 * time.Second)
	// DefaultMirrorMaxBody is SplitMirror.MaxBody's default.
	DefaultMirrorMaxBody = ByteSize(256 << 10)
	// MaxMirrorBody bounds SplitMirror.MaxBody.
	MaxMirrorBody = ByteSize(64 << 20)
	// MaxSplitArms bounds the arms of one split.
	MaxSplitArms = 16
)

// setDefaults fills s's unset fields; baseline is the route's upstream.
func (s *RouteSplit) setDefaults(baseline string) {
	setDefault(&s.By, SplitByWeight)
	if r := s.Rollout; r != nil {
		r.setDefaults(s.Arms, baseline)
	}
	if m := s.Mirror; m != nil {
		if m.Percent == nil {
			p := DefaultMirrorPercent
			m.Percent = &p
		}
		setDefault(&m.MaxQueue, DefaultMirrorMaxQueue)
		setDefault(&m.Timeout, DefaultMirrorTimeout)
		if m.MaxBody == nil {
			b := DefaultMirrorMaxBody
			m.MaxBody = &b
		}
	}
}

// validate checks s, the split of a route at path p whose upstream is
// baseline; upstreams are the pools' names.
func (s *RouteSplit) validate(col *Collector, p, baseline string, upstreams map[string]string) {
	known := slices.Sorted(maps.Keys(upstreams))
	checkUpstream := func(fp, name string) {
		switch _, ok := upstreams[name]; {
		case name == "":
			col.Addf(fp, "is required")
		case !ok:
			col.Addf(fp, "unknown upstream %q%s", name, didYouMean(name, known))
		}
	}
	switch {
	case len(s.Arms) < 2:
		col.Addf(p+".arms", "needs at least two arms, got %d", len(s.Arms))
	case len(s.Arms) > MaxSplitArms:
		col.Addf(p+".arms", "at most %d arms, got %d", MaxSplitArms, len(s.Arms))
	}
	names := map[string]bool{}
	pools := map[string]bool{}
	var total float64
	for i, a := range s.Arms {
		ap := indexPath(p+".arms", i)
		switch {
		case a.Name == "":
			col.Addf(ap+".name", "is required")
		case !isToken(a.Name):
			col.Addf(ap+".name", "invalid arm name %q (an HTTP token: letters, digits and !#$%%&'*+-.^_`|~)", a.Name)
		case names[a.Name]:
			col.Addf(ap+".name", "arm %q is listed twice", a.Name)
		}
		names[a.Name] = true
		checkUpstream(ap+".upstream", a.Upstream)
		if a.Upstream != "" && pools[a.Upstream] {
			col.Addf(ap+".upstream", "upstream %q is another arm's too", a.Upstream)
		}
		pools[a.Upstream] = true
		if !(a.Weight >= 0 && a.Weight <= 1e6) {
			col.Addf(ap+".weight", "must be between 0 and 1000000, got %v", a.Weight)
		} else {
			total += a.Weight
		}
	}
	if len(s.Arms) >= 2 && total <= 0 {
		col.Addf(p+".arms", "at least one arm needs a weight above 0")
	}
	if baseline != "" && len(s.Arms) >= 2 && !pools[baseline] {
		col.Addf(strings.TrimSuffix(p, ".split")+".upstream", "must be the upstream of one of split.arms (the baseline), got %q", baseline)
	}
	if !slices.Contains(SplitModes(), s.By) {
		col.Addf(p+".by", "unknown split mode %q (one of %s)%s", s.By, strings.Join(SplitModes(), ", "), didYouMean(s.By, SplitModes()))
	}
	s.Key.validate(col, p+".key", false)
	if f := s.Force; f != nil {
		SplitSource{Header: f.Header, Cookie: f.Cookie}.validate(col, p+".force", true)
		for _, v := range slices.Sorted(maps.Keys(f.Values)) {
			if arm := f.Values[v]; !names[arm] {
				col.Addf(keyPath(p+".force.values", v), "unknown arm %q%s", arm, didYouMean(arm, slices.Sorted(maps.Keys(names))))
			}
		}
	}
	if m := s.Mirror; m != nil {
		checkUpstream(p+".mirror.upstream", m.Upstream)
		if pc := m.Percent; pc != nil && !(*pc >= 0 && *pc <= 100) {
			col.Addf(p+".mirror.percent", "must be between 0 and 100, got %v", *pc)
		}
		if m.MaxQueue < 1 || m.MaxQueue > MaxMirrorQueue {
			col.Addf(p+".mirror.max_queue", "must be between 1 and %d, got %d", MaxMirrorQueue, m.MaxQueue)
		}
		if b := m.MaxBody; b != nil && (*b < 0 || *b > MaxMirrorBody) {
			col.Addf(p+".mirror.max_body", "must be between 0 and 64MiB, got %d", int64(*b))
		}
		checkDuration(col, p+".mirror.timeout", m.Timeout)
		if m.Timeout <= 0 {
			col.Addf(p+".mirror.timeout", "must be positive, got %s", m.Timeout)
		}
	}
	if h := s.ArmHeader; h != "" && !isToken(h) {
		col.Addf(p+".arm_header", "invalid header name %q", h)
	}
	if r := s.Rollout; r != nil {
		r.validate(col, p+".rollout", s.Arms, baseline)
	}
}

// validate checks a header-or-cookie source at path p; required says one
// of the two must be set.
func (s SplitSource) validate(col *Collector, p string, required bool) {
	switch {
	case s.Header != "" && s.Cookie != "":
		col.Addf(p+".cookie", "header and cookie cannot both be set")
	case s.Header == "" && s.Cookie == "" && required:
		col.Addf(p, "needs header or cookie")
	case s.Header != "" && !isToken(s.Header):
		col.Addf(p+".header", "invalid header name %q", s.Header)
	case s.Cookie != "" && !isToken(s.Cookie):
		col.Addf(p+".cookie", "invalid cookie name %q", s.Cookie)
	}
}
