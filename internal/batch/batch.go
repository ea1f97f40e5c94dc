// Package batch is dynamic batching at the gateway: a Batcher is a
// batching route's terminal handler. It holds single inference requests
// for the same model for a moment (max_queue_delay), sends them upstream
// as one batch request through the route's forwarder (so balancing,
// retries, health and metrics apply to the batch as to any request), and
// splits the batch response back into each client's own response.
//
// A format (format.go, kservev2.go) says where the items are in a request
// and the results in a response. Requests that cannot be batched are
// forwarded alone, never refused; only a full queue refuses (503).
// Failures stay with their owners: an upstream that refuses a batch with
// a client error (4xx) gets each of its requests again alone, so one bad
// item fails only its own client; a batch that fails upstream (no
// endpoint, timeout, a malformed batch response) answers each client
// through the error funnel with its own request id.
//
// The knobs are Triton's dynamic batcher's: max_batch_size,
// preferred_batch_sizes, max_queue_delay, and a bound on the batches in
// flight per endpoint. While that bound holds every slot, waiting batches
// keep filling up to max_batch_size, which is where batching's gain under
// load comes from.
package batch

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/metrics"
	"github.com/penstock-dev/penstock/internal/tracecontext"
)

// Batcher is a batching route's terminal handler. Build it with New; it is
// safe for concurrent use.
type Batcher struct {
	codec     codec
	next      exchange.Handler
	maxSize   int
	preferred map[int]bool
	delay     time.Duration
	limit     int // batches in flight at once
	maxQueue  int
	maxReq    int64
	maxResp   int64
	keyHdrs   []string
	metrics   *metrics.Batch // nil records nothing
	log       *slog.Logger

	mu       sync.Mutex
	queue    []*batch          // not yet sent, oldest first
	open     map[string]*batch // per key, the newest unsent batch with room
	queued   int               // items in queue
	inflight int
}

// batch is a group of requests sent upstream together.
type batch struct {
	key     string
	members []*member
	items   int
	// due is set once the batch may go as soon as a slot is free: it is
	// full, reached a preferred size, or its first item waited
	// max_queue_delay.
	due     bool
	sent    bool
	created time.Time
	timer   *time.Timer
}

// member is one client request held in a batch: copies of what sending it
// needs (the exchange's strings alias the engine's memory, and the client
// may leave while its request waits), and the answer the sender leaves
// for the client's goroutine.
type member struct {
	body   []byte
	parsed any // the codec's view of body
	items  int

	method, scheme, host, path, query string
	header                            exchange.Header
	remote                            netip.AddrPort
	requestID, routeName, pattern     string
	route                             exchange.Route
	trace                             tracecontext.Context
	trustedPeer                       bool
	clientAddr                        netip.Addr

	answer answer
	done   chan struct{} // closed once answer is set
}

// New builds the batcher of cfg (defaults applied, valid) in front of
// next, the route's forwarder. endpoints is the size of the route's pool:
// at most cfg.MaxInFlightPerEndpoint batches per endpoint are in flight.
// m may be nil; log nil means slog.Default().
func New(cfg *config.RouteBatch, next exchange.Handler, endpoints int, m *metrics.Batch, log *slog.Logger) (*Batcher, error) {
	c, err := newCodec(cfg.Format, cfg.RequestPath, cfg.ResponsePath)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	b := &Batcher{
		codec:     c,
		next:      next,
		maxSize:   max(cfg.MaxBatchSize, 1),
		preferred: map[int]bool{},
		delay:     cfg.MaxQueueDelay.D(),
		limit:     max(cfg.MaxInFlightPerEndpoint, 1) * max(endpoints, 1),
		maxQueue:  max(cfg.MaxQueue, 1),
		maxReq:    cfg.MaxRequestBytes.Int64(),
		maxResp:   cfg.MaxResponseBytes.Int64(),
		keyHdrs:   append([]string{"Authorization", "Content-Type"}, cfg.KeyHeaders...),
		metrics:   m,
		log:       log,
		open:      map[string]*batch{},
	}
	for _, n := range cfg.PreferredBatchSizes {
		b.preferred[n] = true
	}
	return b, nil
}

// ServeExchange implements exchange.Handler.
func (b *Batcher) ServeExchange(x *exchange.Exchange) {
	if x.Req.Method != "POST" || x.Req.ContentLength > b.maxReq || x.Req.Header.Has("Inference-Header-Content-Length") {
		b.alone(x)
		return
	}
	body, err := io.ReadAll(io.LimitReader(x.Req.Body, b.maxReq+1))
	x.State.BytesIn = int64(len(body))
	if err != nil {
		b.badBody(x, err)
		return
	}
	if int64(len(body)) > b.maxReq {
		// A chunked body larger than max_request_bytes: forwarded alone,
		// what was read first.
		x.Req.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), x.Req.Body), x.Req.Body}
		b.alone(x)
		return
	}
	parsed, items, key, err := b.codec.parse(body)
	if err != nil || items > b.maxSize {
		x.Req.Body, x.Req.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		b.alone(x)
		return
	}
	m := b.member(x, body, parsed, items)
	if !b.enqueue(b.batchKey(x, key), m) {
		b.count(metrics.BatchRefused)
		x.State.Error = "batch queue full (max_queue)"
		failure.Fail(x, failure.ConcurrencyLimited)
		return
	}
	select {
	case <-m.done:
		m.answer.write(x)
	case <-x.Ctx.Done():
		// The client left; its item still goes with its batch (the batch
		// may be on its way), and the answer is dropped.
		x.State.Status = 499
	}
}

