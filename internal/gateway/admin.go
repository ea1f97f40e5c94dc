package gateway

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/penstock-dev/penstock/internal/listener"
)

// adminServer is the operator's listener. It serves /healthz (the process is
// alive) and /readyz (a config is loaded and the listeners are up); the full
// admin API grows here.
type adminServer struct {
	ln  net.Listener
	srv *http.Server
}

func startAdmin(ctx context.Context, address string, g *Gateway) (*adminServer, error) {
	ln, err := listener.Listen(ctx, address)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if g.draining.Load() || g.snap.Load() == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready\n"))
			return
		}
		w.Write([]byte("ready\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return &adminServer{ln: ln, srv: srv}, nil
}
