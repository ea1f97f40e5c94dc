package server_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/pipeline"
	"github.com/penstock-dev/penstock/internal/server"
)

// This file is the whole of a new stage, added the way any stage is: its
// settings type (the route fields it owns, decoded strictly, with defaults
// and checks), its constructor, its handler, and one line in a stage table.
// Nothing else in the tree knows about it.

// stampSettings are the stamp stage's route fields.
type stampSettings struct {
	// Stamp adds a header to the requests of the route before they go on.
	// Absent: the stage does nothing.
	Stamp *stampBlock `yaml:"stamp"`
}

// stampBlock is the stamp field of a route.
type stampBlock struct {
	// Header is the request header to add. Default "X-Stamp".
	Header string `yaml:"header"`
	// Value is the header's value. Required.
	Value string `yaml:"value"`
}

func (s *stampSettings) SetDefaults() {
	if s.Stamp != nil && s.Stamp.Header == "" {
		s.Stamp.Header = "X-Stamp"
	}
}

func (s *stampSettings) Check(r *pipeline.Route) {
	if s.Stamp == nil {
		return
	}
	if strings.ContainsAny(s.Stamp.Header, " :\t\r\n") {
		r.Errorf("stamp.header", "%q is not a header name", s.Stamp.Header)
	}
	if s.Stamp.Value == "" {
		r.Errorf("stamp.value", "is required")
	}
}

// stamp is the stage's handler; served counts the requests it saw.
type stamp struct {
	header, value string
	served        *atomic.Int64
	next          exchange.Handler
}

func (s *stamp) ServeExchange(x *exchange.Exchange) {
	s.served.Add(1)
	x.Req.Header.Add(s.header, s.value)
	s.next.ServeExchange(x)
}

// stampStage defines the stage; served counts the requests it saw on any
// route.
func stampStage(served *atomic.Int64) pipeline.Stage {
	return pipeline.Define("stamp", func(s *stampSettings, _ *pipeline.Route, next exchange.Handler) (exchange.Handler, error) {
		if s.Stamp == nil {
			return next, nil
		}
		return &stamp{header: s.Stamp.Header, value: s.Stamp.Value, served: served, next: next}, nil
	})
}

// stampTable is the standard table with the stamp stage after body_limit
// and before early_hints and cache.
func stampTable(t *testing.T, served *atomic.Int64) *pipeline.Registry {
	t.Helper()
	var stages []pipeline.Stage
	for _, s := range pipeline.Standard().Stages() {
		if s.Name() == "early_hints" {
			stages = append(stages, stampStage(served))
		}
		stages = append(stages, s)
	}
	reg, err := pipeline.NewRegistry(stages...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// newWithStages parses yamlText and builds a server with stages.
func newWithStages(yamlText string, stages *pipeline.Registry) (*server.Server, error) {
	cfg, err := config.Parse([]byte(yamlText), "test.yaml")
	if err != nil {
		return nil, err
	}
	return server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Stages: stages})
}

