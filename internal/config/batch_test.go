package config

import (
	"testing"
	"time"
)

// TestRouteBatch checks a route's batch block from YAML text: the defaults,
// values as written, and an error naming the field for each bad value.
func TestRouteBatch(t *testing.T) {
	const head = `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: models, endpoints: [{address: "127.0.0.1:9"}]}
routes:
  - name: r
    match: {path: /}
    upstream: models
`
	tests := []struct {
		name  string
		batch string // the route's batch block
		check func(t *testing.T, b *RouteBatch)
		err   string // a substring of the error, "" for none
	}{
		{name: "defaults", batch: `{format: kserve_v1}`, check: func(t *testing.T, b *RouteBatch) {
			if b.MaxBatchSize != 32 || b.MaxQueueDelay.D() != 5*time.Millisecond || b.MaxInFlightPerEndpoint != 1 ||
				b.MaxQueue != 1024 || b.MaxRequestBytes != 1<<20 || b.MaxResponseBytes != 64<<20 {
				t.Errorf("defaults: %+v", b)
			}
		}},
		{name: "values as written", batch: `{format: generic, request_path: payload.rows, response_path: out,
      max_batch_size: 64, preferred_batch_sizes: [16, 32], max_queue_delay: 2ms, max_in_flight_per_endpoint: 2,
      max_queue: 100, max_request_bytes: 64KiB, key_headers: [X-Tenant]}`,
			check: func(t *testing.T, b *RouteBatch) {
				if b.MaxBatchSize != 64 || len(b.PreferredBatchSizes) != 2 || b.MaxQueueDelay.D() != 2*time.Millisecond ||
					b.MaxInFlightPerEndpoint != 2 || b.MaxQueue != 100 || b.MaxRequestBytes != 64<<10 ||
					b.RequestPath != "payload.rows" || b.KeyHeaders[0] != "X-Tenant" {
					t.Errorf("values: %+v", b)
				}
			}},
		{name: "no format", batch: `{max_batch_size: 4}`, err: "routes[0].batch.format: is required"},
		{name: "unknown format", batch: `{format: kserve_v3}`, err: `routes[0].batch.format: unknown format "kserve_v3"`},
		{name: "generic without paths", batch: `{format: generic, response_path: out}`, err: "routes[0].batch.request_path: is required with format generic"},
		{name: "path with another format", batch: `{format: kserve_v1, request_path: x}`, err: "routes[0].batch.request_path: is only for format generic"},
		{name: "empty path segment", batch: `{format: generic, request_path: "a..b", response_path: out}`, err: "routes[0].batch.request_path: must be dotted field names"},
		{name: "batch size too large", batch: `{format: kserve_v1, max_batch_size: 5000}`, err: "routes[0].batch.max_batch_size: must be between 1 and 4096"},
		{name: "preferred above the maximum", batch: `{format: kserve_v1, max_batch_size: 8, preferred_batch_sizes: [4, 16]}`, err: "routes[0].batch.preferred_batch_sizes[1]: must be between 1 and max_batch_size (8)"},
		{name: "delay too long", batch: `{format: kserve_v1, max_queue_delay: 11s}`, err: "routes[0].batch.max_queue_delay: must be between 0 and 10s"},
		{name: "negative in flight", batch: `{format: kserve_v1, max_in_flight_per_endpoint: -1}`, err: "routes[0].batch.max_in_flight_per_endpoint: must be at least 1"},
		{name: "bad key header", batch: `{format: kserve_v1, key_headers: ["a b"]}`, err: `routes[0].batch.key_headers[0]: invalid header name "a b"`},
		{name: "unknown field", batch: `{format: kserve_v1, max_delay: 1ms}`, err: "routes[0].batch.max_delay: unknown field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(head+"    batch: "+tc.batch+"\n"), "batch.yaml")
			if err == nil {
				err = cfg.Validate()
			}
			if tc.err != "" {
				wantFieldError(t, err, tc.err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg.Routes[0].Batch)
		})
	}
}
