package pipeline

import (
	"context"
	"slices"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
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
			x.State.EarlyData, x.State.HandshakeDone = tt.early, tt.handshake
			x.State.TrustedPeer = tt.trusted
			if tt.header != "" {
				x.Req.Header.Add("Early-Data", tt.header)
			}
			var reached bool
			var seen []string
			var stillEarly bool
			h, err := newEarlyData(&config.Route{EarlyData: tt.route}, exchange.HandlerFunc(func(x *exchange.Exchange) {
				reached = true
				seen = headerValues(&x.Req.Header, "Early-Data")
				stillEarly = x.State.EarlyData
			}))
			if err != nil {
				t.Fatal(err)
			}
			h.ServeExchange(x)
			if tt.status != 0 {
				if reached || !slices.Equal(rec.statuses, []int{tt.status}) {
					t.Fatalf("forwarded=%v statuses=%v, want only %d", reached, rec.statuses, tt.status)
				}
				return
			}
			if !reached {
				t.Fatalf("not forwarded; statuses %v", rec.statuses)
			}
			if !slices.Equal(seen, tt.forwarded) {
				t.Errorf("upstream sees Early-Data %q, want %q", seen, tt.forwarded)
			}
			if stillEarly != tt.stillEarl {
				t.Errorf("State.EarlyData = %v downstream, want %v", stillEarly, tt.stillEarl)
			}
		})
	}
}

func TestTooEarlyStatus(t *testing.T) {
	if got := TooEarly.Status(); got != 425 {
		t.Fatalf("TooEarly.Status() = %d, want 425", got)
	}
}
