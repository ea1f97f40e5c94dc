package pipeline

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/failure"
)

// readAll reads r with a buffer of size bufSize until an error and returns
// what was read and that error (io.EOF included, unlike io.ReadAll).
func readAll(r io.Reader, bufSize int) ([]byte, error) {
	var out []byte
	buf := make([]byte, bufSize)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// closeRecorder is a request body that records Close.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

func TestLimitBodyDeclaredLength(t *testing.T) {
	tests := []struct {
		name          string
		limit         int64
		contentLength int64
		wantOK        bool
		wantWrapped   bool
	}{
		{name: "no limit lets a huge body through", limit: 0, contentLength: 1 << 40, wantOK: true},
		{name: "negative limit is no limit", limit: -1, contentLength: 1 << 40, wantOK: true},
		{name: "no limit leaves unknown length unwrapped", limit: 0, contentLength: -1, wantOK: true},
		{name: "declared length under the limit", limit: 100, contentLength: 99, wantOK: true},
		{name: "declared length at the limit", limit: 100, contentLength: 100, wantOK: true},
		{name: "empty body", limit: 100, contentLength: 0, wantOK: true},
		{name: "declared length over the limit", limit: 100, contentLength: 101, wantOK: false},
		{name: "unknown length is wrapped", limit: 100, contentLength: -1, wantOK: true, wantWrapped: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, rec := newExchange(t, "POST")
			x.State.RequestID = "rid"
			body := &closeRecorder{Reader: strings.NewReader("")}
			x.Req.Body = body
			x.Req.ContentLength = tt.contentLength

			ok := LimitBody(x, tt.limit)
			if ok != tt.wantOK {
				t.Fatalf("LimitBody = %v, want %v", ok, tt.wantOK)
			}
			_, wrapped := x.Req.Body.(*LimitedBody)
			if wrapped != tt.wantWrapped {
				t.Errorf("body wrapped = %v, want %v", wrapped, tt.wantWrapped)
			}
			if !wrapped && x.Req.Body != body {
				t.Errorf("body replaced by %T, want the original", x.Req.Body)
			}
			if ok {
				if len(rec.Statuses) != 0 || x.State.Status != 0 {
					t.Errorf("LimitBody answered %v (State.Status %d) on a body it let through", rec.Statuses, x.State.Status)
				}
				return
			}
			if !slices.Equal(rec.Statuses, []int{413}) || x.State.Status != 413 {
				t.Errorf("statuses = %v, State.Status = %d; want [413] and 413", rec.Statuses, x.State.Status)
			}
			// The client is still sending a body nobody will read: the
			// connection cannot be reused.
			if got := headerValues(&rec.Hdr, "Connection"); !slices.Equal(got, []string{"close"}) {
				t.Errorf("Connection = %q, want [close]", got)
			}
			want := `{"error":"request_body_too_large","status":413,"request_id":"rid"}` + "\n"
			if string(rec.Body) != want {
				t.Errorf("body = %q, want %q", rec.Body, want)
			}
		})
	}
}

func TestLimitedBodyUnknownLength(t *testing.T) {
	const limit = 16
	tests := []struct {
		name     string
		bodyLen  int
		wantErr  error
		wantRead int
	}{
		{name: "empty", bodyLen: 0, wantErr: io.EOF, wantRead: 0},
		{name: "one under the limit", bodyLen: limit - 1, wantErr: io.EOF, wantRead: limit - 1},
		{name: "exactly the limit", bodyLen: limit, wantErr: io.EOF, wantRead: limit},
		{name: "one over the limit", bodyLen: limit + 1, wantErr: failure.ErrBodyTooLarge, wantRead: limit},
		{name: "far over the limit", bodyLen: 10 * limit, wantErr: failure.ErrBodyTooLarge, wantRead: limit},
	}
	for _, tt := range tests {
		// The caller's buffer size must not change the outcome.
		for _, bufSize := range []int{1, 5, limit, limit + 1, 4096} {
			t.Run(fmt.Sprintf("%s/buffer %d", tt.name, bufSize), func(t *testing.T) {
				x, _ := newExchange(t, "POST")
				src := strings.Repeat("x", tt.bodyLen)
				x.Req.Body = io.NopCloser(strings.NewReader(src))
				x.Req.ContentLength = -1
				if !LimitBody(x, limit) {
					t.Fatal("LimitBody refused a body of unknown length")
				}

				got, err := readAll(x.Req.Body, bufSize)
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("final error = %v, want %v", err, tt.wantErr)
				}
				if len(got) != tt.wantRead {
					t.Errorf("read %d bytes, want %d", len(got), tt.wantRead)
				}
				if tt.wantErr == failure.ErrBodyTooLarge {
					// Once over, it stays over.
					if n, err := x.Req.Body.Read(make([]byte, 8)); n != 0 || !errors.Is(err, failure.ErrBodyTooLarge) {
						t.Errorf("Read after the overrun = %d, %v; want 0, failure.ErrBodyTooLarge", n, err)
					}
				}
			})
		}
	}
}

func TestLimitedBodyCloseClosesTheClientBody(t *testing.T) {
	x, _ := newExchange(t, "POST")
	body := &closeRecorder{Reader: strings.NewReader("abc")}
	x.Req.Body = body
	x.Req.ContentLength = -1
	LimitBody(x, 10)
	if err := x.Req.Body.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !body.closed {
		t.Error("closing the limited body did not close the client body")
	}
}
