package function

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The Lambda Runtime API (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html),
// version 2018-06-01, as penstock serves it to one instance over loopback.
// Each instance gets a listener of its own, so penstock knows which
// instance polls without trusting anything the runtime sends.
const (
	apiPrefix = "/2018-06-01/runtime"

	headerRequestID   = "Lambda-Runtime-Aws-Request-Id"
	headerDeadline    = "Lambda-Runtime-Deadline-Ms"
	headerFunctionARN = "Lambda-Runtime-Invoked-Function-Arn"
	headerTraceID     = "Lambda-Runtime-Trace-Id"
	headerErrorType   = "Lambda-Runtime-Function-Error-Type"
	headerErrorBody   = "Lambda-Runtime-Function-Error-Body"
	headerRespMode    = "Lambda-Runtime-Function-Response-Mode"

	// streamContentType marks a streamed HTTP response: a JSON prelude,
	// eight NUL bytes, then the body.
	streamContentType = "application/vnd.awslambda.http-integration-response"

	// maxErrorBytes bounds an error document read from the runtime.
	maxErrorBytes = 1 << 20
)

// invocation is one event handed to an instance.
type invocation struct {
	id       string
	event    []byte
	deadline time.Time
	traceID  string
	// result receives the runtime's answer: buffered 1, so the runtime
	// API never blocks on an invocation penstock gave up on.
	result chan *apiResult
}

// apiResult is a runtime's answer to one invocation: a response (req,
// whose body the invoker reads and then closes done) or an error.
type apiResult struct {
	req  *http.Request
	done chan struct{}
	// status is what the runtime API answers the POST with, set by the
	// invoker before done is closed: 202, or 413 for a response too large.
	status int

	errType, errMessage string
}

// errorDoc is the error document runtimes post (and Lambda returns).
type errorDoc struct {
	ErrorMessage string `json:"errorMessage"`
	ErrorType    string `json:"errorType"`
}

// runtimeAPI serves the Runtime API to one instance.
type runtimeAPI struct {
	in      *instance
	ln      net.Listener
	srv     *http.Server
	queue   chan *invocation
	ready   chan struct{}
	once    sync.Once
	closed  chan struct{}
	closing sync.Once
	initErr atomic.Pointer[string]

	mu      sync.Mutex
	pending map[string]*invocation
}

func newRuntimeAPI(in *instance) (*runtimeAPI, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &runtimeAPI{in: in, ln: ln,
		queue:   make(chan *invocation, in.f.cfg.MaxConcurrency),
		ready:   make(chan struct{}),
		closed:  make(chan struct{}),
		pending: map[string]*invocation{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+apiPrefix+"/invocation/next", a.next)
	mux.HandleFunc("POST "+apiPrefix+"/invocation/{id}/response", a.response)
	mux.HandleFunc("POST "+apiPrefix+"/invocation/{id}/error", a.error)
	mux.HandleFunc("POST "+apiPrefix+"/init/error", a.initError)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: nil}
	go a.srv.Serve(ln)
	return a, nil
}

// prepareLambda gives the instance its Runtime API and the environment
// Lambda sets for a runtime.
func (in *instance) prepareLambda(env []string) ([]string, error) {
	a, err := newRuntimeAPI(in)
	if err != nil {
		return nil, err
	}
	in.api = a
	cfg := &in.f.cfg
	mem := int64(128) // Lambda's default memory size, in MB
	if cfg.Memory > 0 {
		mem = max(1, int64(cfg.Memory)>>20)
	}
	env = append(env,
		"AWS_LAMBDA_RUNTIME_API="+a.ln.Addr().String(),
		"AWS_LAMBDA_FUNCTION_NAME="+cfg.Name,
		"AWS_LAMBDA_FUNCTION_VERSION=$LATEST",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE="+strconv.FormatInt(mem, 10),
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/"+cfg.Name,
		"AWS_LAMBDA_LOG_STREAM_NAME=penstock/"+strconv.Itoa(in.id),
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand",
		"AWS_REGION=local",
		"AWS_DEFAULT_REGION=local",
	)
	if cfg.MaxConcurrency > 1 {
		env = append(env, "AWS_LAMBDA_MAX_CONCURRENCY="+strconv.Itoa(cfg.MaxConcurrency))
	}
	return env, nil
}

