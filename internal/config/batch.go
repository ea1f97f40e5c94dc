package config

import (
	"slices"
	"strings"
	"time"
)

// RouteBatch turns a route into a dynamic batcher (internal/batch): single
// inference requests for the same model are held for a moment, sent
// upstream as one batch request, and the batch response is split back into
// each client's own response. The knobs follow Triton's dynamic batcher.
// Requests that cannot be batched (not JSON, another shape, other
// parameters, too many items) are forwarded alone, never refused.
type RouteBatch struct {
	// Format is how requests are merged and responses split:
	// kserve_v1 (instances → predictions), kserve_v2 (KServe v2 / Triton
	// HTTP: inputs[].data along the first dimension → outputs[].data),
	// openai_embeddings (input → data[]) or generic (the lists at
	// request_path and response_path). Required.
	Format string `yaml:"format"`
	// RequestPath is, with format generic, the dotted path of the list of
	// items in a request body ("inputs", "payload.rows"). Required with
	// generic, not allowed otherwise.
	RequestPath string `yaml:"request_path"`
	// ResponsePath is, with format generic, the dotted path of the list of
	// results in a response body, one per item in the same order. Required
	// with generic, not allowed otherwise.
	ResponsePath string `yaml:"response_path"`
	// MaxBatchSize bounds the items of one batch request (count); a request
	// with more items than this is forwarded alone. Default 32.
	MaxBatchSize int `yaml:"max_batch_size"`
	// PreferredBatchSizes are batch sizes (count, each at most
	// max_batch_size) that are sent as soon as they are reached and an
	// upstream slot is free, without waiting for max_queue_delay. Default
	// none.
	PreferredBatchSizes []int `yaml:"preferred_batch_sizes"`
	// MaxQueueDelay bounds how long the first item of a batch waits for
	// others before the batch is sent (duration); a batch that fills up
	// goes at once. While every slot is busy a batch keeps growing, up to
	// max_batch_size. Default 5ms.
	MaxQueueDelay Duration `yaml:"max_queue_delay"`
	// MaxInFlightPerEndpoint bounds the batch requests in flight to each
	// endpoint of the route's upstream (count): the route sends at most
	// this many times the number of endpoints at once, each batch to the
	// endpoint the balancer picks. Default 1.
	MaxInFlightPerEndpoint int `yaml:"max_in_flight_per_endpoint"`
	// MaxQueue bounds the items waiting to be sent (count); a request
	// beyond it gets 503 concurrency_limited. Default 1024.
	MaxQueue int `yaml:"max_queue"`
	// MaxRequestBytes bounds a request body that is held for batching
	// (bytes); a larger one is forwarded alone. Default 1MiB.
	MaxRequestBytes ByteSize `yaml:"max_request_bytes"`
	// MaxResponseBytes bounds a batch response body (bytes); a larger one
	// fails the batch with 502 for each client. Default 64MiB.
	MaxResponseBytes ByteSize `yaml:"max_response_bytes"`
	// KeyHeaders are request headers whose values must be equal for two
	// requests to share a batch (names, case-insensitive); the batch
	// request carries the first member's other headers. Authorization and
	// Content-Type are always part of the key. Default none.
	KeyHeaders []string `yaml:"key_headers"`
}

// Batch formats (RouteBatch.Format).
var BatchFormats = []string{"kserve_v1", "kserve_v2", "openai_embeddings", "generic"}

// Defaults of RouteBatch.
const (
	DefaultBatchMaxSize          = 32
	DefaultBatchMaxQueueDelay    = Duration(5 * time.Millisecond)
	DefaultBatchInFlight         = 1
	DefaultBatchMaxQueue         = 1024
	DefaultBatchMaxRequestBytes  = ByteSize(1 << 20)
	DefaultBatchMaxResponseBytes = ByteSize(64 << 20)
	// MaxBatchSizeLimit bounds max_batch_size: a batch is held in memory
	// and split by index.
	MaxBatchSizeLimit = 4096
)

// SetDefaults fills every zero field that has a default (config.SetDefaults
// calls it for each route).
func (b *RouteBatch) SetDefaults() {
	setDefault(&b.MaxBatchSize, DefaultBatchMaxSize)
	setDefault(&b.MaxQueueDelay, DefaultBatchMaxQueueDelay)
	setDefault(&b.MaxInFlightPerEndpoint, DefaultBatchInFlight)
	setDefault(&b.MaxQueue, DefaultBatchMaxQueue)
	setDefault(&b.MaxRequestBytes, DefaultBatchMaxRequestBytes)
	setDefault(&b.MaxResponseBytes, DefaultBatchMaxResponseBytes)
}

func (b *RouteBatch) validate(col *Collector, p string) {
	switch {
	case b.Format == "":
		col.Addf(p+".format", "is required (one of %s)", strings.Join(BatchFormats, ", "))
	case !slices.Contains(BatchFormats, b.Format):
		col.Addf(p+".format", "unknown format %q (one of %s)%s", b.Format, strings.Join(BatchFormats, ", "), didYouMean(b.Format, BatchFormats))
	}
	generic := b.Format == "generic"
	for _, f := range []struct{ name, v string }{{"request_path", b.RequestPath}, {"response_path", b.ResponsePath}} {
		switch {
		case generic && f.v == "":
			col.Addf(p+"."+f.name, "is required with format generic")
		case !generic && f.v != "" && b.Format != "":
			col.Addf(p+"."+f.name, "is only for format generic (format %s has its own)", b.Format)
		case f.v != "" && slices.Contains(strings.Split(f.v, "."), ""):
			col.Addf(p+"."+f.name, "must be dotted field names (\"payload.rows\"), got %q", f.v)
		}
	}
	if b.MaxBatchSize < 1 || b.MaxBatchSize > MaxBatchSizeLimit {
		col.Addf(p+".max_batch_size", "must be between 1 and %d, got %d", MaxBatchSizeLimit, b.MaxBatchSize)
	}
	for i, n := range b.PreferredBatchSizes {
		if n < 1 || n > b.MaxBatchSize {
			col.Addf(indexPath(p+".preferred_batch_sizes", i), "must be between 1 and max_batch_size (%d), got %d", b.MaxBatchSize, n)
		}
	}
	if b.MaxQueueDelay < 0 || b.MaxQueueDelay > Duration(10*time.Second) {
		col.Addf(p+".max_queue_delay", "must be between 0 and 10s, got %s", b.MaxQueueDelay)
	}
	if b.MaxInFlightPerEndpoint < 1 {
		col.Addf(p+".max_in_flight_per_endpoint", "must be at least 1, got %d", b.MaxInFlightPerEndpoint)
	}
	if b.MaxQueue < 1 {
		col.Addf(p+".max_queue", "must be at least 1, got %d", b.MaxQueue)
	}
	if b.MaxRequestBytes < 1 {
		col.Addf(p+".max_request_bytes", "must be positive, got %s", b.MaxRequestBytes)
	}
	if b.MaxResponseBytes < 1 {
		col.Addf(p+".max_response_bytes", "must be positive, got %s", b.MaxResponseBytes)
	}
	for i, h := range b.KeyHeaders {
		if !isToken(h) {
			col.Addf(indexPath(p+".key_headers", i), "invalid header name %q", h)
		}
	}
}
