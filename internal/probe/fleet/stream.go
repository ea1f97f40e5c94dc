package fleet

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
)

// The data plane: one WebSocket per agent, agent → controller batches,
// controller → agent acknowledgements. On connecting, the controller says
// the last batch it applied (Hello); the agent drops what that covers and
// sends the rest, in order. A batch is applied at most once (its sequence
// number must follow the last applied one; an older one is acknowledged
// again and skipped), and an agent keeps every batch until it is
// acknowledged: a connection lost in either direction loses and doubles
// nothing.

const (
	// batchRecords seals a batch when it holds this many results.
	batchRecords = 256
	// batchDelay seals a batch at most this long after its first result.
	batchDelay = 100 * time.Millisecond
	// maxMessage bounds a message the controller reads.
	maxMessage = 32 << 20
)

// streamCloser closes an agent's stream from the controller's side.
type streamCloser func() error

func (f streamCloser) Close() error { return f() }

// serveStream is the controller's end of an agent's stream.
func (c *Controller) serveStream(w http.ResponseWriter, r *http.Request) {
	if !c.authorized(r.Header.Get("Authorization")) {
		http.Error(w, "missing or wrong token", http.StatusUnauthorized)
		return
	}
	id := r.URL.Query().Get("agent")
	c.mu.Lock()
	a := c.agents[id]
	c.mu.Unlock()
	if a == nil {
		http.Error(w, fmt.Sprintf("agent %q: not registered", id), http.StatusNotFound)
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(maxMessage)
	c.mu.Lock()
	if a.stream != nil {
		// A newer connection replaces an older one, which may not have
		// noticed it was lost yet.
		a.stream.Close()
	}
	a.streamGen++
	gen := a.streamGen
	a.stream = streamCloser(ws.CloseNow)
	last := a.lastAck
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		if a.streamGen == gen {
			a.stream = nil
		}
		c.mu.Unlock()
		ws.CloseNow()
	}()
	ctx := r.Context()
	if err := wsjson.Write(ctx, ws, Hello{LastAck: last}); err != nil {
		return
	}
	for {
		var b Batch
		if err := wsjson.Read(ctx, ws, &b); err != nil {
			return
		}
		if !c.apply(a, &b) {
			// A gap: a batch is missing. The agent reconnects and sends
			// again from the last one applied.
			ws.Close(websocket.StatusPolicyViolation, "batch out of sequence")
			return
		}
		if err := wsjson.Write(ctx, ws, Ack{Seq: b.Seq}); err != nil {
			return
		}
	}
}

// dropStreams closes every agent's stream (the agents reconnect and
// resume).
func (c *Controller) dropStreams() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.agents {
		if a.stream != nil {
			a.stream.Close()
		}
	}
}

// outbox holds an agent's results until the controller acknowledges them.
type outbox struct {
	mu      sync.Mutex
	cur     []Record
	curAt   time.Time
	unacked []Batch // in order of Seq
	next    uint64
	wake    chan struct{}
}

func newOutbox() *outbox { return &outbox{next: 1, wake: make(chan struct{}, 1)} }

func (o *outbox) add(r Record) {
	o.mu.Lock()
	if len(o.cur) == 0 {
		o.curAt = time.Now()
	}
	o.cur = append(o.cur, r)
	if len(o.cur) >= batchRecords {
		o.sealLocked()
	}
	o.mu.Unlock()
}

// seal closes the batch being filled if it is old enough.
func (o *outbox) seal(now time.Time) {
	o.mu.Lock()
	if len(o.cur) > 0 && now.Sub(o.curAt) >= batchDelay {
		o.sealLocked()
	}
	o.mu.Unlock()
}

func (o *outbox) sealLocked() {
	o.unacked = append(o.unacked, Batch{Seq: o.next, Records: o.cur})
	o.next++
	o.cur = nil
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// ack drops the batches up to seq.
func (o *outbox) ack(seq uint64) {
	o.mu.Lock()
	i := 0
	for i < len(o.unacked) && o.unacked[i].Seq <= seq {
		i++
	}
	o.unacked = append(o.unacked[:0:0], o.unacked[i:]...)
	o.mu.Unlock()
}

// after returns the sealed batches after seq.
func (o *outbox) after(seq uint64) []Batch {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []Batch
	for _, b := range o.unacked {
		if b.Seq > seq {
			out = append(out, b)
		}
	}
	return out
}

// empty reports whether every result has been acknowledged.
func (o *outbox) empty() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.cur) == 0 && len(o.unacked) == 0
}

// stream keeps the agent's WebSocket up, reconnecting after a loss, until
// ctx is done.
func (a *Agent) stream(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		err := a.streamOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("result stream lost; reconnecting", "error", err)
		a.reconnects.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

func (a *Agent) streamOnce(ctx context.Context) error {
	h := http.Header{}
	if a.cfg.Token != "" {
		h.Set("Authorization", "Bearer "+a.cfg.Token)
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ws, _, err := websocket.Dial(dctx, "ws://"+a.cfg.Controller+"/stream?agent="+a.id(), &websocket.DialOptions{HTTPHeader: h})
	cancel()
	if err != nil {
		return err
	}
	defer ws.CloseNow()
	ws.SetReadLimit(1 << 20)
	var hello Hello
	if err := wsjson.Read(ctx, ws, &hello); err != nil {
		return err
	}
	a.out.ack(hello.LastAck)
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	readErr := make(chan error, 1)
	go func() {
		defer stop()
		for {
			var ack Ack
			if err := wsjson.Read(sctx, ws, &ack); err != nil {
				readErr <- err
				return
			}
			a.out.ack(ack.Seq)
		}
	}()
	tick := time.NewTicker(batchDelay / 2)
	defer tick.Stop()
	sent := hello.LastAck
	for {
		for _, b := range a.out.after(sent) {
			if err := wsjson.Write(sctx, ws, b); err != nil {
				return err
			}
			sent = b.Seq
		}
		select {
		case <-sctx.Done():
			select {
			case err := <-readErr:
				return err
			default:
				return sctx.Err()
			}
		case <-a.out.wake:
		case now := <-tick.C:
			a.out.seal(now)
		}
	}
}
