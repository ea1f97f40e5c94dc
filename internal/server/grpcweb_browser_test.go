package server_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/penstock-dev/penstock/internal/browsertest"
)

// webCall is what the page's grpc-web library reported of one call (see
// testdata/grpcweb/page.js).
type webCall struct {
	// Messages are the sizes of the payloads received, in order.
	Messages []int             `json:"messages"`
	Headers  map[string]string `json:"headers"`
	Status   *webStatus        `json:"status"`
	Error    *webStatus        `json:"error"`
	// End is the server stream's end event.
	End bool `json:"end"`
	// Unfinished: the library reported neither an outcome nor a status
	// within the page's bound.
	Unfinished bool `json:"unfinished"`
}

// webStatus is a status event (code, details) or an RpcError (code,
// message), with the trailing metadata the library parsed.
type webStatus struct {
	Code     int               `json:"code"`
	Details  string            `json:"details"`
	Message  string            `json:"message"`
	Metadata map[string]string `json:"metadata"`
}

// webPromise is a call through the library's promise interface.
type webPromise struct {
	Size  *int       `json:"size"`
	Error *webStatus `json:"error"`
}

// webResults are the page's results for one wire format.
type webResults struct {
	Unary        webCall    `json:"unary"`
	UnaryPromise webPromise `json:"unaryPromise"`
	NotFound     webCall    `json:"notFound"`
	ServerStream webCall    `json:"serverStream"`
	Unavailable  webCall    `json:"unavailable"`
}

// TestGRPCWebInChromium is gRPC-Web's acceptance test: a page in headless
// Chromium calls a real grpc-go TestService through penstock with grpc-web,
// the gRPC project's own client library (from npm, bundled by esbuild), in
// its text (application/grpc-web-text) and binary
// (application/grpc-web+proto) formats, over HTTP/1.1 and over HTTP/2 with
// TLS, from a page of the same origin (served through penstock) and from
// one of another origin (the routes' cors policies answer the preflights
// and let the page read the status fields). For each format the library
// must report: a unary call's message, header metadata, status OK and
// trailing metadata (binary metadata included); the same call through its
// promise interface; the server's NOT_FOUND with its message; a server
// stream's three messages in order, its OK status and trailing metadata;
// and penstock's own UNAVAILABLE for a route whose upstream is down.
func TestGRPCWebInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser")
	}
	bin := browsertest.Chromium(t)
	dir := filepath.Join("testdata", "grpcweb")
	script := browsertest.Bundle(t, dir, "page.js")
	html, err := os.ReadFile(filepath.Join(dir, "index.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(html)
		case "/bundle.js":
			w.Header().Set("Content-Type", "text/javascript")
			w.Write(script)
		default:
			http.NotFound(w, r)
		}
	}))
	g := startGateway(t, lines(`listeners:
  - {name: plain, address: "127.0.0.1:0", protocols: [h1, h2c]}
  - {name: tls, address: "127.0.0.1:0", tls: {self_signed: true}}
upstreams:
  - {name: grpc, protocol: h2c, endpoints: [{address: %[1]s}]}
  - {name: down, protocol: h2c, endpoints: [{address: %[2]s}]}
  - {name: page, endpoints: [{address: %[3]s}]}
routes:
  - name: grpc-web
    match: {grpc: {service: grpc.testing.TestService}}
    upstream: grpc
    grpc_web: true
    cors: {allow_origins: ["http://%[3]s"], expose_headers: [grpc-status, grpc-message, x-head]}
  - name: down
    match: {path_prefix: /down/}
    upstream: down
    grpc_web: true
    cors: {allow_origins: ["http://%[3]s"]}
  - {name: page, match: {path_prefix: /}, upstream: page}
access_log: {enabled: false}
`, startGRPCUpstream(t, nil), closedAddr(t), page))

	// The self-signed certificate is the gateway's own test certificate.
	ctx := browsertest.Browser(t, bin, chromedp.Flag("ignore-certificate-errors", true))
	for _, tc := range []struct {
		name, listener, protocol string
		// crossOrigin: the page comes straight from its server, another
		// origin, and its calls need the routes' CORS answers (preflights
		// included: the calls send gRPC-Web's own fields).
		crossOrigin bool
	}{
		{"HTTP/1.1", "plain", "http/1.1", false},
		{"HTTP/2 over TLS", "tls", "h2", false},
		{"HTTP/1.1 from another origin", "plain", "http/1.1", true},
		{"HTTP/2 over TLS from another origin", "tls", "h2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := baseURL(g, tc.listener) + "/"
			if tc.crossOrigin {
				url = "http://" + page + "/?target=" + baseURL(g, tc.listener)
			}
			if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
				t.Fatalf("open the page: %v", err)
			}
			// Every call is bounded in the page (40 s); this bounds the
			// page.
			deadline := time.Now().Add(3 * time.Minute)
			var done string
			for {
				done, err = chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.dataset.done || ""`))
				if err == nil && done != "" || time.Now().After(deadline) {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			text, rerr := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("result").textContent`))
			if done != "ok" {
				t.Fatalf("the page did not finish (state %q, last error %v); it shows:\n%s %v", done, err, text, rerr)
			}
			// The calls took the listener's protocol (Resource Timing shows
			// it for the page's own origin only).
			protocols, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
				`performance.getEntriesByType("resource").filter((e) => e.name.includes("grpc.testing")).map((e) => e.nextHopProtocol)`))
			if err != nil {
				t.Fatal(err)
			}
			if len(protocols) == 0 {
				t.Errorf("no gRPC-Web call among the page's resources")
			}
			for _, p := range protocols {
				if tc.crossOrigin {
					break
				}
				if p != tc.protocol {
					t.Errorf("a call went over %q, want %q (all: %v)", p, tc.protocol, protocols)
					break
				}
			}
			var results map[string]webResults
			if err := json.Unmarshal([]byte(text), &results); err != nil {
				t.Fatalf("page result: %v\n%s", err, text)
			}
			for _, format := range []string{"text", "binary"} {
				r, ok := results[format]
				if !ok {
					t.Errorf("no results for the %s format", format)
					continue
				}
				t.Run(format, func(t *testing.T) { checkWebResults(t, r) })
			}
		})
	}
}

