package admin

import "net/http"

// postgres is GET /postgres: the PostgreSQL proxy's pools (like
// PgBouncer's SHOW POOLS: open, idle, active and waiting per database,
// user and server, the breaker and replica lag) and its client count.
func (a *api) postgres(w http.ResponseWriter, _ *http.Request) {
	var st any
	if a.o.Postgres != nil {
		st = a.o.Postgres()
	}
	if st == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no postgres section in the configuration"})
		return
	}
	writeJSON(w, http.StatusOK, st)
}
