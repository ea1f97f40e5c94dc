package function

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/failure"
)

// healthInterval is how often a starting http-mode instance is probed.
const healthInterval = 5 * time.Millisecond

// prepareHTTP picks the address an http-mode instance listens on and the
// client that reaches it.
func (in *instance) prepareHTTP(env []string) ([]string, error) {
	cfg := &in.f.cfg
	var network, addr string
	switch cfg.HTTP.Listen {
	case config.FunctionListenTCP:
		// A free port now; the instance binds it a moment later. Another
		// process could take it meanwhile, which the health check then
		// reports as a failed start.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addr = ln.Addr().String()
		ln.Close()
		network = "tcp"
		in.address = addr
		_, port, _ := net.SplitHostPort(addr)
		env = append(env, "PORT="+port)
	default:
		dir, err := os.MkdirTemp("", "penstock-fn-")
		if err != nil {
			return nil, err
		}
		in.dir = dir
		addr = filepath.Join(dir, "fn.sock")
		network = "unix"
		in.address = "unix:" + addr
	}
	env = append(env, "PENSTOCK_LISTEN="+in.address,
		"PENSTOCK_FUNCTION_NAME="+cfg.Name, "PENSTOCK_FUNCTION_INSTANCE="+strconv.Itoa(in.id))
	var d net.Dialer
	in.http = &http.Client{
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
			MaxIdleConnsPerHost: cfg.MaxConcurrency,
			DisableCompression:  true,
			IdleConnTimeout:     90 * time.Second,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return env, nil
}

// healthCheck probes the instance until its health path answers below
// 500; the returned channel is closed then. It gives up when stop fires
// or the instance dies.
func (in *instance) healthCheck(stop <-chan time.Time) <-chan struct{} {
	ok := make(chan struct{})
	go func() {
		url := "http://function" + in.f.cfg.HTTP.HealthPath
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := in.http.Do(req)
			if err == nil {
				io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
			}
			cancel()
			if err == nil && resp.StatusCode < 500 {
				close(ok)
				return
			}
			select {
			case <-time.After(healthInterval):
			case <-stop:
				return
			case <-in.dead:
				return
			}
		}
	}()
	return ok
}

// invokeHTTP proxies one request to an http-mode instance, streaming the
// response through. The deadline is sent as X-Penstock-Deadline-Ms.
func (f *Function) invokeHTTP(x *exchange.Exchange, in *instance, id string) (string, bool) {
	ctx, cancel := f.deadlineCtx(x)
	defer cancel()
	deadline, _ := ctx.Deadline()
	target := "http://function" + x.Req.Path
	if x.Req.Query != "" {
		target += "?" + x.Req.Query
	}
	var body io.Reader = http.NoBody
	var counted *countingReader
	if x.Req.ContentLength != 0 && x.Req.Body != nil {
		counted = &countingReader{r: x.Req.Body, n: &x.State.BytesIn, limit: int64(f.cfg.MaxEventBytes)}
		body = counted
	}
	req, err := http.NewRequestWithContext(ctx, x.Req.Method, target, body)
	if err != nil {
		x.State.Error = err.Error()
		failure.Fail(x, failure.BadRequest)
		return outcomeBadResponse, true
	}
	req.ContentLength = x.Req.ContentLength
	req.Host = x.Req.Host
	x.Req.Header.Range(func(name, value string) bool {
		if !isHopByHop(name) && !exchange.EqualFold(name, "host") {
			req.Header.Add(name, value)
		}
		return true
	})
	req.Header.Set("X-Request-Id", x.State.RequestID)
	req.Header.Set("X-Penstock-Request-Id", id)
	req.Header.Set("X-Penstock-Deadline-Ms", strconv.FormatInt(deadline.UnixMilli(), 10))

	resp, err := in.http.Do(req)
	if err != nil {
		if counted != nil && counted.over {
			// The client's fault, not the instance's.
			x.State.Error = errBodyTooLarge.Error()
			failure.Fail(x, failure.BodyTooLarge)
			return outcomeTooLarge, true
		}
		return f.httpFailed(x, in, id, ctx, err)
	}
	defer resp.Body.Close()
	h := x.W.Header()
	for name, values := range resp.Header {
		if isHopByHop(name) {
			continue
		}
		for _, v := range values {
			h.Add(name, v)
		}
	}
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	x.State.Status = resp.StatusCode
	x.W.WriteHeader(resp.StatusCode)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 && x.Req.Method != "HEAD" {
			w, werr := x.W.Write(buf[:n])
			x.State.BytesOut += int64(w)
			if werr == nil {
				werr = x.W.Flush()
			}
			if werr != nil {
				return outcomeClientGone, true
			}
		}
		if rerr == io.EOF {
			return outcomeOK, true
		}
		if rerr != nil {
			return f.httpFailed(x, in, id, ctx, rerr)
		}
	}
}

// httpFailed maps a failed exchange with an http-mode instance: past the
// deadline a 504 (and the instance is killed), a dead instance a 502 with
// its exit reason, anything else a 502 and a fresh instance next time.
func (f *Function) httpFailed(x *exchange.Exchange, in *instance, id string, ctx context.Context, err error) (string, bool) {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		in.kill(fmt.Sprintf("invocation %s overran its timeout (%s)", id, f.cfg.Timeout))
		return f.timedOut(x, in, id)
	}
	if x.Ctx != nil && x.Ctx.Err() != nil {
		return outcomeClientGone, true
	}
	if x.State.Status != 0 {
		x.State.Aborted = true
	}
	// A process that just died makes the connection fail first; give its
	// exit a moment to be seen, for a clearer reason.
	select {
	case <-in.dead:
		x.State.Error = "instance exited: " + in.reason
		f.log.Error("function instance crashed during an invocation", "instance", in.id,
			"request_id", id, "reason", in.reason, "stderr", in.out.tail())
	case <-time.After(100 * time.Millisecond):
		x.State.Error = "instance: " + strings.TrimPrefix(err.Error(), "Get ")
		f.log.Error("function instance failed an invocation", "instance", in.id, "request_id", id, "error", err)
	}
	failure.Fail(x, failure.FunctionCrashed)
	return outcomeCrashed, false
}

var errBodyTooLarge = errors.New("request body exceeds max_event_bytes")

// countingReader counts a streamed request body into n and fails it past
// limit bytes (a body of unknown length).
type countingReader struct {
	r     io.Reader
	n     *int64
	limit int64
	read  int64
	over  bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	c.read += int64(n)
	if c.read > c.limit {
		c.over = true
		return 0, errBodyTooLarge
	}
	return n, err
}
