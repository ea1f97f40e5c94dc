package admin

import (
	"context"
	"net/http"
	"time"
)

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

// configNodes is GET /config/source/nodes: every node of the fleet with the
// revision it serves, read from etcd now (within 5 s), and whether they
// have converged on the key's revision.
func (a *api) configNodes(w http.ResponseWriter, r *http.Request) {
	if a.o.ConfigNodes == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "the configuration is read from a file, not a configuration source (penstock serve --config-source)"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	nodes, err := a.o.ConfigNodes(ctx)
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, nodes)
}
