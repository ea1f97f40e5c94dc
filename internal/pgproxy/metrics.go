package pgproxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the proxy's Prometheus series, registered once on the
// process's registry (reloads keep them).
type metrics struct {
	clients       prometheus.Gauge
	queries       *prometheus.CounterVec
	transactions  *prometheus.CounterVec
	routed        *prometheus.CounterVec
	wait          *prometheus.HistogramVec
	waitTimeouts  *prometheus.CounterVec
	acquireErrors *prometheus.CounterVec
	fallbacks     *prometheus.CounterVec
	sessionState  *prometheus.CounterVec
	serverLost    *prometheus.CounterVec
	breaker       *prometheus.CounterVec
	evictions     prometheus.Counter
	// busyPollWindows counts postgres.busy_poll windows.
	busyPollWindows prometheus.Counter
	cancels         prometheus.Counter
	authFailures    prometheus.Counter
	protocolErrors  prometheus.Counter
	reg             prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		reg: reg,
		clients: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "penstock_pg_clients", Help: "PostgreSQL clients connected and logged in.",
		}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_pg_queries_total", Help: "Queries sent to servers (simple Query and extended Execute messages), by database.",
		}, []string{"database"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_pg_transactions_total", Help: "Transactions ended (ReadyForQuery with status idle), by database.",
		}, []string{"database"}),
		routed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_pg_routed_statements_total", Help: "Statements by kind (select, insert, update, delete, begin, commit, rollback, set, ddl, other) and the server role they ran on (primary, replica).",
		}, []string{"database", "kind", "target"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "penstock_pg_wait_seconds", Help: "Time clients waited in the queue for a server connection of a full pool.",
			Buckets: []float64{0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30},
		}, []string{"database"}),
		waitTimeouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_pg_wait_timeouts_total", Help: "Clients that waited timeouts.query_wait for a server connection and got SQLSTATE 53300.",
		}, []string{"database"}),
		acquireErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_pg_acquire_errors_total", Help: "Requests answered with an error because no server connection could be had, by SQLSTATE.",
		}, []string{"database", "sqlstate"}),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_pg_replica_fallbacks_total", Help: "Reads sent to the primary because no replica was usable.",
		}, []string{"database"}),
		sessionState: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_pg_session_state_total", Help: "Clients whose session state pinned a server connection, or statements rejected for it (postgres.session_state).",
		}, []string{"database", "action"}),
		serverLost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_pg_server_connections_lost_total", Help: "Server connections that failed while attached to a client.",
		}, []string{"server"}),
		breaker: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "penstock_pg_breaker_opened_total", Help: "Times a server was marked down after consecutive failed connects.",
		}, []string{"server"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "penstock_pg_prepared_evictions_total", Help: "Prepared statements closed on a server connection to stay within postgres.prepared_statements.",
		}),
		busyPollWindows: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "penstock_pg_busy_poll_windows_total", Help: "Windows in which the proxy kept its process awake instead of sleeping in the network poller (postgres.busy_poll).",
		}),
		cancels: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "penstock_pg_cancel_requests_total", Help: "Cancel requests forwarded to a server.",
		}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "penstock_pg_auth_failures_total", Help: "Client logins refused.",
		}),
		protocolErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "penstock_pg_protocol_errors_total", Help: "Client connections closed for a malformed or oversized message.",
		}),
	}
}

// bind registers the series and the pool gauges, read from p at scrape
// time.
func (m *metrics) bind(p *Proxy) {
	if m.reg == nil {
		return
	}
	m.reg.MustRegister(m.clients, m.queries, m.transactions, m.routed, m.wait, m.waitTimeouts, m.acquireErrors,
		m.fallbacks, m.sessionState, m.serverLost, m.breaker, m.evictions, m.busyPollWindows, m.cancels, m.authFailures, m.protocolErrors,
		&poolCollector{p: p})
}

// poolCollector reports each pool's connections at scrape time.
type poolCollector struct{ p *Proxy }

var (
	poolConnsDesc = prometheus.NewDesc("penstock_pg_pool_connections", "Server connections of a pool, by state (idle, active).",
		[]string{"database", "user", "server", "role", "state"}, nil)
	poolMaxDesc = prometheus.NewDesc("penstock_pg_pool_max_connections", "A pool's pool_size.",
		[]string{"database", "user", "server", "role"}, nil)
	poolWaitingDesc = prometheus.NewDesc("penstock_pg_pool_waiting_clients", "Clients waiting for a server connection of a pool.",
		[]string{"database", "user", "server", "role"}, nil)
	serverUpDesc = prometheus.NewDesc("penstock_pg_server_up", "1 when the server's breaker is closed, 0 while it is marked down.",
		[]string{"database", "server", "role"}, nil)
	replicaLagDesc = prometheus.NewDesc("penstock_pg_replica_lag_bytes", "A replica's replay lag behind the primary, in bytes of WAL.",
		[]string{"database", "server"}, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolConnsDesc
	ch <- poolMaxDesc
	ch <- poolWaitingDesc
	ch <- serverUpDesc
	ch <- replicaLagDesc
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.p.State()
	seen := map[[2]string]bool{}
	for _, ps := range st.Pools {
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(ps.Idle), ps.Database, ps.User, ps.Server, ps.Role, "idle")
		ch <- prometheus.MustNewConstMetric(poolConnsDesc, prometheus.GaugeValue, float64(ps.Active), ps.Database, ps.User, ps.Server, ps.Role, "active")
		ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(ps.Max), ps.Database, ps.User, ps.Server, ps.Role)
		ch <- prometheus.MustNewConstMetric(poolWaitingDesc, prometheus.GaugeValue, float64(ps.Waiting), ps.Database, ps.User, ps.Server, ps.Role)
		k := [2]string{ps.Database, ps.Server}
		if seen[k] {
			continue
		}
		seen[k] = true
		up := 1.0
		if ps.Down {
			up = 0
		}
		ch <- prometheus.MustNewConstMetric(serverUpDesc, prometheus.GaugeValue, up, ps.Database, ps.Server, ps.Role)
		if ps.Role == "replica" && ps.LagBytes >= 0 {
			ch <- prometheus.MustNewConstMetric(replicaLagDesc, prometheus.GaugeValue, float64(ps.LagBytes), ps.Database, ps.Server)
		}
	}
}
