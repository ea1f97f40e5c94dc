package admin

import (
	"net/http"
	"sort"
	"strconv"

	"github.com/penstock-dev/penstock/internal/ratelimit"
)

// hottestKeys is how many keys GET /limits shows per limit unless ?top=
// says otherwise (at most maxHottestKeys).
const (
	hottestKeys    = 10
	maxHottestKeys = 1000
)

// limitState is one limit in GET /limits.
type limitState struct {
	Name      string  `json:"name"`
	Algorithm string  `json:"algorithm"`
	Rate      float64 `json:"rate,omitempty"`
	Burst     int64   `json:"burst,omitempty"`
	Count     int64   `json:"count,omitempty"`
	Window    string  `json:"window,omitempty"`
	Key       string  `json:"key"`
	Cost      string  `json:"cost"`
	Mode      string  `json:"mode"`
	AllRoutes bool    `json:"all_routes"`
	// Redis is the address of a global limit's Redis, "" for a local one.
	Redis string `json:"redis,omitempty"`
	// Keys counts the keys held in this process (for a global limit, by
	// its local fallback), MaxKeys their bound.
	Keys    int `json:"keys"`
	MaxKeys int `json:"max_keys"`
	// Hottest are the keys with the most refusals, then the most use, in
	// this process.
	Hottest []ratelimit.KeyStat `json:"hottest"`
}

// limits shows each rate limit of the configuration being served: its
// settings and its hottest keys (?top=N of them, default 10).
func (a *api) limits(w http.ResponseWriter, r *http.Request) {
	top := hottestKeys
	if v := r.URL.Query().Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "top must be a non-negative integer"})
			return
		}
		top = min(n, maxHottestKeys)
	}
	out := []limitState{}
	for _, l := range a.o.Gateway.Snapshot().Limiters() {
		c := l.Config
		ls := limitState{Name: c.Name, Algorithm: c.Algorithm, Rate: c.Rate, Burst: c.Burst, Count: c.Count,
			Key: c.Key.From, Cost: c.Cost.From, Mode: c.Mode, AllRoutes: c.AllRoutes, MaxKeys: c.MaxKeys,
			Keys: l.Keys(), Hottest: l.Hottest(top)}
		if c.Window != 0 {
			ls.Window = c.Window.String()
		}
		if c.Key.Name != "" {
			ls.Key += ":" + c.Key.Name
		}
		if c.Cost.Name != "" {
			ls.Cost += ":" + c.Cost.Name
		}
		if c.Redis != nil {
			ls.Redis = c.Redis.Address
		}
		if ls.Hottest == nil {
			ls.Hottest = []ratelimit.KeyStat{}
		}
		out = append(out, ls)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	writeJSON(w, http.StatusOK, map[string]any{"limits": out})
}
