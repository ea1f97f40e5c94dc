package dashboard_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/penstock-dev/penstock/internal/dashboard"
)

// BenchmarkTick measures one sample of the dashboard (gather the gateway's
// registry, take the deltas, build and encode the State) for a
// configuration of 10 and 100 routes, each having served a GET and a POST,
// and beside it one Prometheus scrape of the same registry
// (the peer: what a scraper costs the process). The dashboard does one
// tick a second while it is open.
func BenchmarkTick(b *testing.B) {
	for _, routes := range []int{10, 100} {
		var y strings.Builder
		y.WriteString("listeners: [{name: http, address: \"127.0.0.1:0\"}]\n")
		y.WriteString("upstreams: [{name: models, endpoints: [{address: \"127.0.0.1:9\"}, {address: \"127.0.0.1:10\"}]}]\n")
		y.WriteString("access_log: {enabled: false}\nroutes:\n")
		for i := range routes {
			fmt.Fprintf(&y, "  - {name: r%d, match: {path: /r%d}, upstream: models}\n", i, i)
		}
		g, reg := gateway(b, y.String())
		if err := g.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		// Every route answers 502 (nothing listens upstream) to a GET and
		// a POST: two series of each histogram per route.
		base := "http://" + g.Addr("http").String()
		for i := range routes {
			for _, method := range []string{"GET", "POST"} {
				req, _ := http.NewRequest(method, fmt.Sprintf("%s/r%d", base, i), nil)
				res, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		}
		d := dashboard.New(dashboard.Options{Gateway: g, Gatherer: reg, Interval: time.Hour})
		b.Run(fmt.Sprintf("routes=%d/dashboard", routes), func(b *testing.B) {
			var n int
			for b.Loop() {
				n = len(dashboard.TickForBenchmark(d))
			}
			b.ReportMetric(float64(n), "state-bytes")
		})
		b.Run(fmt.Sprintf("routes=%d/scrape", routes), func(b *testing.B) {
			h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
			req := httptest.NewRequest("GET", "/metrics", nil)
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				io.Copy(io.Discard, w.Body)
			}
		})
		d.Close()
	}
}
