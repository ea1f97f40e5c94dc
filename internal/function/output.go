package function

import (
	"bufio"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Output limits: a line longer than maxLineBytes is cut (the rest of it is
// dropped), and each instance may put at most lineBurst lines in the log
// at once, refilled at linesPerSecond; what is over is counted and
// reported in one line per second. A function that writes megabytes to
// stdout can then neither block (its pipe is always drained) nor flood
// penstock's log.
const (
	maxLineBytes   = 4096
	linesPerSecond = 200
	lineBurst      = 400
	tailLines      = 20
)

// outputLog reads an instance's stdout and stderr into penstock's log,
// each line tagged with the function, the instance, the stream and the
// request id of the invocation in flight.
type outputLog struct {
	log     *slog.Logger
	current *atomic.Pointer[string]
	readers sync.WaitGroup
	pipes   []*os.File // read ends
	// bytes counts everything read from the instance's stdout and stderr.
	bytes atomic.Int64

	mu         sync.Mutex
	tokens     float64
	last       time.Time
	suppressed int64
	reported   time.Time
	tailBuf    []string
}

func newOutputLog(log *slog.Logger, current *atomic.Pointer[string]) *outputLog {
	return &outputLog{log: log, current: current, tokens: lineBurst, last: time.Now()}
}

// pipe returns the write end of a new pipe for stream, whose read end is
// logged until EOF.
func (o *outputLog) pipe(stream string) (*os.File, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	o.pipes = append(o.pipes, r)
	o.readers.Add(1)
	go func() {
		defer o.readers.Done()
		defer r.Close()
		o.read(r, stream)
	}()
	return w, nil
}

func (o *outputLog) read(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, maxLineBytes)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			o.bytes.Add(int64(len(line)))
			cut := errors.Is(err, bufio.ErrBufferFull)
			o.line(stream, strings.TrimRight(string(line), "\r\n"), cut)
			if cut {
				// Drop the rest of the overlong line.
				for errors.Is(err, bufio.ErrBufferFull) {
					line, err = br.ReadSlice('\n')
					o.bytes.Add(int64(len(line)))
				}
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			o.flushSuppressed(stream)
			return
		}
	}
}

func (o *outputLog) line(stream, text string, cut bool) {
	o.mu.Lock()
	if stream == "stderr" {
		o.tailBuf = append(o.tailBuf, text)
		if len(o.tailBuf) > tailLines {
			o.tailBuf = o.tailBuf[len(o.tailBuf)-tailLines:]
		}
	}
	now := time.Now()
	o.tokens = min(lineBurst, o.tokens+now.Sub(o.last).Seconds()*linesPerSecond)
	o.last = now
	if o.tokens < 1 {
		o.suppressed++
		report := now.Sub(o.reported) >= time.Second
		n := o.suppressed
		if report {
			o.suppressed, o.reported = 0, now
		}
		o.mu.Unlock()
		if report {
			o.log.Warn("function output suppressed", "stream", stream, "lines", n)
		}
		return
	}
	o.tokens--
	o.mu.Unlock()
	attrs := []any{"stream", stream, "line", text}
	if id := o.current.Load(); id != nil {
		attrs = append(attrs, "request_id", *id)
	}
	if cut {
		attrs = append(attrs, "truncated", true)
	}
	o.log.Info("function output", attrs...)
}

func (o *outputLog) flushSuppressed(stream string) {
	o.mu.Lock()
	n := o.suppressed
	o.suppressed = 0
	o.mu.Unlock()
	if n > 0 {
		o.log.Warn("function output suppressed", "stream", stream, "lines", n)
	}
}

// tail returns the last stderr lines, for the log line of a crash.
func (o *outputLog) tail() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.tailBuf, "\n")
}

// wait waits for the readers to reach EOF, at most d: a child the function
// left running could hold its pipes open.
func (o *outputLog) wait(d time.Duration) {
	done := make(chan struct{})
	go func() { o.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		o.closeReaders()
	}
}

// closeReaders stops the readers (a start that failed before exec).
func (o *outputLog) closeReaders() {
	for _, r := range o.pipes {
		r.Close()
	}
}