func checkWebResults(t *testing.T, r webResults) {
	check := func(name string, ok bool, got any) {
		t.Helper()
		if !ok {
			b, _ := json.Marshal(got)
			t.Errorf("%s: got %s", name, b)
		}
	}
	u := r.Unary
	check("unary: one message of 300 bytes", fmt.Sprint(u.Messages) == "[300]" && u.Error == nil && !u.Unfinished, u)
	check("unary: header metadata x-head", u.Headers["x-head"] == "h1", u.Headers)
	check("unary: status OK with trailing metadata",
		u.Status != nil && u.Status.Code == 0 && u.Status.Metadata["x-trail"] == "t1" &&
			// A -bin value is base64 on the wire; the library leaves it so.
			decodesTo(u.Status.Metadata["x-detail-bin"], binDetail), u.Status)

	p := r.UnaryPromise
	check("promise: a message of 70000 bytes", p.Size != nil && *p.Size == 70000 && p.Error == nil, p)

	nf := r.NotFound
	check("not found: the server's NOT_FOUND and message",
		nf.Error != nil && nf.Error.Code == 5 && nf.Error.Message == "no such model" && len(nf.Messages) == 0, nf)
	check("not found: the status event says the same", nf.Status != nil && nf.Status.Code == 5 && nf.Status.Details == "no such model", nf.Status)

	s := r.ServerStream
	check("server stream: three messages in order, then the end",
		fmt.Sprint(s.Messages) == "[10 20 30000]" && s.End && s.Error == nil && !s.Unfinished, s)
	check("server stream: status OK with trailing metadata",
		s.Status != nil && s.Status.Code == 0 && s.Status.Metadata["x-count"] == "streamed", s.Status)

	un := r.Unavailable
	check("down upstream: penstock's UNAVAILABLE, naming the failure",
		un.Error != nil && un.Error.Code == 14 &&
			(un.Error.Message == "upstream_connect_failed" || un.Error.Message == "no_healthy_endpoint"), un)
}

// decodesTo reports whether s is b in base64, padded or not.
func decodesTo(s string, b []byte) bool {
	got, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	return err == nil && string(got) == string(b)
}
