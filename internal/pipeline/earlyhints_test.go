package pipeline

import (
	"slices"
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/router"
)

// hintRecorder is a recorder that also keeps the Link fields present at
// each WriteHeader, and the pushes asked of it.
type hintRecorder struct {
	recorder
	linksAt [][]string
	pushed  []string
	refuse  bool
}

func (r *hintRecorder) WriteHeader(status int) {
	r.linksAt = append(r.linksAt, headerValues(&r.Hdr, "Link"))
	r.recorder.WriteHeader(status)
}

func (r *hintRecorder) Write(p []byte) (int, error) {
	if len(r.Statuses) == 0 {
		r.WriteHeader(200)
	}
	return r.recorder.Write(p)
}

func (r *hintRecorder) Push(target string, maxBytes int64) error {
	if r.refuse {
		return exchange.ErrNotHijackable // any error: the client refused
	}
	r.pushed = append(r.pushed, target)
	return nil
}

// routeParams returns the params of path matched against pattern.
func routeParams(t testing.TB, pattern, path string) router.Params {
	t.Helper()
	var b router.Builder[int]
	if err := b.Add(router.Spec[int]{Name: "r", Path: pattern, Value: 1}); err != nil {
		t.Fatal(err)
	}
	r, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	var p router.Params
	if res := r.Lookup("h", "GET", path, nil, &p); !res.Found {
		t.Fatalf("%s does not match %s", path, pattern)
	}
	return p
}

func TestEarlyHints(t *testing.T) {
	const pattern = "/v1/models/:model/predict"
	links := []string{
		"</v1/models/:model/assets/model_config.json>; rel=preload; as=fetch",
		"</v1/models/:model/assets/tokenizer.bin>; rel=preload; as=fetch",
		"<https://cdn.example.com/app.js>; rel=preload; as=script",
	}
	tests := []struct {
		name       string
		proto      exchange.Proto
		path       string
		push       RoutePush
		refusePush bool
		wantStatus []int
		wantLinks  []string // at the 103
		wantPushed []string
	}{
		{
			name:       "HTTP/1.1 gets a 103 with the parameters filled in, then the final response",
			proto:      exchange.HTTP11,
			path:       "/v1/models/resnet50/predict",
			wantStatus: []int{103, 200},
			wantLinks: []string{
				"</v1/models/resnet50/assets/model_config.json>; rel=preload; as=fetch",
				"</v1/models/resnet50/assets/tokenizer.bin>; rel=preload; as=fetch",
				"<https://cdn.example.com/app.js>; rel=preload; as=script",
			},
		},
		{
			name:       "HTTP/1.0 gets no 1xx",
			proto:      exchange.HTTP10,
			path:       "/v1/models/resnet50/predict",
			wantStatus: []int{200},
		},
		{
			name:       "a parameter value cannot close the link target",
			proto:      exchange.HTTP2,
			path:       "/v1/models/a>b%3E\"c/predict",
			wantStatus: []int{103, 200},
			wantLinks: []string{
				"</v1/models/a%3Eb%3E%22c/assets/model_config.json>; rel=preload; as=fetch",
				"</v1/models/a%3Eb%3E%22c/assets/tokenizer.bin>; rel=preload; as=fetch",
				"<https://cdn.example.com/app.js>; rel=preload; as=script",
			},
		},
		{
			name:       "HTTP/2 push sends same-host targets up to max_resources",
			proto:      exchange.HTTP2,
			path:       "/v1/models/llama/predict",
			push:       RoutePush{Enabled: true, MaxResources: 1, MaxBytes: 1 << 10},
			wantStatus: []int{103, 200},
			wantPushed: []string{"/v1/models/llama/assets/model_config.json"},
		},
		{
			name:       "push stops at the first refusal",
			proto:      exchange.HTTP2,
			path:       "/v1/models/llama/predict",
			push:       RoutePush{Enabled: true, MaxResources: 4, MaxBytes: 1 << 10},
			refusePush: true,
			wantStatus: []int{103, 200},
		},
		{
			name:       "push is HTTP/2 only",
			proto:      exchange.HTTP11,
			path:       "/v1/models/llama/predict",
			push:       RoutePush{Enabled: true, MaxResources: 4, MaxBytes: 1 << 10},
			wantStatus: []int{103, 200},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var finalLinks []string
			terminal := exchange.HandlerFunc(func(x *exchange.Exchange) {
				finalLinks = headerValues(x.W.Header(), "Link")
				x.W.WriteHeader(200)
			})
			h, err := newEarlyHints(&EarlyHintsSettings{EarlyHints: links, Push: tt.push}, nil, terminal)
			if err != nil {
				t.Fatal(err)
			}
			x, _ := newExchange(t, "POST")
			rec := &hintRecorder{refuse: tt.refusePush}
			x.W = rec
			x.Req.Proto = tt.proto
			x.Req.Path = tt.path
			x.State.Params = routeParams(t, pattern, tt.path)
			h.ServeExchange(x)

			if !slices.Equal(rec.Statuses, tt.wantStatus) {
				t.Fatalf("statuses %v, want %v", rec.Statuses, tt.wantStatus)
			}
			if tt.wantLinks != nil && !slices.Equal(rec.linksAt[0], tt.wantLinks) {
				t.Errorf("103 links:\n%q\nwant:\n%q", rec.linksAt[0], tt.wantLinks)
			}
			if len(finalLinks) != 0 {
				t.Errorf("final response carries the hints: %q", finalLinks)
			}
			if !slices.Equal(rec.pushed, tt.wantPushed) {
				t.Errorf("pushed %q, want %q", rec.pushed, tt.wantPushed)
			}
		})
	}
}

