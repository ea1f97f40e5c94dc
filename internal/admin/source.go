package admin

import "net/http"

// configSource is GET /config/source: where the configuration comes from
// when it is not a file (etcd), the revision served, the last revision
// refused with its errors (field and line), whether etcd answers, and the
// state of the on-disk cache and of this node's registration.
func (a *api) configSource(w http.ResponseWriter, _ *http.Request) {
	var st any
	if a.o.ConfigSource != nil {
		st = a.o.ConfigSource()
	}
	if st == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "the configuration is read from a file, not a configuration source (penstock serve --config-source)"})
		return
	}
	writeJSON(w, http.StatusOK, st)
}
