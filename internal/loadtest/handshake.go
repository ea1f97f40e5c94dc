package loadtest

import (
	"context"
	"time"
)

// handshake is one job of a handshake storm: a new connection (TCP and TLS,
// or QUIC), optionally one request on it, then close. The Handshake phase is
// measured from the job's intended time to the end of the handshake, so
// handshakes that queue behind slow ones are charged for it, like requests
// in an open-loop run; Connect and TLS are the phases' own durations.
// Sessions are never resumed: every handshake is a full one.
func (r *runner) handshake(w *worker, j job) {
	intended := r.origin.Add(j.at)
	start := time.Now()
	measured := j.at >= r.o.Warmup
	late := start.Sub(intended) > r.o.Late
	t := r.targets[j.seq%int64(len(r.targets))]
	var ct connTimes
	ctx, cancel := context.WithTimeout(r.ctx, r.o.Timeout)
	s, err := r.dialer.dial(ctx, r.origins[t.origin], &ct)
	cancel()
	if err != nil {
		r.record(w, intended, measured, late, nil, err)
		return
	}
	defer s.close()
	if measured {
		w.shard.conn(r.rec, ct.connect, ct.tls, time.Since(intended))
	}
	if !r.o.HandshakeRequest {
		if !measured {
			w.shard.warmupDone()
		} else {
			// Its end counts like a request's: a storm the server cannot
			// keep up with is measured until its last handshake finished.
			w.shard.handshakeDone(late, time.Now())
		}
		return
	}
	out := &w.out
	*out = outcome{}
	err = s.roundTrip(t, time.Now(), r.o.Timeout, out)
	r.record(w, intended, measured, late, out, err)
}
