package accesslog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// writeBufferSize is the bufio.Writer size: lines are batched into writes of
// up to this many bytes (or whatever arrived within flushInterval), so
// logging costs a few system calls per second rather than one per line.
const writeBufferSize = 64 << 10

// maxPooledLine bounds the buffers returned to the pool, so one huge line
// (a long error) does not pin its memory for the life of the process.
const maxPooledLine = 64 << 10

// fileMode is the permission of a created log file: access logs hold client
// addresses and paths, so other users may not read them.
const fileMode = 0o640

// output is where lines go. Only the writer goroutine touches it, which is
// what makes Reopen safe with writes in flight.
type output struct {
	w    io.Writer
	file *os.File // the file written, when penstock opened it
	path string   // the file's path, "" for stdout, stderr or an injected writer
}

// openOutput opens "stdout", "stderr" or a file path (created, appended to).
func openOutput(name string) (*output, error) {
	switch name {
	case "", "stdout":
		return &output{w: os.Stdout}, nil
	case "stderr":
		return &output{w: os.Stderr}, nil
	}
	f, err := openFile(name)
	if err != nil {
		return nil, err
	}
	return &output{w: f, file: f, path: name}, nil
}

func openFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("access_log.output: %w", err)
	}
	return f, nil
}

// reopen opens the path again and switches to it. On failure the current
// file stays in use, so lines keep going somewhere.
func (o *output) reopen() error {
	if o.path == "" {
		return nil
	}
	f, err := openFile(o.path)
	if err != nil {
		return err
	}
	old := o.file
	o.w, o.file = f, f
	if err := old.Close(); err != nil {
		return fmt.Errorf("access_log.output: close rotated file: %w", err)
	}
	return nil
}

func (o *output) close() error {
	if o.file == nil {
		return nil
	}
	return o.file.Close()
}

// control is a request to the writer goroutine: reopen the output, or
// close it and stop. done receives the result.
type control struct {
	close bool
	done  chan error
}

var errClosed = errors.New("access log closed")

// run is the writer goroutine. It writes queued lines through bw, flushing
// whenever the queue runs empty, so lines reach the output in batches under
// load and at once when idle. A reopen or close first writes out every line
// already queued, so lines logged before Reopen go to the old file.
// flushInterval bounds how long a written line waits in the writer's buffer
// before it reaches the output.
const flushInterval = 100 * time.Millisecond

func (l *outlet) run() {
	defer close(l.stopped)
	bw := bufio.NewWriterSize(l.out.w, writeBufferSize)
	pending := 0 // lines in bw not yet flushed
	flush := func() {
		if pending == 0 {
			return
		}
		if err := bw.Flush(); err != nil {
			l.m.failed.Add(float64(pending))
			// bufio keeps an error forever; start afresh so that the
			// next batch is tried (a full disk may have room again).
			bw.Reset(l.out.w)
		} else {
			l.m.written.Add(float64(pending))
		}
		pending = 0
	}
	write := func(line *[]byte) {
		// Flushed before a line that does not fit, so a failure is
		// counted against exactly the lines it lost.
		if len(*line) > bw.Available() {
			flush()
		}
		bw.Write(*line) // an error is kept by bw and reported by flush
		pending++
		l.putBuf(line)
	}
	drain := func() {
		for {
			select {
			case line := <-l.queue:
				write(line)
			default:
				return
			}
		}
	}
	// Lines wait in bw for at most flushInterval (or until it fills):
	// flushing whenever the queue is momentarily empty would cost one write
	// system call per request at moderate rates.
	timer := time.NewTimer(flushInterval)
	timer.Stop()
	armed := false
	for {
		select {
		case line := <-l.queue:
			write(line)
			drain()
			if pending > 0 && !armed {
				timer.Reset(flushInterval)
				armed = true
			}
		case <-timer.C:
			armed = false
			drain()
			flush()
		case c := <-l.ctl:
			drain()
			flush()
			if c.close {
				c.done <- l.out.close()
				return
			}
			err := l.out.reopen()
			bw.Reset(l.out.w)
			c.done <- err
		}
	}
}
