package failure

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestCodeStatus(t *testing.T) {
	tests := []struct {
		code Code
		want int
	}{
		{NoRoute, 404},
		{MethodNotAllowed, 405},
		{BodyTooLarge, 413},
		{NoHealthyEndpoint, 503},
		{UpstreamConnect, 502},
		{UpstreamProtocol, 502},
		{UpstreamTimeout, 504},
		{BadRequest, 400},
		{ShuttingDown, 503},
		{TooEarly, 425},
		{CircuitOpen, 503},
		{RateLimited, 429},
		{Code("something_new"), 502},
		{Code(""), 502},
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			if got := tt.code.Status(); got != tt.want {
				t.Errorf("%q.Status() = %d, want %d", tt.code, got, tt.want)
			}
		})
	}
}

func TestFail(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		code      Code
		requestID string
		wantBody  string // "" for HEAD: the body that would have been sent is wantLen long
		wantLen   int
	}{
		{
			name: "404 with request id", method: "GET", code: NoRoute, requestID: "abc123",
			wantBody: `{"error":"no_route","status":404,"request_id":"abc123"}` + "\n",
		},
		{
			name: "413", method: "POST", code: BodyTooLarge, requestID: "r-1",
			wantBody: `{"error":"request_body_too_large","status":413,"request_id":"r-1"}` + "\n",
		},
		{
			name: "502 connect", method: "GET", code: UpstreamConnect, requestID: "x",
			wantBody: `{"error":"upstream_connect_failed","status":502,"request_id":"x"}` + "\n",
		},
		{
			name: "503 no healthy endpoint", method: "GET", code: NoHealthyEndpoint, requestID: "x",
			wantBody: `{"error":"no_healthy_endpoint","status":503,"request_id":"x"}` + "\n",
		},
		{
			name: "504 timeout", method: "GET", code: UpstreamTimeout, requestID: "x",
			wantBody: `{"error":"upstream_timeout","status":504,"request_id":"x"}` + "\n",
		},
		{
			name: "no request id", method: "GET", code: ShuttingDown, requestID: "",
			wantBody: `{"error":"shutting_down","status":503,"request_id":""}` + "\n",
		},
		{
			name: "request id with JSON metacharacters is sanitized", method: "GET", code: BadRequest,
			requestID: "a\"b\\c\n<d>\u00e9e",
			wantBody:  `{"error":"bad_request","status":400,"request_id":"abcde"}` + "\n",
		},
		{
			name: "longest valid request id fits", method: "GET", code: MethodNotAllowed,
			requestID: strings.Repeat("z", 64),
			wantBody:  `{"error":"method_not_allowed","status":405,"request_id":"` + strings.Repeat("z", 64) + `"}` + "\n",
		},
		{
			name: "request id over 64 bytes is cut", method: "GET", code: NoRoute,
			requestID: strings.Repeat("y", 100),
			wantBody:  `{"error":"no_route","status":404,"request_id":"` + strings.Repeat("y", 64) + `"}` + "\n",
		},
		{
			name: "HEAD gets headers only", method: "HEAD", code: NoRoute, requestID: "abc123",
			wantBody: "",
			wantLen:  len(`{"error":"no_route","status":404,"request_id":"abc123"}` + "\n"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, rec := newExchange(t, tt.method)
			x.State.RequestID = tt.requestID
			Fail(x, tt.code)

			status := tt.code.Status()
			if !slices.Equal(rec.Statuses, []int{status}) {
				t.Errorf("WriteHeader calls = %v, want [%d]", rec.Statuses, status)
			}
			if x.State.Status != status {
				t.Errorf("State.Status = %d, want %d", x.State.Status, status)
			}
			if got := string(rec.Body); got != tt.wantBody {
				t.Errorf("body = %q, want %q", got, tt.wantBody)
			}
			if x.State.BytesOut != int64(len(tt.wantBody)) {
				t.Errorf("State.BytesOut = %d, want %d", x.State.BytesOut, len(tt.wantBody))
			}
			wantLen := len(tt.wantBody)
			if tt.method == "HEAD" {
				wantLen = tt.wantLen
			}
			if got := headerValues(&rec.Hdr, "Content-Length"); !slices.Equal(got, []string{strconv.Itoa(wantLen)}) {
				t.Errorf("Content-Length = %q, want [%d]", got, wantLen)
			}
			if got := headerValues(&rec.Hdr, "Content-Type"); !slices.Equal(got, []string{"application/json"}) {
				t.Errorf("Content-Type = %q, want [application/json]", got)
			}
			if got := headerValues(&rec.Hdr, "Cache-Control"); !slices.Equal(got, []string{"no-store"}) {
				t.Errorf("Cache-Control = %q, want [no-store]", got)
			}
			if tt.wantBody != "" {
				var v struct {
					Error     string `json:"error"`
					Status    int    `json:"status"`
					RequestID string `json:"request_id"`
				}
				if err := json.Unmarshal(rec.Body, &v); err != nil {
					t.Fatalf("body is not JSON: %v", err)
				}
				if v.Error != string(tt.code) || v.Status != status {
					t.Errorf("decoded body = %+v, want error %q status %d", v, tt.code, status)
				}
			}
		})
	}
}

func TestFailReplacesHeadersSetEarlier(t *testing.T) {
	// A stage may have set a Content-Type or Content-Length before failing;
	// the error body's own must win, once.
	x, rec := newExchange(t, "GET")
	rec.Hdr.Add("Content-Length", "99999")
	rec.Hdr.Add("content-type", "text/html")
	rec.Hdr.Add("X-Kept", "yes")
	x.State.RequestID = "id"
	Fail(x, NoRoute)

	want := strconv.Itoa(len(rec.Body))
	if got := headerValues(&rec.Hdr, "Content-Length"); !slices.Equal(got, []string{want}) {
		t.Errorf("Content-Length = %q, want [%s]", got, want)
	}
	if got := headerValues(&rec.Hdr, "Content-Type"); !slices.Equal(got, []string{"application/json"}) {
		t.Errorf("Content-Type = %q, want [application/json]", got)
	}
	if got := headerValues(&rec.Hdr, "X-Kept"); !slices.Equal(got, []string{"yes"}) {
		t.Errorf("X-Kept = %q, want [yes]", got)
	}
}

func TestFailIsNoOpOnceAStatusWasWritten(t *testing.T) {
	x, rec := newExchange(t, "GET")
	x.State.Status = 200
	x.State.BytesOut = 10
	Fail(x, UpstreamProtocol)

	if len(rec.Statuses) != 0 || len(rec.Body) != 0 || rec.Hdr.Len() != 0 {
		t.Errorf("Fail wrote statuses %v, body %q, %d header fields; want nothing", rec.Statuses, rec.Body, rec.Hdr.Len())
	}
	if x.State.Status != 200 || x.State.BytesOut != 10 {
		t.Errorf("State = status %d, bytes %d; want 200 and 10 unchanged", x.State.Status, x.State.BytesOut)
	}
}

func TestFailAllocatesNothing(t *testing.T) {
	x, rec := newExchange(t, "GET")
	x.State.RequestID = strings.Repeat("r", 64)
	Fail(x, NoHealthyEndpoint) // warm up the recorder's buffers
	allocs := testing.AllocsPerRun(100, func() {
		rec.Reset()
		x.State.Status = 0
		Fail(x, NoHealthyEndpoint)
	})
	if allocs != 0 {
		t.Errorf("Fail allocated %v times per run, want 0", allocs)
	}
}
