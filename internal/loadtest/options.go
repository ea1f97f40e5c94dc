// Package loadtest sends HTTP load at a target and measures it: the engine
// of `penstock bench run`.
//
// A run is open-loop (requests at intended times set by a rate profile,
// whatever the server does), closed-loop (a fixed number of workers, each
// sending its next request when the previous one is answered) or a handshake
// storm (new TLS or QUIC connections at a fixed rate). Latencies go into
// HDR histograms per phase and per interval and can be written as a run log
// (package runlog).
//
// The open-loop rule: every latency is measured from the request's intended
// send time. A request that cannot start on time, because every connection
// is busy or the generator fell behind, keeps its intended time, so the
// waiting counts in its latency, and it is counted as a late start. A
// stalled server is then charged for all the requests it delayed, not just
// the few that were in flight (no coordinated omission).
package loadtest

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Protocols.
const (
	ProtoH1  = "h1"  // HTTP/1.1, cleartext or TLS by the URL's scheme
	ProtoH2  = "h2"  // HTTP/2 over TLS (ALPN h2)
	ProtoH2C = "h2c" // HTTP/2 over cleartext TCP, prior knowledge
	ProtoH3  = "h3"  // HTTP/3 over QUIC
)

// Limits that keep every run bounded.
const (
	// MaxDuration caps a run's measured duration, also when it is meant to
	// end after a number of requests.
	MaxDuration = time.Hour
	// MaxWorkers caps connections × streams, concurrency and concurrent
	// handshakes.
	MaxWorkers = 100_000
)

// Options describe a run. Zero values take the defaults noted.
type Options struct {
	// URLs are the targets, used in turn (round robin), request by request.
	URLs []string
	// Proto is h1 (default), h2, h2c or h3.
	Proto string
	// Method defaults to GET; Header is added to every request; Body is sent
	// with every request.
	Method string
	Header http.Header
	Body   []byte

	// Rate is the open-loop request rate (req/s) of the constant profile;
	// with Concurrency, it caps a closed-loop run's rate instead.
	Rate float64
	// Profile is the open-loop rate over time; nil means Constant(Rate).
	Profile Profile
	// Concurrency > 0 makes the run closed-loop with that many workers.
	Concurrency int
	// Handshakes > 0 makes the run a handshake storm: that many new
	// connections per second, each closed after its handshake (and after
	// one request when HandshakeRequest is set).
	Handshakes       float64
	HandshakeRequest bool

	// Connections is the number of connections per origin: default 50 for
	// an open-loop run, Concurrency for a closed-loop one; for a handshake
	// storm, the most handshakes in progress at once (default 256).
	Connections int
	// Streams is the number of requests in flight per HTTP/2 or HTTP/3
	// connection (default 1; HTTP/1.1 is always 1: no pipelining).
	Streams int
	// Churn > 0 replaces a connection after that many requests.
	Churn int

	// Insecure skips certificate verification. Group picks the TLS key
	// exchange group: x25519, p256 or x25519mlkem768 (default: Go's).
	Insecure bool
	Group    string

	// Timeout bounds each request, connect and handshake (default 5s).
	Timeout time.Duration
	// Duration is the measured time (default 10s, at most MaxDuration);
	// Requests > 0 ends the run after that many measured requests, if that
	// comes first.
	Duration time.Duration
	Requests int64
	// Warmup runs before the measured time at the profile's first rate; its
	// requests are not in the results.
	Warmup time.Duration
	// Late is how long after its intended time a request may start before
	// it counts as a late start (default 1ms).
	Late time.Duration
	// Interval is the run log's histogram interval (default 1s).
	Interval time.Duration

	// Log, if set, receives the run log (package runlog).
	Log io.Writer
	// OnInterval, if set, is called after every interval (progress display).
	OnInterval func(Progress)
	// Version is written into the run log and the User-Agent.
	Version string
}

// Progress is the state of a run after an interval.
type Progress struct {
	Elapsed   time.Duration // measured time so far
	Rate      float64       // responses per second over the last interval
	Responses int64         // so far
	Errors    int64         // so far, every kind
	Late      int64         // late starts so far
	P99       time.Duration // total latency P99 over the last interval
}

// Mode names.
const (
	ModeOpen       = "open"
	ModeClosed     = "closed"
	ModeHandshakes = "handshakes"
)

func (o *Options) mode() string {
	switch {
	case o.Handshakes > 0:
		return ModeHandshakes
	case o.Concurrency > 0:
		return ModeClosed
	}
	return ModeOpen
}

func (o *Options) setDefaults() error {
	if o.Proto == "" {
		o.Proto = ProtoH1
	}
	switch o.Proto {
	case ProtoH1, ProtoH2, ProtoH2C, ProtoH3:
	default:
		return fmt.Errorf("protocol %q: want h1, h2, h2c or h3", o.Proto)
	}
	if o.Method == "" {
		o.Method = http.MethodGet
	}
	if o.Version == "" {
		o.Version = "devel"
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Duration <= 0 {
		o.Duration = 10 * time.Second
		if o.Requests > 0 {
			o.Duration = MaxDuration
		}
	}
	if o.Duration > MaxDuration {
		return fmt.Errorf("duration %s: at most %s", o.Duration, MaxDuration)
	}
	if o.Warmup < 0 || o.Warmup > MaxDuration {
		return fmt.Errorf("warm-up %s: between 0 and %s", o.Warmup, MaxDuration)
	}
	if o.Late <= 0 {
		o.Late = time.Millisecond
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Streams <= 0 {
		o.Streams = 1
	}
	if o.Proto == ProtoH1 && o.Streams != 1 {
		return errors.New("streams: HTTP/1.1 carries one request at a time per connection")
	}
	if o.Churn < 0 || o.Requests < 0 || o.Concurrency < 0 || o.Connections < 0 || o.Rate < 0 || o.Handshakes < 0 {
		return errors.New("counts and rates must not be negative")
	}
	switch o.mode() {
	case ModeHandshakes:
		if o.Connections == 0 {
			o.Connections = 256
		}
		if o.Concurrency > 0 || o.Profile != nil {
			return errors.New("a handshake storm takes no concurrency or profile")
		}
		if o.Handshakes > MaxRate {
			return fmt.Errorf("handshakes: at most %d/s", MaxRate)
		}
	case ModeClosed:
		if o.Profile != nil {
			return errors.New("a rate profile needs an open-loop run (--rate), not --concurrency")
		}
		if o.Connections == 0 || o.Proto == ProtoH1 {
			o.Connections = o.Concurrency // HTTP/1.1: one connection per worker
		}
		o.Streams = 1
	case ModeOpen:
		if o.Profile == nil {
			if !(o.Rate > 0) || o.Rate > MaxRate {
				return fmt.Errorf("an open-loop run needs --rate in (0, %d], or --concurrency for a closed loop", MaxRate)
			}
			o.Profile = Constant(o.Rate)
		}
		if o.Connections == 0 {
			o.Connections = 50
		}
	}
	if o.Connections*o.Streams > MaxWorkers || o.Concurrency > MaxWorkers {
		return fmt.Errorf("at most %d requests in flight", MaxWorkers)
	}
	return nil
}