// functionARN is what Lambda-Runtime-Invoked-Function-Arn says.
func functionARN(name string) string { return "arn:aws:lambda:local:000000000000:function:" + name }

// next hands the runtime its next event, waiting for one. The first call
// ends the instance's init.
func (a *runtimeAPI) next(w http.ResponseWriter, r *http.Request) {
	a.once.Do(func() { close(a.ready) })
	select {
	case inv := <-a.queue:
		a.mu.Lock()
		a.pending[inv.id] = inv
		a.mu.Unlock()
		h := w.Header()
		h.Set(headerRequestID, inv.id)
		h.Set(headerDeadline, strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set(headerFunctionARN, functionARN(a.in.f.name))
		if inv.traceID != "" {
			h.Set(headerTraceID, inv.traceID)
		}
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(inv.event)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(inv.event)
	case <-r.Context().Done():
	case <-a.closed:
		http.Error(w, "instance stopping", http.StatusGone)
	}
}

// take removes and returns the pending invocation id.
func (a *runtimeAPI) take(id string) *invocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	inv := a.pending[id]
	delete(a.pending, id)
	return inv
}

func apiError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(errorDoc{ErrorMessage: msg, ErrorType: typ})
}

// response passes the runtime's response body to the invoker, which reads
// it (streamed or buffered) straight from this request.
func (a *runtimeAPI) response(w http.ResponseWriter, r *http.Request) {
	inv := a.take(r.PathValue("id"))
	if inv == nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "unknown or already answered request id")
		return
	}
	res := &apiResult{req: r, done: make(chan struct{}), status: http.StatusAccepted}
	inv.result <- res
	select {
	case <-res.done:
	case <-a.closed:
		return
	}
	if res.status == http.StatusRequestEntityTooLarge {
		apiError(w, res.status, "RequestEntityTooLarge", "response exceeds max_event_bytes")
		return
	}
	w.WriteHeader(res.status)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

// error records a failed invocation.
func (a *runtimeAPI) error(w http.ResponseWriter, r *http.Request) {
	inv := a.take(r.PathValue("id"))
	if inv == nil {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "unknown or already answered request id")
		return
	}
	doc := readErrorDoc(r)
	inv.result <- &apiResult{errType: doc.ErrorType, errMessage: doc.ErrorMessage}
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
}

// initError records a failed init; Lambda discards such an instance, and
// so does penstock.
func (a *runtimeAPI) initError(w http.ResponseWriter, r *http.Request) {
	doc := readErrorDoc(r)
	reason := fmt.Sprintf("%s: %s", doc.ErrorType, doc.ErrorMessage)
	a.initErr.Store(&reason)
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, `{"status":"OK"}`)
	go a.in.kill("init error: " + reason)
}

func readErrorDoc(r *http.Request) errorDoc {
	var doc errorDoc
	b, _ := io.ReadAll(io.LimitReader(r.Body, maxErrorBytes))
	if json.Unmarshal(b, &doc) != nil {
		doc.ErrorMessage = string(b)
	}
	if t := r.Header.Get(headerErrorType); t != "" && doc.ErrorType == "" {
		doc.ErrorType = t
	}
	if doc.ErrorType == "" {
		doc.ErrorType = "Unhandled"
	}
	return doc
}

// initFailure returns what the runtime reported to /init/error, or "".
func (a *runtimeAPI) initFailure() string {
	if a == nil {
		return ""
	}
	if p := a.initErr.Load(); p != nil {
		return *p
	}
	return ""
}

func (a *runtimeAPI) close() {
	a.closing.Do(func() {
		close(a.closed)
		a.srv.Close()
	})
}
