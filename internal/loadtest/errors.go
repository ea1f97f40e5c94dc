package loadtest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// errKind sorts a failed request into the summary's error columns.
type errKind int

const (
	errConnect   errKind = iota // TCP connect (or QUIC path) failed: refused, unreachable
	errTLS                      // TLS or QUIC handshake failed
	errTimeout                  // no complete response within --timeout
	errReset                    // connection reset by the peer
	errClosed                   // connection closed before the response was complete
	errProtocol                 // the response could not be parsed
	errStatus5xx                // a response with a 5xx status (it counts as a response too)
	errOther
	numErrKinds
)

var errKindNames = [numErrKinds]string{"connect", "tls", "timeout", "reset", "closed", "protocol", "status_5xx", "other"}

func (k errKind) String() string { return errKindNames[k] }

// kindError is an error whose kind is known where it happens (dial,
// handshake, parse).
type kindError struct {
	kind errKind
	err  error
}

func (e *kindError) Error() string { return e.kind.String() + ": " + e.err.Error() }
func (e *kindError) Unwrap() error { return e.err }

// classify returns the kind of a request's error.
func classify(err error) errKind {
	var ke *kindError
	var ne net.Error
	var re tls.RecordHeaderError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.As(err, &ke):
		return ke.kind
	case errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return errConnect
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return errReset
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return errClosed
	case errors.As(err, &re):
		return errTLS
	}
	return errOther
}
