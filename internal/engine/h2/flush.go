package h2

import "runtime"

// Responses are flushed late, so that streams finishing together share
// one write. Each write to a TLS connection is a record sealed and a
// system call, and on loopback or a fast network the system call is most
// of what a small response costs: with one write per response the
// engine spends more on writes than on everything else of a request.
//
// A stream that completes its response releases the write side without
// flushing and, unless one is already due, starts a flush that first
// yields (runtime.Gosched): the goroutines ready to run at that moment,
// typically the other streams whose upstream responses arrived in the
// same poll, run before it and append their frames to the buffer; the
// flush then sends them all in one record. A response waits for the
// ready goroutines' turn, not for a timer, and the buffer's own bound
// (a full buffer is written at once) still holds.

// unlockFlushSoon releases the write side (wmu held) and has what was
// written sent once the goroutines ready to run have had their turn.
func (c *conn) unlockFlushSoon() error {
	err := c.werr
	if err == nil && !c.flushDue {
		c.flushDue = true
		go c.flushLater()
	}
	c.wmu.Unlock()
	return err
}

// flushLater is the flush unlockFlushSoon starts.
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