func TestEarlyHintsOffWithoutLinks(t *testing.T) {
	next := exchange.HandlerFunc(func(*exchange.Exchange) {})
	h, err := newEarlyHints(&EarlyHintsSettings{}, nil, next)
	if err != nil {
		t.Fatal(err)
	}
	if _, same := h.(exchange.HandlerFunc); !same {
		t.Errorf("a route without early_hints got a stage %T, want next unchanged", h)
	}
}

func TestEarlyHintsAllocateNothing(t *testing.T) {
	h, err := newEarlyHints(&EarlyHintsSettings{EarlyHints: []string{
		"</v1/models/:model/assets/model_config.json>; rel=preload; as=fetch",
		"</static/app.css>; rel=preload; as=style",
	}}, nil, exchange.HandlerFunc(func(x *exchange.Exchange) { x.W.WriteHeader(200) }))
	if err != nil {
		t.Fatal(err)
	}
	x, rec := newExchange(t, "POST")
	x.State.Params = routeParams(t, "/v1/models/:model/predict", "/v1/models/resnet50/predict")
	h.ServeExchange(x) // warm the header's buffers
	allocs := testing.AllocsPerRun(100, func() {
		rec.Reset()
		h.ServeExchange(x)
	})
	if allocs != 0 {
		t.Errorf("a hinted request allocates %.1f times, want 0", allocs)
	}
}

func BenchmarkEarlyHints(b *testing.B) {
	h, err := newEarlyHints(&EarlyHintsSettings{EarlyHints: []string{
		"</v1/models/:model/assets/model_config.json>; rel=preload; as=fetch",
		"</v1/models/:model/assets/tokenizer.bin>; rel=preload; as=fetch",
	}}, nil, exchange.HandlerFunc(func(x *exchange.Exchange) { x.W.WriteHeader(200) }))
	if err != nil {
		b.Fatal(err)
	}
	x := exchange.Acquire()
	defer exchange.Release(x)
	rec := &recorder{}
	x.W = rec
	x.Req.Proto = exchange.HTTP11
	x.State.Params = routeParams(b, "/v1/models/:model/predict", "/v1/models/resnet50/predict")
	b.ReportAllocs()
	for b.Loop() {
		rec.Reset()
		h.ServeExchange(x)
	}
}
