package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestServePostgres runs `penstock serve` with a postgres section whose
// server is unreachable: the proxy listens, a client's login fails with a
// clear FATAL naming the server (08006, then 57P03 once its breaker
// is open), GET /postgres shows the pool, and a reload
// applies a new pool size.
func TestServePostgres(t *testing.T) {
	pgAddr, adminAddr, httpAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	unreachable := freeAddr(t) // nothing listens there
	file := filepath.Join(t.TempDir(), "penstock.yaml")
	write := func(poolSize int) {
		text := `listeners: [{name: main, address: "` + httpAddr + `"}]
upstreams: [{name: up, endpoints: [{address: "127.0.0.1:9"}]}]
routes: [{name: r, match: {path: /}, upstream: up}]
admin: {address: "` + adminAddr + `"}
reload: {watch: true, debounce: 50ms}
logging: {format: text}
postgres:
  listen: "` + pgAddr + `"
  users: [{name: app, password: secret}]
  timeouts: {connect: 1s}
  databases: [{name: app, primary: "` + unreachable + `", pool_size: ` + strconv.Itoa(poolSize) + `}]
`
		os.WriteFile(file+".tmp", []byte(text), 0o600)
		os.Rename(file+".tmp", file)
	}
	write(5)
	logs := &lockedBuffer{}
	exited := make(chan int, 1)
	go func() { exited <- run([]string{"serve", "-c", file}, io.Discard, logs) }()
	t.Cleanup(func() {
		syscall.Kill(os.Getpid(), syscall.SIGTERM)
		<-exited
	})
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: timed out\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	login := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c, err := pgconn.Connect(ctx, "postgres://app:secret@"+pgAddr+"/app?sslmode=disable")
		if err == nil {
			c.Close(ctx)
		}
		return err
	}
	maxOf := func() int {
		resp, err := http.Get("http://" + adminAddr + "/postgres")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var st struct {
			Pools []struct{ Max int } `json:"pools"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		if len(st.Pools) != 1 {
			return -1
		}
		return st.Pools[0].Max
	}
	var pgErr *pgconn.PgError
	wait("proxy answers", func() bool { return errors.As(login(), &pgErr) })
	// 08006 while connects fail; 57P03 once the breaker has opened.
	if (pgErr.Code != "08006" && pgErr.Code != "57P03") || pgErr.Severity != "FATAL" || !strings.Contains(pgErr.Message, unreachable) {
		t.Fatalf("login with the server unreachable: %v, want FATAL 08006 or 57P03 naming %s", pgErr, unreachable)
	}
	if got := maxOf(); got != 5 {
		t.Fatalf("GET /postgres pool max = %d, want 5", got)
	}
	write(7)
	wait("reload applied", func() bool { login(); return maxOf() == 7 })
}
