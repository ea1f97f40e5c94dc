package server_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/penstock-dev/penstock/internal/config"
)

func mustConfig(t testing.TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(text), "reload.yaml")
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, text)
	}
	return cfg
}

// TestReloadUnderLoad drives constant HTTP/1.1 keep-alive, h2c and HTTP/2
// over TLS load while it performs 50 reloads alternating between two valid
// configs, with an invalid config every fifth time. No request may fail,
// every invalid config must leave the previous one serving, and after each
// reload new requests must follow the new routes.
func TestReloadUnderLoad(t *testing.T) {
	a, b := newRecorder(t, "a"), newRecorder(t, "b")
	base := `listeners:
  - {name: h1, address: "127.0.0.1:0"}
  - {name: h2c, address: "127.0.0.1:0", protocols: [h1, h2c]}
  - {name: tls, address: "127.0.0.1:0", tls: {self_signed: true}}
upstreams:
  - {name: a, endpoints: [{address: %s}]}
  - {name: b, endpoints: [{address: %s}]}
routes:
  - {name: x, match: {path_prefix: /x}, upstream: %s}
  - {name: only-in-%s, match: {path: /only-in-%s}, upstream: %s}
`
	cfgFor := func(pool string) string { return fmt.Sprintf(base, a.addr(), b.addr(), pool, pool, pool, pool) }
	invalid := []string{
		cfgFor("a") + "  - {name: broken, match: {path: \"/x/:\"}, upstream: a}\n",     // bad pattern
		cfgFor("a") + "  - {name: dup, match: {path_prefix: /x}, upstream: b}\n",       // conflict
		strings.Replace(cfgFor("b"), "upstream: b}", "upstream: nowhere}", 1),          // unknown upstream
		cfgFor("a") + "bogus: true\n",                                                  // unknown field
		strings.Replace(cfgFor("b"), `address: "127.0.0.1:0"}`, `address: "nope"}`, 1), // bad address
	}

	g := startGateway(t, cfgFor("a"))
	h1URL := baseURL(g, "h1")
	h2cURL := baseURL(g, "h2c")

	var sent, failed atomic.Int64
	var failures sync.Map
	stop := make(chan struct{})
	var wg sync.WaitGroup
	load := func(c *http.Client, url string, post bool) {
		defer wg.Done()
		deadline := time.Now().Add(60 * time.Second) // a bound, not an expectation
		for i := 0; time.Now().Before(deadline); i++ {
			select {
			case <-stop:
				return
			default:
			}
			var resp *http.Response
			var err error
			if post && i%2 == 0 {
				resp, err = c.Post(url+"/x/item", "application/json", strings.NewReader(`{"n":1}`))
			} else {
				resp, err = c.Get(url + "/x/item")
			}
			sent.Add(1)
			if err != nil {
				failed.Add(1)
				failures.Store(err.Error(), true)
				continue
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				failed.Add(1)
				failures.Store(fmt.Sprintf("status %d", resp.StatusCode), true)
			}
		}
	}
	h1 := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	for range 3 {
		wg.Add(1)
		go load(h1, h1URL, true)
	}
	for range 2 {
		wg.Add(1)
		go load(h2cClient(), h2cURL, true)
	}
	wg.Add(1)
	go load(h2Client(), baseURL(g, "tls"), true)

	pools := []string{"b", "a"}
	for i := range 50 {
		pool := pools[i%2]
		if err := g.Reload(mustConfig(t, cfgFor(pool))); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		_, body := do(t, client, "GET", h1URL+"/only-in-"+pool, nil, nil)
		if got := decodeSeen(t, body).Upstream; got != pool {
			t.Fatalf("after reload %d, /only-in-%s reached %q", i, pool, got)
		}
		if i%5 == 4 {
			bad := invalid[(i/5)%len(invalid)]
			cfg, err := config.Parse([]byte(bad), "bad.yaml")
			if err == nil {
				err = g.Reload(cfg)
			}
			if err == nil {
				t.Fatalf("invalid config %d was accepted", (i/5)%len(invalid))
			}
			// The previous config still serves.
			resp, _ := do(t, client, "GET", h1URL+"/only-in-"+pool, nil, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("after a rejected reload the previous config no longer serves: %d", resp.StatusCode)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		var kinds []string
		failures.Range(func(k, _ any) bool { kinds = append(kinds, k.(string)); return true })
		t.Errorf("%d of %d requests failed during reloads: %v", n, sent.Load(), kinds)
	}
	if sent.Load() < 100 {
		t.Errorf("only %d requests were sent: the load did not run", sent.Load())
	}
	if gen := g.Generation(); gen != 51 {
		t.Errorf("generation %d, want 51 (1 + 50 reloads)", gen)
	}
	t.Logf("%d requests during 50 reloads, %d failed", sent.Load(), failed.Load())
}

// TestReloadChangesListeners checks that a reload adds, changes and removes
// listeners: an unchanged listener keeps its connection, a removed one stops
// accepting, an added one starts.
func TestReloadChangesListeners(t *testing.T) {
	rec := newRecorder(t, "up")
	one := fmt.Sprintf(`listeners:
  - {name: keep, address: "127.0.0.1:0"}
  - {name: drop, address: "127.0.0.1:0"}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, rec.addr())
	g := startGateway(t, one)
	keepAddr := g.Addr("keep").String()
	dropAddr := g.Addr("drop").String()

	// A keep-alive client of "keep" goes on using its connection.
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	mustRead(t, c, keepAddr)

	two := fmt.Sprintf(`listeners:
  - {name: keep, address: %q}
  - {name: added, address: "127.0.0.1:0", limits: {idle_timeout: 5s}}
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, keepAddr, rec.addr())
	if err := g.Reload(mustConfig(t, two)); err != nil {
		t.Fatal(err)
	}
	if g.Addr("keep").String() != keepAddr {
		t.Errorf("unchanged listener moved from %s to %s", keepAddr, g.Addr("keep"))
	}
	if g.Addr("added") == nil {
		t.Fatal("added listener not started")
	}
	mustRead(t, client, g.Addr("added").String())
	mustRead(t, c, keepAddr)

	// The removed listener stops accepting once it has drained.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := nc.Get("http://" + dropAddr + "/")
		if err != nil {
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("removed listener still accepting after 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Changing an existing listener's settings keeps its address.
	three := strings.Replace(two, `{name: keep, address: "`+keepAddr+`"}`, `{name: keep, address: "`+keepAddr+`", limits: {idle_timeout: 7s}}`, 1)
	if err := g.Reload(mustConfig(t, three)); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, keepAddr)
	if g.Addr("keep").String() != keepAddr {
		t.Errorf("changed listener moved to %s", g.Addr("keep"))
	}
}

func mustRead(t *testing.T, c *http.Client, addr string) string {
	t.Helper()
	resp, err := c.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return string(b)
}

// TestReloadKeepsUnchangedPools checks that an unchanged upstream keeps its
// pool (connections, passive health) across a reload and a changed one does
// not.
func TestReloadKeepsUnchangedPools(t *testing.T) {
	a, b := newRecorder(t, "a"), newRecorder(t, "b")
	text := func(bWeight int) string {
		return fmt.Sprintf(`listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - {name: a, endpoints: [{address: %s}]}
  - {name: b, endpoints: [{address: %s, weight: %d}]}
routes:
  - {name: a, match: {path: /a}, upstream: a}
  - {name: b, match: {path: /b}, upstream: b}
`, a.addr(), b.addr(), bWeight)
	}
	g := startGateway(t, text(1))
	before := g.Snapshot()
	if err := g.Reload(mustConfig(t, text(2))); err != nil {
		t.Fatal(err)
	}
	after := g.Snapshot()
	if before.Pools["a"] != after.Pools["a"] {
		t.Error("unchanged pool a was rebuilt")
	}
	if before.Pools["b"] == after.Pools["b"] {
		t.Error("changed pool b was kept")
	}
}

// TestReloadSwitchesEngine changes a listener's engine on the same socket:
// the new engine takes new connections and clients see no failure.
func TestReloadSwitchesEngine(t *testing.T) {
	rec := newRecorder(t, "up")
	cfgFor := func(engine, addr string) string {
		return fmt.Sprintf(`listeners: [{name: main, address: %q, engine: %s}]
upstreams: [{name: up, endpoints: [{address: %s}]}]
routes: [{name: r, match: {path_prefix: /}, upstream: up}]
`, addr, engine, rec.addr())
	}
	g := startGateway(t, cfgFor("native", "127.0.0.1:0"))
	addr := g.Addr("main").String()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	mustRead(t, c, addr)

	// "OPTIONS *" tells the engines apart: net/http answers it itself
	// (200), the native engine hands it to the front handler, which
	// refuses a target without a leading "/". (obs-fold no longer does:
	// the stdhttp engine reads requests through the native parser.)
	optionsStatus := func() int {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := optionsStatus(); got != 400 {
		t.Fatalf("native engine answered OPTIONS * with %d, want 400", got)
	}
	if err := g.Reload(mustConfig(t, cfgFor("stdhttp", addr))); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, addr)
	if got := optionsStatus(); got != 200 {
		t.Fatalf("after the switch to stdhttp OPTIONS * got %d, want 200 from net/http", got)
	}
	if err := g.Reload(mustConfig(t, cfgFor("native", addr))); err != nil {
		t.Fatal(err)
	}
	mustRead(t, c, addr)
	if got := optionsStatus(); got != 400 {
		t.Fatalf("back on native, OPTIONS * got %d, want 400", got)
	}
}
