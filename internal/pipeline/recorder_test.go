package pipeline

import (
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/exchange/exchangetest"
)

// The stand-in engine of these tests (see exchangetest).
type recorder = exchangetest.Recorder

func newExchange(t *testing.T, method string) (*exchange.Exchange, *recorder) {
	return exchangetest.NewExchange(t, method)
}

var headerValues = exchangetest.HeaderValues
