package loadtest

import (
	"math"
	"testing"
	"time"
)

func TestParseProfile(t *testing.T) {
	s := time.Second
	cases := []struct {
		name string
		in   string
		rate float64
		want Profile
		err  bool
	}{
		{"constant takes --rate", "constant", 500, Constant(500), false},
		{"empty is constant", "", 500, Constant(500), false},
		{"constant with its own rate", "constant:250", 0, Constant(250), false},
		{"constant without a rate", "constant", 0, nil, true},
		{"ramp", "ramp:100-5000", 0, Ramp{From: 100, To: 5000, Over: 10 * s}, false},
		{"ramp down", "ramp:5000-100", 0, Ramp{From: 5000, To: 100, Over: 10 * s}, false},
		{"ramp without TO", "ramp:100", 0, nil, true},
		{"ramp from zero", "ramp:0-100", 0, nil, true},
		{"step", "step:100,200,400/5s", 0, Step{Rates: []float64{100, 200, 400}, Every: 5 * s}, false},
		{"step without duration", "step:100,200", 0, nil, true},
		{"step with a bad rate", "step:100,x/1s", 0, nil, true},
		{"surge", "surge:base=1000,x=5,for=2s,every=10s", 0, Surge{Base: 1000, Factor: 5, For: 2 * s, Every: 10 * s}, false},
		{"surge in another order", "surge:every=10s,for=2s,x=5,base=1000", 0, Surge{Base: 1000, Factor: 5, For: 2 * s, Every: 10 * s}, false},
		{"surge missing a key", "surge:base=1000,x=5,for=2s", 0, nil, true},
		{"surge longer than its period", "surge:base=1000,x=5,for=10s,every=10s", 0, nil, true},
		{"surge with an unknown key", "surge:base=1000,x=5,for=2s,every=10s,y=1", 0, nil, true},
		{"unknown kind", "sine:100", 0, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProfile(tc.in, tc.rate, 10*s)
			if tc.err {
				if err == nil {
					t.Fatalf("ParseProfile(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tc.want.String() {
				t.Errorf("ParseProfile(%q) = %v, want %v", tc.in, got, tc.want)
			}
			again, err := ParseProfile(got.String(), 0, 10*s)
			if err != nil || again.String() != got.String() {
				t.Errorf("String %q does not parse back: %v, %v", got, again, err)
			}
		})
	}
}

func TestProfileRates(t *testing.T) {
	s := time.Second
	ramp := Ramp{From: 100, To: 1100, Over: 10 * s}
	step := Step{Rates: []float64{100, 200, 400}, Every: 5 * s}
	surge := Surge{Base: 1000, Factor: 5, For: 2 * s, Every: 10 * s}
	cases := []struct {
		name string
		p    Profile
		at   time.Duration
		want float64
	}{
		{"constant", Constant(300), 7 * s, 300},
		{"ramp start", ramp, 0, 100},
		{"ramp middle", ramp, 5 * s, 600},
		{"ramp after its end", ramp, 20 * s, 1100},
		{"step first", step, 4 * s, 100},
		{"step second", step, 5 * s, 200},
		{"step holds the last", step, time.Minute, 400},
		{"surge base before the first", surge, 3 * s, 1000},
		{"surge first", surge, 10 * s, 5000},
		{"surge ends", surge, 12 * s, 1000},
		{"surge again", surge, 21 * s, 5000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.Rate(tc.at); got != tc.want {
				t.Errorf("Rate(%s) = %v, want %v", tc.at, got, tc.want)
			}
		})
	}
}

// The schedule's intended times follow the profile: the number of
// requests due by a time is the integral of the rate.
func TestScheduleCounts(t *testing.T) {
	s := time.Second
	cases := []struct {
		name   string
		p      Profile
		warmup time.Duration
		until  time.Duration
		want   float64
	}{
		{"constant", Constant(1000), 0, 10 * s, 10000},
		{"constant, a rate whose period is not exact in binary", Constant(300), 0, 10 * s, 3000},
		{"constant after a warm-up", Constant(1000), 2 * s, 12 * s, 12000},
		{"ramp", Ramp{From: 100, To: 1100, Over: 10 * s}, 0, 10 * s, 6000},
		{"step", Step{Rates: []float64{100, 200, 400}, Every: 5 * s}, 0, 15 * s, 3500},
		{"surge", Surge{Base: 1000, Factor: 5, For: 2 * s, Every: 10 * s}, 0, 20 * s, 20000 + 2*4000}, // one surge, at 10s,
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc := schedule{profile: tc.p, warmup: tc.warmup}
			n := 0
			for sc.peek() < tc.until {
				sc.advance()
				n++
			}
			if c, ok := tc.p.(Constant); ok && float64(n) != tc.want {
				t.Errorf("%d requests due by %s at %v/s, want exactly %.0f", n, tc.until, float64(c), tc.want)
			}
			if math.Abs(float64(n)-tc.want) > tc.want/1000 {
				t.Errorf("%d requests due by %s, want %.0f", n, tc.until, tc.want)
			}
		})
	}
}
