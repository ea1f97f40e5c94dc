//go:build !(linux && (amd64 || arm64))

package main

import "time"

// ticker falls back to the runtime's timer, whose resolution may be coarser
// than the request interval; latencies then include that schedule error.
type ticker struct{ t *time.Ticker }

func newTicker(period time.Duration) (*ticker, error) {
	return &ticker{t: time.NewTicker(period)}, nil
}

func (t *ticker) wait() (uint64, error) {
	<-t.t.C
	return 1, nil
}

func (t *ticker) stop() { t.t.Stop() }
