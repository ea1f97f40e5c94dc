package pipeline

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
)

func TestEarlyData(t *testing.T) {
	done := make(chan struct{})
	close(done)
	never := make(chan struct{})
	tests := []struct {
		name      string
		method    string
		route     bool // route early_data
		early     bool // received in 0-RTT
		handshake chan struct{}
		trusted   bool
		header    string // client's Early-Data, "" for none
		cancelled bool   // client gone before the handshake
		// want
		status    int      // 0: forwarded
		forwarded []string // Early-Data values the upstream sees
		stillEarl bool
	}{
		{name: "ordinary request passes untouched", method: "POST", status: 0},
		{name: "client-sent Early-Data is removed", method: "GET", header: "1"},
		{name: "trusted proxy's Early-Data is kept", method: "GET", route: true, trusted: true, header: "1", forwarded: []string{"1"}},
		{name: "early GET on an opted-in route is marked", method: "GET", route: true, early: true, handshake: never, forwarded: []string{"1"}, stillEarl: true},
		{name: "early HEAD on an opted-in route is marked", method: "HEAD", route: true, early: true, handshake: never, forwarded: []string{"1"}, stillEarl: true},
		{name: "early GET with a forged header is marked once", method: "GET", route: true, early: true, handshake: never, header: "1", forwarded: []string{"1"}, stillEarl: true},
		{name: "early POST gets 425 even on an opted-in route", method: "POST", route: true, early: true, handshake: never, status: 425},
		{name: "early DELETE gets 425", method: "DELETE", early: true, handshake: never, status: 425},
		{name: "early GET elsewhere waits for the handshake", method: "GET", early: true, handshake: done},
		{name: "early GET whose client leaves gets 425", method: "GET", early: true, handshake: never, cancelled: true, status: 425},
		{name: "proxy-marked GET on another route gets 425", method: "GET", trusted: true, header: "1", status: 425},
		{name: "proxy-marked POST gets 425", method: "POST", route: true, trusted: true, header: "1", status: 425},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, rec := newExchange(t, tt.method)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancelled {
				cancel()
			}
			x.Ctx = ctx
			x.Req.EarlyData, x.Req.HandshakeDone = tt.early, tt.handshake
			x.State.TrustedPeer = tt.trusted
			if tt.header != "" {
				x.Req.Header.Add("Early-Data", tt.header)
			}
			var reached bool
			var seen []string
			var stillEarly bool
			h, err := newEarlyData(&EarlyDataSettings{EarlyData: tt.route}, nil, exchange.HandlerFunc(func(x *exchange.Exchange) {
				reached = true
				seen = headerValues(&x.Req.Header, "Early-Data")
				stillEarly = x.Req.EarlyData
			}))
			if err != nil {
				t.Fatal(err)
			}
			h.ServeExchange(x)
			if tt.status != 0 {
				if reached || !slices.Equal(rec.Statuses, []int{tt.status}) {
					t.Fatalf("forwarded=%v statuses=%v, want only %d", reached, rec.Statuses, tt.status)
				}
				return
			}
			if !reached {
				t.Fatalf("not forwarded; statuses %v", rec.Statuses)
			}
			if !slices.Equal(seen, tt.forwarded) {
				t.Errorf("upstream sees Early-Data %q, want %q", seen, tt.forwarded)
			}
			if stillEarly != tt.stillEarl {
				t.Errorf("Req.EarlyData = %v downstream, want %v", stillEarly, tt.stillEarl)
			}
		})
	}
}

// TestEarlyDataRetriesUpstream425 checks RFC 8470 §5.2 for requests penstock
// forwarded from early data: an upstream 425 is held back and the request is
// sent once more after the handshake, without Early-Data; other answers
// pass through untouched.
func TestEarlyDataRetriesUpstream425(t *testing.T) {
	tests := []struct {
		name       string
		upstream   []int // status per call
		clientGone bool
		wantCalls  int
		wantStatus []int
		wantBody   string
		wantSeen   []string // Early-Data per call
	}{
		{name: "425 is retried after the handshake", upstream: []int{425, 200}, wantCalls: 2, wantStatus: []int{200}, wantBody: "call 2", wantSeen: []string{"1", ""}},
		{name: "other answers pass through", upstream: []int{503}, wantCalls: 1, wantStatus: []int{503}, wantBody: "call 1", wantSeen: []string{"1"}},
		{name: "a second 425 is the client's", upstream: []int{425, 425}, wantCalls: 2, wantStatus: []int{425}, wantBody: "call 2", wantSeen: []string{"1", ""}},
		{name: "client gone before the handshake: no retry", upstream: []int{425}, clientGone: true, wantCalls: 1, wantSeen: []string{"1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x, rec := newExchange(t, "GET")
			handshake := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.clientGone {
				cancel()
			} else {
				close(handshake)
			}
			x.Ctx = ctx
			x.Req.EarlyData, x.Req.HandshakeDone = true, handshake
			rec.Hdr.Add("X-Request-Id", "rid")
			var seen []string
			h, _ := newEarlyData(&EarlyDataSettings{EarlyData: true}, nil, exchange.HandlerFunc(func(x *exchange.Exchange) {
				v, _ := x.Req.Header.Get("Early-Data")
				seen = append(seen, v)
				status := tt.upstream[len(seen)-1]
				x.State.Status = status
				x.W.Header().Add("X-Call", fmt.Sprint(len(seen)))
				x.W.WriteHeader(status)
				x.W.Write([]byte(fmt.Sprintf("call %d", len(seen))))
			}))
			h.ServeExchange(x)
			if len(seen) != tt.wantCalls || !slices.Equal(seen, tt.wantSeen) {
				t.Fatalf("upstream saw Early-Data %q, want %q", seen, tt.wantSeen)
			}
			if !slices.Equal(rec.Statuses, tt.wantStatus) || string(rec.Body) != tt.wantBody {
				t.Fatalf("client got %v %q, want %v %q", rec.Statuses, rec.Body, tt.wantStatus, tt.wantBody)
			}
			if tt.wantStatus == nil {
				return
			}
			if got := headerValues(&rec.Hdr, "X-Call"); !slices.Equal(got, []string{fmt.Sprint(tt.wantCalls)}) {
				t.Errorf("client header X-Call = %q: the held-back response leaked", got)
			}
			if got := headerValues(&rec.Hdr, "X-Request-Id"); !slices.Equal(got, []string{"rid"}) {
				t.Errorf("client header X-Request-Id = %q, want the one set before", got)
			}
		})
	}
}
