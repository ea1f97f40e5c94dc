package dashboard_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/penstock-dev/penstock/internal/admin"
	"github.com/penstock-dev/penstock/internal/browsertest"
	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/dashboard"
	"github.com/penstock-dev/penstock/internal/loadtest"
	"github.com/penstock-dev/penstock/internal/server"
)

// upstreamServer answers every request with a small JSON body after 2 ms.
func upstreamServer(t *testing.T) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		time.Sleep(2 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestDashboardInChromium is the dashboard's acceptance test: a gateway
// with a split route under a progressive rollout, a rate-limited route and
// an idle one, in front of a pool of two endpoints, is put under load by
// penstock's own load generator while the dashboard is open in headless
// Chromium. The page must show non-zero rates for the loaded routes and
// zero for the idle one, the rollout's current step, the limit's refusals
// and, once one endpoint is killed, that endpoint out of rotation. A
// screenshot of the page is checked and kept.
func TestDashboardInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := browsertest.Chromium(t)
	a, b, canary := upstreamServer(t), upstreamServer(t), upstreamServer(t)
	addrA, addrB := a.Listener.Addr().String(), b.Listener.Addr().String()
	yaml := fmt.Sprintf(`
listeners: [{name: http, address: "127.0.0.1:0"}]
upstreams:
  - name: models
    endpoints: [{address: %q}, {address: %q}]
    passive_health: {fail_timeout: 60s, trial_interval: 30s}
    outlier_detection: {consecutive_gateway_failure: 2, base_ejection_time: 60s, max_ejection_percent: 50}
  - name: models-v2
    endpoints: [{address: %q}]
routes:
  - name: predict
    match: {path: /v1/predict, methods: [POST]}
    upstream: models
    split:
      by: trace_id
      arms:
        - {name: models, upstream: models, weight: 100}
        - {name: models-v2, upstream: models-v2}
      rollout:
        steps: [{weight: 20}, {weight: 50}, {weight: 100}]
        # Long enough that the rollout stays at its first step during the test.
        window: 10m
  - name: assets
    match: {path_prefix: /assets}
    upstream: models
    limits: [per-client]
  - name: idle
    match: {path: /idle}
    upstream: models
limits:
  - {name: per-client, algorithm: token_bucket, rate: 5, burst: 5, key: {from: client_ip}}
access_log: {enabled: false}
shutdown: {idle_grace: 100ms, drain_timeout: 5s}
`, addrA, addrB, canary.Listener.Addr().String())
	cfg, err := config.Parse([]byte(yaml), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.SetDefaults()
	reg := prometheus.NewRegistry()
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.Shutdown(ctx)
	})
	dash := dashboard.New(dashboard.Options{Gateway: g, Gatherer: reg, Reloads: g.Reloads})
	adminSrv := httptest.NewServer(admin.Handler(admin.Options{Gateway: g, Gatherer: reg, Dashboard: dash}))
	t.Cleanup(adminSrv.Close)
	t.Cleanup(func() { dash.Close() }) // runs before adminSrv.Close: open streams end first
	gw := "http://" + g.Addr("http").String()

	// Load, bounded in time (and stopped when the test ends): predictions
	// at 60/s, assets at 30/s of which the limit admits 5/s. Three minutes
	// outlast every wait below.
	loadCtx, stopLoad := context.WithCancel(context.Background())
	loadDone := make(chan struct{}, 2)
	t.Cleanup(func() {
		stopLoad()
		<-loadDone
		<-loadDone
	})
	for _, o := range []loadtest.Options{
		{URLs: []string{gw + "/v1/predict"}, Method: "POST", Body: []byte(`{"inputs":[1]}`), Rate: 60},
		{URLs: []string{gw + "/assets/tokenizer.bin"}, Rate: 30},
	} {
		o.Duration, o.Connections, o.Timeout = 3*time.Minute, 8, 2*time.Second
		go func() {
			defer func() { loadDone <- struct{}{} }()
			if _, err := loadtest.Run(loadCtx, o); err != nil && loadCtx.Err() == nil {
				t.Errorf("load on %s: %v", o.URLs[0], err)
			}
		}()
	}

	ctx := browsertest.Browser(t, bin, chromedp.Flag("hide-scrollbars", true), chromedp.WindowSize(1366, 768))
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1366, 768), chromedp.Navigate(adminSrv.URL+"/dashboard")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}

	// waitFor polls the page until js (an expression) is true.
	waitFor := func(what, js string) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
			if err == nil && ok {
				return
			}
			if time.Now().After(deadline) {
				main, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("main").innerText`))
				t.Fatalf("the page never showed %s (last error %v); it shows:\n%s", what, err, main)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).textContent || ""`, sel)))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return s
	}
	rate := func(route string) string {
		return fmt.Sprintf(`Number((document.querySelector('tr[data-route=%q] td[data-col=rate]') || {dataset: {}}).dataset.value || 0)`, route)
	}

	waitFor("a rate for predict and assets", rate("predict")+` > 0 && `+rate("assets")+` > 0`)
	// The page is live: later events replace the numbers.
	n0, err := chromedp.Run(ctx, chromedp.Evaluate[int](`Number(document.body.dataset.updates)`))
	if err != nil {
		t.Fatal(err)
	}
	waitFor("three more updates", fmt.Sprintf(`Number(document.body.dataset.updates) >= %d`, n0+3))
	if got := text(`tr[data-route="idle"] td[data-col="rate"]`); got != "0" {
		t.Errorf("idle route's rate shows %q, want 0", got)
	}
	waitFor("the limit's refusals", `Number(document.querySelector('tr[data-limit="per-client"] td[data-col=limited]').textContent) > 0`)
	// The hottest keys are read every few seconds.
	waitFor("the load's client among the hottest keys", `document.querySelector('tr[data-limit="per-client"] td[data-col=hottest]').textContent.includes("127.0.0.1")`)

	// The rollout's current step, as the gateway has it.
	ro := g.Snapshot().Rollouts()
	if len(ro) != 1 {
		t.Fatalf("%d rollouts, want 1", len(ro))
	}
	st := ro[0].Rollout().Snapshot()
	wantStep := fmt.Sprintf("step %d of 3", st.Step+1)
	waitFor(wantStep, fmt.Sprintf(`(document.querySelector('[data-rollout="predict"] [data-field=step]') || {}).textContent === %q`, wantStep))
	if got, want := text(`[data-rollout="predict"] [data-field="weight"]`), fmt.Sprintf("canary %d %%", st.Weight); got != want {
		t.Errorf("rollout weight shows %q, want %q", got, want)
	}
	if got := text(`[data-rollout="predict"] [data-field="phase"]`); got != string(st.Phase) {
		t.Errorf("rollout phase shows %q, want %q", got, st.Phase)
	}

	// Kill endpoint B: its connections are refused from now on, and the
	// pool takes it out of rotation (outlier ejection or passive health).
	waitFor("endpoint B up before it is killed", fmt.Sprintf(`(document.querySelector('tr[data-endpoint=%q] [data-col=status]') || {}).textContent === "up"`, addrB))
	b.Close()
	waitFor("endpoint B ejected or down", fmt.Sprintf(`/^(ejected|down)/.test((document.querySelector('tr[data-endpoint=%q] [data-col=status]') || {}).textContent || "")`, addrB))
	if got := text(fmt.Sprintf(`tr[data-endpoint=%q] [data-col=status]`, addrA)); got != "up" {
		t.Errorf("endpoint A shows %q, want up", got)
	}

	// The keyboard reaches the page: the first Tab lands on the skip link,
	// with a visible focus ring.
	type focused struct {
		Text    string `json:"text"`
		Outline string `json:"outline"`
	}
	if err := chromedp.Do(ctx, chromedp.KeyEvent("\t")); err != nil {
		t.Fatal(err)
	}
	focus, err := chromedp.Run(ctx, chromedp.Evaluate[focused](
		`({text: document.activeElement.textContent, outline: getComputedStyle(document.activeElement).outlineStyle})`))
	if err != nil {
		t.Fatal(err)
	}
	if focus.Text != "Skip to routes" || focus.Outline == "none" {
		t.Errorf("first Tab focuses %q with outline %q, want the skip link with a visible outline", focus.Text, focus.Outline)
	}

	// Sorting by req/s puts the busiest route first; the filter keeps the
	// routes that match it.
	routeNames := `[...document.querySelectorAll("#routes tbody tr[data-route]")].map((tr) => tr.dataset.route).join(",")`
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`th[data-sort="rate"] button`))); err != nil {
		t.Fatal(err)
	}
	waitFor("routes sorted by rate", routeNames+` === "predict,assets,idle"`)
	if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#route-filter"), "ass")); err != nil {
		t.Fatal(err)
	}
	waitFor("only the assets route after filtering", routeNames+` === "assets"`)
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](
		`(f => { f.value = ""; f.dispatchEvent(new Event("input")); })(document.getElementById("route-filter"))`)); err != nil {
		t.Fatal(err)
	}
	chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](`document.activeElement.blur()`))

	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	bounds := img.Bounds()
	if bounds.Dx() < 1000 || bounds.Dy() < 600 {
		t.Errorf("screenshot is %dx%d, want the 1366x768 viewport", bounds.Dx(), bounds.Dy())
	}
	// A rendered page has many colours; a blank one has one.
	colours := map[[3]uint32]bool{}
	for y := bounds.Min.Y; y < bounds.Max.Y; y += 3 {
		for x := bounds.Min.X; x < bounds.Max.X; x += 3 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	if len(colours) < 20 {
		t.Errorf("screenshot has %d colours: the page looks blank", len(colours))
	}
	dir := os.Getenv("PENSTOCK_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "dashboard.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot (%dx%d, %d bytes, %d colours): %s", bounds.Dx(), bounds.Dy(), len(shot), len(colours), path)
}
