package admin

import (
	"net/http"
	"sort"

	"github.com/penstock-dev/penstock/internal/function"
)

// functions shows each function of the configuration being served: its
// settings, which mechanism caps its memory and CPU, its queue and its
// instances (state, pid, in flight, served, init time).
func (a *api) functions(w http.ResponseWriter, _ *http.Request) {
	out := []function.Status{}
	for _, f := range a.o.Gateway.Snapshot().Functions {
		out = append(out, f.Status())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"functions": out})
}
