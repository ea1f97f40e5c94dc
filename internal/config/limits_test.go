package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLimits(t *testing.T) {
	tests := []struct {
		name string
		yaml string // appended to validPrefix: its first line is line 13
		want []string
	}{
		{
			name: "token bucket and sliding window are valid",
			yaml: `limits:
  - {name: per-ip, algorithm: token_bucket, rate: 10, burst: 20}
  - name: per-tenant
    algorithm: sliding_window
    count: 1000
    window: 10s
    key: {from: header, name: X-Tenant}
    cost: {from: body_bytes}
    mode: shadow
    redis: {address: "127.0.0.1:6379", replicas: 3, on_failure: closed}
`,
		},
		{
			name: "missing numbers",
			yaml: `limits:
  - {name: a, algorithm: token_bucket}
  - {name: b, algorithm: sliding_window}
  - {name: c}
`,
			want: []string{
				`limits[0].rate (line 14): must be positive (units per second)`,
				`limits[0].burst (line 14): must be at least 1`,
				`limits[1].count (line 15): must be at least 1`,
				`limits[1].window (line 15): must be positive`,
				`limits[2].algorithm (line 16): is required: token_bucket or sliding_window`,
			},
		},
		{
			name: "typos get suggestions",
			yaml: `limits:
  - {name: a, algorithm: token_bucke, key: {from: headr, name: X}, cost: {from: body_byte}}
`,
			want: []string{
				`limits[0].algorithm (line 14): unknown algorithm "token_bucke"; want token_bucket or sliding_window; did you mean "token_bucket"?`,
				`limits[0].key.from (line 14): unknown key source "headr"; want one of client_ip, header, param, jwt_claim, constant; did you mean "header"?`,
				`limits[0].cost.from (line 14): unknown cost source "body_byte"; want one of constant, header, body_bytes; did you mean "body_bytes"?`,
			},
		},
		{
			name: "fields of the other algorithm, names, modes",
			yaml: `limits:
  - {name: a, algorithm: token_bucket, rate: 1, window: 1s, mode: dry}
  - {name: a, algorithm: sliding_window, count: 1, window: 1s, burst: 3, key: {from: param}}
`,
			want: []string{
				`limits[0].count (line 14): count and window are for sliding_window; token_bucket uses rate and burst`,
				`limits[0].mode (line 14): unknown mode "dry"; want enforce or shadow`,
				`limits[1].name (line 15): duplicate limit name "a" (first used by limits[0])`,
				`limits[1].rate (line 15): rate and burst are for token_bucket; sliding_window uses count and window`,
				`limits[1].key.name (line 15): needs the path parameter's name`,
			},
		},
		{
			name: "redis",
			yaml: `limits:
  - name: g
    algorithm: sliding_window
    count: 10
    window: 1s
    redis: {address: "redis://x:1", timeout: 5s, on_failure: maybe}
`,
			want: []string{
				`limits[0].redis.address (line 18): invalid endpoint address "redis://x:1": write host:port without a scheme`,
				`limits[0].redis.timeout (line 18): must be at most 1s (every request waits up to it)`,
				`limits[0].redis.on_failure (line 18): unknown policy "maybe"; want local, open or closed`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(text(validPrefix+tt.yaml), "")
			if err == nil {
				err = cfg.Validate()
			}
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if !matchLines(got, tt.want, "") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestLimitDefaults(t *testing.T) {
	cfg, err := Parse(text(validPrefix+`limits:
  - {name: a, algorithm: token_bucket, rate: 2.5}
  - {name: b, algorithm: sliding_window, count: 5, window: 1m, redis: {address: "127.0.0.1:6379"}}
`), "")
	if err != nil {
		t.Fatal(err)
	}
	a, b := cfg.Limits[0], cfg.Limits[1]
	if a.Burst != 3 || a.Key.From != "client_ip" || a.Cost.From != "constant" || a.Cost.Value != 1 ||
		a.Mode != "enforce" || a.MaxKeys != 100000 || a.AddHeaders == nil || !*a.AddHeaders {
		t.Errorf("token bucket defaults: %+v", a)
	}
	if r := b.Redis; r.Prefix != "penstock:b:" || r.Timeout.D() != 2*time.Millisecond || r.Replicas != 1 || r.OnFailure != "local" {
		t.Errorf("redis defaults: %+v", *r)
	}
	if l, _ := cfg.LimitNamed("b"); l == nil || l.Name != "b" {
		t.Error(`LimitNamed("b") did not find it`)
	}
	if _, hint := cfg.LimitNamed("bb"); hint != `; did you mean "b"?` {
		t.Errorf("suggestion %q", hint)
	}
}

// FuzzLimits checks that no limits section makes decoding, defaults or
// validation panic, and that failures are reported as Errors. The corpus is
// in testdata/fuzz/FuzzLimits.
func FuzzLimits(f *testing.F) {
	files, _ := filepath.Glob("testdata/fuzz/FuzzLimits/*")
	if len(files) == 0 {
		f.Fatal("no seed corpus")
	}
	f.Add([]byte("- {name: a, algorithm: token_bucket, rate: 1}\n"))
	f.Fuzz(func(t *testing.T, limits []byte) {
		data := append([]byte(minimalYAML+"\nlimits:\n"), limits...)
		cfg, err := Parse(data, "fuzz.yaml")
		if err != nil {
			checkErrors(t, err)
			return
		}
		cfg.SetDefaults()
		if err := cfg.Validate(); err != nil {
			checkErrors(t, err)
		}
		for i := range cfg.Limits {
			cfg.LimitNamed(cfg.Limits[i].Name)
		}
	})
}
