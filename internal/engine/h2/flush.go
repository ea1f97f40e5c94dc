package h2

import "runtime"

// Responses are flushed late, so that streams finishing together share
// one write. Each write to a TLS connection is a record sealed and a
// system call, and on loopback or a fast network the system call is most
// of what a small response costs: with one write per response the
// engine spends more on writes than on everything else of a request.
//
// A stream that completes its response releases the write side without
// flushing and, unless another stream's flush is already due, flushes
// after yielding (runtime.Gosched): the goroutines ready to run at that
// moment, typically the other streams whose upstream responses arrived in
// the same poll, run before the flush and append their frames to the
// buffer; the flush then sends them all in one record. A response waits
// for the ready goroutines' turn, not for a timer, and the buffer's own
// bound (a full buffer is written at once) still holds. The flush runs on
// the stream's own goroutine, whose work is done: a goroutine started for
// it cost as much as the rest of the stream's bookkeeping.

// unlockFlushSoon releases the write side (wmu held) and, unless a flush is
// already due, sends what was written once the goroutines ready to run
// have had their turn. It must be called without c.mu held.
func (c *conn) unlockFlushSoon() error {
	err := c.werr
	due := err == nil && !c.flushDue
	if due {
		c.flushDue = true
	}
	c.wmu.Unlock()
	if due {
		c.flushLater()
	}
	return err
}

// flushLater is the flush unlockFlushSoon makes.
func (c *conn) flushLater() {
	runtime.Gosched()
	c.wmu.Lock()
	c.flushDue = false
	if c.werr == nil {
		if err := c.bw.Flush(); err != nil {
			c.writeFailed(err)
		}
		c.dirty = false
	}
	c.wmu.Unlock()
}
