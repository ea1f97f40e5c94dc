package loadtest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// A Profile is the target request rate of an open-loop run as a function of
// the time since the measured part of the run began. During the warm-up the
// rate is Rate(0).
type Profile interface {
	// Rate returns requests per second at elapsed; it is always > 0.
	Rate(elapsed time.Duration) float64
	// String is the profile in the syntax ParseProfile reads.
	String() string
}

// Constant is a fixed rate in requests per second.
type Constant float64

func (c Constant) Rate(time.Duration) float64 { return float64(c) }
func (c Constant) String() string             { return "constant:" + fmtRate(float64(c)) }

// Ramp goes linearly from From to To requests per second over Over, then
// stays at To.
type Ramp struct {
	From, To float64
	Over     time.Duration
}

func (r Ramp) Rate(e time.Duration) float64 {
	if e >= r.Over || r.Over <= 0 {
		return r.To
	}
	if e < 0 {
		return r.From
	}
	return r.From + (r.To-r.From)*float64(e)/float64(r.Over)
}

func (r Ramp) String() string { return "ramp:" + fmtRate(r.From) + "-" + fmtRate(r.To) }

// Step holds each of Rates for Every, in turn, and then stays at the last.
type Step struct {
	Rates []float64
	Every time.Duration
}

func (s Step) Rate(e time.Duration) float64 {
	i := 0
	if e > 0 {
		i = int(e / s.Every)
	}
	return s.Rates[min(i, len(s.Rates)-1)]
}

func (s Step) String() string {
	parts := make([]string, len(s.Rates))
	for i, r := range s.Rates {
		parts[i] = fmtRate(r)
	}
	return "step:" + strings.Join(parts, ",") + "/" + s.Every.String()
}

// Surge runs at Base and multiplies the rate by Factor for For at every
// multiple of Every (the first surge begins at Every).
type Surge struct {
	Base, Factor float64
	For, Every   time.Duration
}

func (s Surge) Rate(e time.Duration) float64 {
	if e >= s.Every && e%s.Every < s.For {
		return s.Base * s.Factor
	}
	return s.Base
}

func (s Surge) String() string {
	return fmt.Sprintf("surge:base=%s,x=%s,for=%s,every=%s", fmtRate(s.Base), fmtRate(s.Factor), s.For, s.Every)
}

func fmtRate(r float64) string { return strconv.FormatFloat(r, 'f', -1, 64) }

// MaxRate is the highest request rate a profile may ask for.
const MaxRate = 10_000_000

// ParseProfile reads a rate profile:
//
//	constant             --rate req/s for the whole run (rate must be > 0)
//	ramp:FROM-TO         linear from FROM to TO req/s over the run's duration
//	step:R1,R2,.../DUR   each rate for DUR, then the last one
//	surge:base=B,x=F,for=D1,every=D2
//	                     B req/s, times F for D1 at every D2 (first at D2)
//
// rate is the --rate value, used by "constant"; duration is the measured
// duration, used by "ramp".
func ParseProfile(s string, rate float64, duration time.Duration) (Profile, error) {
	kind, arg, _ := strings.Cut(s, ":")
	positive := func(what, v string) (float64, error) {
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || !(f > 0) || f > MaxRate {
			return 0, fmt.Errorf("profile %q: %s %q must be a number in (0, %d]", s, what, v, MaxRate)
		}
		return f, nil
	}
	dur := func(what, v string) (time.Duration, error) {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("profile %q: %s %q must be a positive duration like 10s", s, what, v)
		}
		return d, nil
	}
	switch kind {
	case "", "constant":
		if arg != "" {
			r, err := positive("rate", arg)
			if err != nil {
				return nil, err
			}
			return Constant(r), nil
		}
		if !(rate > 0) || rate > MaxRate {
			return nil, fmt.Errorf("profile constant: --rate must be in (0, %d]", MaxRate)
		}
		return Constant(rate), nil
	case "ramp":
		from, to, ok := strings.Cut(arg, "-")
		if !ok {
			return nil, fmt.Errorf("profile %q: want ramp:FROM-TO, e.g. ramp:100-5000", s)
		}
		f, err := positive("FROM", from)
		if err != nil {
			return nil, err
		}
		t, err := positive("TO", to)
		if err != nil {
			return nil, err
		}
		return Ramp{From: f, To: t, Over: duration}, nil
	case "step":
		list, every, ok := strings.Cut(arg, "/")
		if !ok {
			return nil, fmt.Errorf("profile %q: want step:R1,R2,.../DURATION, e.g. step:100,200,400/10s", s)
		}
		d, err := dur("DURATION", every)
		if err != nil {
			return nil, err
		}
		var rates []float64
		for _, r := range strings.Split(list, ",") {
			f, err := positive("rate", r)
			if err != nil {
				return nil, err
			}
			rates = append(rates, f)
		}
		return Step{Rates: rates, Every: d}, nil
	case "surge":
		var sg Surge
		seen := map[string]bool{}
		for _, kv := range strings.Split(arg, ",") {
			k, v, ok := strings.Cut(kv, "=")
			k = strings.TrimSpace(k)
			if !ok || seen[k] {
				return nil, fmt.Errorf("profile %q: want surge:base=B,x=F,for=D,every=D", s)
			}
			seen[k] = true
			var err error
			switch k {
			case "base":
				sg.Base, err = positive("base", v)
			case "x":
				sg.Factor, err = positive("x", v)
			case "for":
				sg.For, err = dur("for", v)
			case "every":
				sg.Every, err = dur("every", v)
			default:
				err = fmt.Errorf("profile %q: unknown key %q (base, x, for, every)", s, k)
			}
			if err != nil {
				return nil, err
			}
		}
		if len(seen) != 4 {
			return nil, fmt.Errorf("profile %q: want all of base, x, for and every", s)
		}
		if sg.For >= sg.Every {
			return nil, fmt.Errorf("profile %q: for (%s) must be shorter than every (%s)", s, sg.For, sg.Every)
		}
		if sg.Base*sg.Factor > MaxRate {
			return nil, fmt.Errorf("profile %q: base*x exceeds %d req/s", s, MaxRate)
		}
		return sg, nil
	}
	return nil, fmt.Errorf("profile %q: unknown kind %q (constant, ramp, step, surge)", s, kind)
}