// alone forwards x by itself.
func (b *Batcher) alone(x *exchange.Exchange) {
	b.count(metrics.BatchAlone)
	b.next.ServeExchange(x)
}

// badBody answers a request whose body could not be read, as the
// forwarder would.
func (b *Batcher) badBody(x *exchange.Exchange, err error) {
	x.State.Error = err.Error()
	x.W.Header().Set("Connection", "close")
	code := failure.BadRequest
	if errors.Is(err, failure.ErrBodyTooLarge) {
		code = failure.BodyTooLarge
	}
	failure.Fail(x, code)
}

func (b *Batcher) count(result int) {
	if b.metrics != nil {
		b.metrics.Requests[result].Inc()
	}
}

// batchKey is the key of the batches x may join: its method, target and
// key headers (a batch is sent with one set of credentials), then what the
// codec found.
func (b *Batcher) batchKey(x *exchange.Exchange, codecKey string) string {
	var k strings.Builder
	k.WriteString(x.Req.Host)
	k.WriteByte(' ')
	k.WriteString(x.Req.Path)
	k.WriteByte('?')
	k.WriteString(x.Req.Query)
	for _, h := range b.keyHdrs {
		k.WriteByte('\n')
		x.Req.Header.Values(h, func(v string) bool {
			k.WriteString(v)
			k.WriteByte(',')
			return true
		})
	}
	k.WriteByte('\n')
	k.WriteString(codecKey)
	return k.String()
}

// member copies what sending x later needs.
func (b *Batcher) member(x *exchange.Exchange, body []byte, parsed any, items int) *member {
	m := &member{
		body: body, parsed: parsed, items: items,
		method: strings.Clone(x.Req.Method), scheme: strings.Clone(x.Req.Scheme),
		host: strings.Clone(x.Req.Host), path: strings.Clone(x.Req.Path), query: strings.Clone(x.Req.Query),
		remote:    x.Req.RemoteAddr,
		requestID: strings.Clone(x.State.RequestID), routeName: x.State.RouteName, pattern: x.State.Pattern,
		route: x.State.Route, trace: x.State.Trace, trustedPeer: x.State.TrustedPeer, clientAddr: x.State.ClientAddr,
		done: make(chan struct{}),
	}
	// Header.Add copies into the header's own buffer.
	x.Req.Header.Range(func(name, value string) bool {
		m.header.Add(name, value)
		return true
	})
	return m
}

// enqueue adds m to the batch of its key that has room, or to a new one,
// and sends what may be sent. It reports false when the queue is full.
func (b *Batcher) enqueue(key string, m *member) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.queued+m.items > b.maxQueue {
		return false
	}
	bt := b.open[key]
	if bt != nil && bt.items+m.items > b.maxSize {
		// Full enough: it goes as it is, and m starts the next one.
		bt.due = true
		delete(b.open, key)
		bt = nil
	}
	if bt == nil {
		bt = &batch{key: key, created: time.Now()}
		b.queue = append(b.queue, bt)
		b.open[key] = bt
		if b.delay > 0 {
			bt.timer = time.AfterFunc(b.delay, func() { b.expire(bt) })
		} else {
			bt.due = true
		}
	}
	bt.members = append(bt.members, m)
	bt.items += m.items
	b.queued += m.items
	if bt.items >= b.maxSize {
		bt.due = true
		delete(b.open, key)
	} else if b.preferred[bt.items] {
		bt.due = true
	}
	b.pump()
	return true
}

// expire marks bt due once its first item has waited max_queue_delay.
func (b *Batcher) expire(bt *batch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !bt.sent {
		bt.due = true
		b.pump()
	}
}

// pump sends due batches, oldest first, while slots are free. b.mu is
// held.
func (b *Batcher) pump() {
	for b.inflight < b.limit {
		i := 0
		for i < len(b.queue) && !b.queue[i].due {
			i++
		}
		if i == len(b.queue) {
			return
		}
		bt := b.queue[i]
		b.queue = append(b.queue[:i], b.queue[i+1:]...)
		if b.open[bt.key] == bt {
			delete(b.open, bt.key)
		}
		if bt.timer != nil {
			bt.timer.Stop()
		}
		bt.sent = true
		b.queued -= bt.items
		b.inflight++
		go b.run(bt)
	}
}

// run sends bt, then frees its slot.
func (b *Batcher) run(bt *batch) {
	defer func() {
		b.mu.Lock()
		b.inflight--
		b.pump()
		b.mu.Unlock()
	}()
	if b.metrics != nil {
		b.metrics.Size.Observe(float64(bt.items))
		b.metrics.Fill.Observe(float64(bt.items) / float64(b.maxSize))
		b.metrics.Wait.Observe(time.Since(bt.created).Seconds())
	}
	b.send(bt.members)
}