// TestAStageAddedByATableRunsInItsPlace compiles a config that uses the
// stamp stage and sends real requests through it: the stamp reaches the
// upstream; the stage runs after body_limit (an oversized body is refused
// before the stamp sees it) and before cache (a hit is stamped though the
// upstream is not asked).
func TestAStageAddedByATableRunsInItsPlace(t *testing.T) {
	rec := newRecorder(t, "up")
	var served atomic.Int64
	g, err := newWithStages(lines(`listeners: [{name: plain, address: "127.0.0.1:0"}]
access_log: {enabled: false}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes:
  - name: assets
    match: {path_prefix: /assets}
    upstream: up
    max_request_body: 16
    stamp: {value: toy}
    cache: {enabled: true, default_ttl: 1m}
  - name: plain
    match: {path_prefix: /plain}
    upstream: up
`, rec.addr()), stampTable(t, &served))
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	base := baseURL(g, "plain")

	// The effective configuration (GET /config) shows the stage's fields
	// with their defaults, as it does every other field.
	var eff stampSettings
	if err := g.Snapshot().EffectiveConfig().DecodeStageFields(0, &eff); err != nil || eff.Stamp == nil || *eff.Stamp != (stampBlock{Header: "X-Stamp", Value: "toy"}) {
		t.Errorf("effective stamp = %+v (%v), want the default header and the value set", eff.Stamp, err)
	}

	steps := []struct {
		name         string
		method, path string
		body         string
		wantStatus   int
		wantCache    string
		wantStamp    []string // on the upstream's echo; nil when the upstream was not asked
		wantServed   int64
		wantUpstream int64
	}{
		{name: "a miss is stamped on its way upstream", method: "GET", path: "/assets/a.bin",
			wantStatus: 200, wantCache: "penstock; fwd=miss", wantStamp: []string{"toy"}, wantServed: 1, wantUpstream: 1},
		{name: "a hit is stamped: the stage runs before cache", method: "GET", path: "/assets/a.bin",
			wantStatus: 200, wantCache: "penstock; hit", wantStamp: []string{"toy"}, wantServed: 2, wantUpstream: 1},
		{name: "an oversized body never reaches the stage: body_limit runs first", method: "POST", path: "/assets/upload",
			body: strings.Repeat("b", 17), wantStatus: 413, wantServed: 2, wantUpstream: 1},
		{name: "a route without the stage's field has no stage", method: "GET", path: "/plain/x",
			wantStatus: 200, wantStamp: []string{}, wantServed: 2, wantUpstream: 2},
	}
	for _, st := range steps {
		var body io.Reader
		if st.body != "" {
			body = strings.NewReader(st.body)
		}
		resp, got := do(t, client, st.method, base+st.path, nil, body)
		if resp.StatusCode != st.wantStatus {
			t.Fatalf("%s: status %d, want %d (%s)", st.name, resp.StatusCode, st.wantStatus, got)
		}
		if c := resp.Header.Get("Cache-Status"); c != st.wantCache {
			t.Errorf("%s: Cache-Status %q, want %q", st.name, c, st.wantCache)
		}
		if st.wantStamp != nil {
			if stamps := decodeSeen(t, got).Header.Values("X-Stamp"); !slices.Equal(stamps, st.wantStamp) {
				t.Errorf("%s: upstream saw X-Stamp %q, want %q", st.name, stamps, st.wantStamp)
			}
		}
		if n := served.Load(); n != st.wantServed {
			t.Errorf("%s: the stage served %d requests, want %d", st.name, n, st.wantServed)
		}
		if n := rec.count.Load(); n != st.wantUpstream {
			t.Errorf("%s: the upstream was asked %d times, want %d", st.name, n, st.wantUpstream)
		}
	}
}

// TestAStageAddedByATableOwnsItsFields checks that the new stage's fields
// are decoded strictly, defaulted and checked with the file's lines like
// every other field, and that a table without the stage refuses them.
func TestAStageAddedByATableOwnsItsFields(t *testing.T) {
	const head = `listeners: [{name: plain, address: "127.0.0.1:0"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes:
  - name: assets
    match: {path_prefix: /assets}
    upstream: up
`
	var served atomic.Int64
	tests := []struct {
		name   string
		fields string // route fields from line 7
		stages *pipeline.Registry
		want   []string
	}{
		{name: "valid, with the default header", fields: "    stamp: {value: toy}\n", stages: stampTable(t, &served)},
		{
			name:   "unknown field inside the block",
			fields: "    stamp: {value: toy, heder: X-A}\n",
			stages: stampTable(t, &served),
			want:   []string{`test.yaml: routes[0].stamp.heder (line 7): unknown field; did you mean "header"?`},
		},
		{
			name:   "the stage's own checks",
			fields: "    stamp:\n      header: \"X A\"\n",
			stages: stampTable(t, &served),
			want: []string{
				`test.yaml: routes[0].stamp.value (line 7): is required`, // absent: the block's line
				`test.yaml: routes[0].stamp.header (line 8): "X A" is not a header name`,
			},
		},
		{
			name:   "a misspelt field is suggested among the new stage's",
			fields: "    stomp: {value: toy}\n",
			stages: stampTable(t, &served),
			want:   []string{`test.yaml: routes[0].stomp (line 7): unknown field; did you mean "stamp"?`},
		},
		{
			name:   "the standard table does not know the field",
			fields: "    stamp: {value: toy}\n",
			stages: pipeline.Standard(),
			want:   []string{`test.yaml: routes[0].stamp (line 7): unknown field`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, err := newWithStages(head+tt.fields, tt.stages)
			if g != nil {
				t.Cleanup(func() { g.Shutdown(context.Background()) })
			}
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if len(got) != len(tt.want) {
				t.Fatalf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tt.want[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}
