package batch

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
	"github.com/penstock-dev/penstock/internal/metrics"
)

// BatchSizeHeader is the response header that tells a client how many
// requests shared its batch request (1 when it went alone after all).
const BatchSizeHeader = "X-Batch-Size"

// BatchIDsHeader is the header of a batch request that lists the request
// ids of its members, in order, so the upstream's logs can be matched
// with each client's. The batch request carries the first member's
// X-Request-Id and trace context.
const BatchIDsHeader = "X-Batch-Request-Ids"

// answer is what a member's client is told: a response, or a failure
// through the error funnel.
type answer struct {
	status int
	header exchange.Header
	body   []byte
	code   failure.Code // set: answer through the funnel instead
	err    string
	size   int // requests in the batch request

	endpoint string
	attempts int
	wait     time.Duration
}

// write answers x with a. It runs in x's own goroutine.
func (a *answer) write(x *exchange.Exchange) {
	x.State.Endpoint, x.State.Attempts, x.State.UpstreamWait = a.endpoint, a.attempts, a.wait
	if a.code != "" {
		x.State.Error = a.err
		failure.Fail(x, a.code)
		return
	}
	h := x.W.Header()
	a.header.Range(func(name, value string) bool {
		// The client keeps its own request id; the length is its part's.
		if !exchange.EqualFold(name, "Content-Length") && !exchange.EqualFold(name, "X-Request-Id") {
			h.Add(name, value)
		}
		return true
	})
	h.Set("Content-Length", strconv.Itoa(len(a.body)))
	h.Set(BatchSizeHeader, strconv.Itoa(a.size))
	x.State.Status = a.status
	x.W.WriteHeader(a.status)
	n, _ := x.W.Write(a.body)
	x.State.BytesOut += int64(n)
}

// send sends members upstream, as one batch request when there are
// several, and leaves each its answer.
func (b *Batcher) send(members []*member) {
	defer func() {
		for _, m := range members {
			close(m.done)
		}
	}()
	if len(members) == 1 {
		b.count(metrics.BatchAlone)
		b.roundTrip(members[0], members[0].body, nil, &members[0].answer)
		members[0].answer.size = 1
		return
	}
	for range members {
		b.count(metrics.BatchBatched)
	}
	body, err := b.codec.merge(members)
	if err != nil {
		// Requests that parsed always merge; should one not, each goes
		// alone rather than failing.
		b.each(members)
		return
	}
	var resp answer
	b.roundTrip(members[0], body, members, &resp)
	switch {
	case resp.code != "":
		// The batch failed upstream (no endpoint, timeout, a cut body):
		// each client gets the failure with its own request id.
		for _, m := range members {
			m.answer = resp
		}
	case resp.status >= 200 && resp.status < 300:
		parts, err := b.codec.split(resp.body, members)
		if err != nil {
			b.log.Warn("batch response does not split", "route", members[0].routeName,
				"request_id", members[0].requestID, "members", len(members), "error", err.Error())
			for _, m := range members {
				m.answer = resp
				m.answer.code = failure.UpstreamProtocol
				m.answer.err = "batch response: " + err.Error()
			}
			return
		}
		for i, m := range members {
			m.answer = resp
			m.answer.body = parts[i]
			m.answer.size = len(members)
		}
	case resp.status >= 400 && resp.status < 500 && resp.status != 408 && resp.status != 429:
		// The upstream refused the batch for what is in it: one item may
		// be at fault, so each request goes again alone and gets its own
		// answer.
		b.each(members)
	default:
		// Any other status concerns the batch as a whole (overload, a
		// server error the retry policy did not cure): every client gets
		// it as the upstream wrote it.
		for _, m := range members {
			m.answer = resp
			m.answer.size = len(members)
		}
	}
}

// each sends every member alone, one after the other (they hold one of
// the route's in-flight slots).
func (b *Batcher) each(members []*member) {
	for _, m := range members {
		b.roundTrip(m, m.body, nil, &m.answer)
		m.answer.size = 1
	}
}

// roundTrip sends body as m's request (with the batch's request ids when
// batch is not nil) through the route's forwarder and records what came
// back in a.
func (b *Batcher) roundTrip(m *member, body []byte, batch []*member, a *answer) {
	bx := exchange.Acquire()
	defer exchange.Release(bx)
	rec := &capture{limit: b.maxResp}
	bx.W = rec
	// The batch belongs to no single client: it runs to its end (the
	// route's timeouts bound it) even when some of them leave.
	bx.Ctx = context.Background()
	bx.Start = time.Now()
	h := bx.Req.Header
	h.Reset()
	m.header.Range(func(name, value string) bool {
		switch {
		case exchange.EqualFold(name, "Content-Length"), exchange.EqualFold(name, "Transfer-Encoding"):
		case exchange.EqualFold(name, "Accept-Encoding") && batch != nil:
			// The batch response is split here: it must come unencoded.
		default:
			h.Add(name, value)
		}
		return true
	})
	if batch != nil {
		ids := make([]string, len(batch))
		for i, o := range batch {
			ids[i] = o.requestID
		}
		h.Set(BatchIDsHeader, strings.Join(ids, ","))
	}
	bx.Req = exchange.Request{
		Proto: exchange.HTTP11, Method: m.method, Scheme: m.scheme, Host: m.host,
		Path: m.path, Query: m.query, Header: h, RemoteAddr: m.remote,
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
	}
	st := &bx.State
	st.Route, st.RouteName, st.Pattern = m.route, m.routeName, m.pattern
	st.RequestID, st.Trace, st.TrustedPeer, st.ClientAddr = m.requestID, m.trace, m.trustedPeer, m.clientAddr

	b.next.ServeExchange(bx)

	a.endpoint, a.attempts, a.wait = st.Endpoint, st.Attempts, st.UpstreamWait
	switch {
	case st.ErrorKind != "":
		a.code, a.err = failure.Code(st.ErrorKind), st.Error
	case st.Aborted || rec.status == 0:
		a.code, a.err = failure.UpstreamProtocol, "upstream response cut short"
	case rec.over:
		a.code, a.err = failure.UpstreamProtocol, "batch response larger than max_response_bytes"
	default:
		a.status = rec.status
		a.header = rec.hdr
		a.body = rec.body
	}
}

// capture is the response writer of a batch request: it keeps the
// response for splitting, up to limit bytes of body.
type capture struct {
	hdr    exchange.Header
	status int
	body   []byte
	limit  int64
	over   bool
}

func (c *capture) Header() *exchange.Header { return &c.hdr }

func (c *capture) WriteHeader(status int) {
	if status >= 200 && c.status == 0 {
		c.status = status
	}
}

func (c *capture) Write(p []byte) (int, error) {
	if c.status == 0 {
		c.status = 200
	}
	if int64(len(c.body)+len(p)) > c.limit {
		c.over = true
		return len(p), nil
	}
	c.body = append(c.body, p...)
	return len(p), nil
}

func (c *capture) Flush() error { return nil }

func (c *capture) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return nil, nil, exchange.ErrNotHijackable
}
