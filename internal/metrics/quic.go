package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// quicMetrics describe the QUIC connections of HTTP/3 listeners.
type quicMetrics struct {
	handshakes  *prometheus.CounterVec
	retries     *prometheus.CounterVec
	rtt         *prometheus.HistogramVec
	packetsSent *prometheus.CounterVec
	packetsLost *prometheus.CounterVec
}

// rttBuckets span loopback (under a millisecond) to a bad mobile link.
var rttBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

func newQUICMetrics() quicMetrics {
	l := []string{"listener"}
	return quicMetrics{
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_quic_handshakes_total",
			Help: "QUIC connections accepted, by whether their handshake completed (ok) or the connection ended first (failed).",
		}, []string{"listener", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_quic_retries_total",
			Help: "QUIC connection attempts asked to validate their address with a Retry because handshakes exceeded http3.handshake_rate_limit.",
		}, l),
		rtt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "penstock_quic_smoothed_rtt_seconds",
			Help:    "Smoothed round-trip time of QUIC connections (RFC 9002 §5.3), recorded when a connection closes.",
			Buckets: rttBuckets,
		}, l),
		packetsSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_quic_packets_sent_total",
			Help: "QUIC packets sent on closed connections, retransmissions included.",
		}, l),
		packetsLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_quic_packets_lost_total",
			Help: "QUIC packets declared lost on closed connections; divided by packets sent, the loss rate.",
		}, l),
	}
}

func (q quicMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(q.handshakes, q.retries, q.rtt, q.packetsSent, q.packetsLost)
}

// QUICHandshake counts an accepted QUIC connection whose handshake completed
// (ok) or that ended before.
func (m *Metrics) QUICHandshake(listener string, ok bool) {
	r := "failed"
	if ok {
		r = "ok"
	}
	m.quic.handshakes.WithLabelValues(listener, r).Inc()
}

// QUICRetry counts a connection attempt sent a Retry.
func (m *Metrics) QUICRetry(listener string) {
	m.quic.retries.WithLabelValues(listener).Inc()
}

// QUICConnClosed records a closed QUIC connection's smoothed RTT and packet
// counts.
func (m *Metrics) QUICConnClosed(listener string, smoothedRTT time.Duration, sent, lost uint64) {
	if smoothedRTT > 0 {
		m.quic.rtt.WithLabelValues(listener).Observe(smoothedRTT.Seconds())
	}
	m.quic.packetsSent.WithLabelValues(listener).Add(float64(sent))
	m.quic.packetsLost.WithLabelValues(listener).Add(float64(lost))
}
