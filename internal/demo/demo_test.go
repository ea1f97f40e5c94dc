package demo_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/demo"
	"github.com/penstock-dev/penstock/internal/server"
)

// TestMain lets this test binary be the demo function: the demo config's
// function runs "{penstock} demo-function", and {penstock} is the running
// executable, here the test binary.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "demo-function" {
		demo.RunFunction()
	}
	os.Exit(m.Run())
}

// TestDemoBannerCommandsWork starts the embedded demo config (on free ports)
// in front of the demo backend and runs every curl command the banner
// prints, with the real curl.
func TestDemoBannerCommandsWork(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("curl is required (scripts/test installs it)")
	}
	backend, addr, err := demo.StartBackend("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { backend.Close() })

	cfg, err := config.Parse(demo.Config, "demo.yaml")
	if err != nil {
		t.Fatalf("embedded demo config: %v", err)
	}
	for i := range cfg.Listeners {
		cfg.Listeners[i].Address = "127.0.0.1:0"
	}
	for i := range cfg.Upstreams {
		for j := range cfg.Upstreams[i].Endpoints {
			if cfg.Upstreams[i].Endpoints[j].Address == demo.BackendAddress {
				cfg.Upstreams[i].Endpoints[j].Address = addr.String()
			}
		}
	}
	// The demo function is this test binary (TestMain): built with -race,
	// its shadow memory alone is more than the demo's memory cap.
	for i := range cfg.Functions {
		cfg.Functions[i].Memory = 0
	}
	g, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Shutdown(context.Background()) })

	banner := demo.Banner(g.Addr("http").String(), g.Addr("https").String(), "")
	var cmds []string
	for _, line := range strings.Split(banner, "\n") {
		if l := strings.TrimSpace(line); strings.HasPrefix(l, "curl ") {
			cmds = append(cmds, l)
		}
	}
	if len(cmds) < 5 {
		t.Fatalf("banner has %d curl commands:\n%s", len(cmds), banner)
	}
	wants := map[string]string{
		"/predict":            `"model":"resnet50"`,
		`{"inputs":[4]}`:      "HTTP/1.1 103 Early Hints",
		"/generate -d":        "data: [DONE]",
		"x-model-version: v2": "X-Penstock-Arm: models-v2",
		"tokenizer.bin":       "200 8192 bytes",
		"/v1/models\n":        `"llama-tiny"`,
		"/no/such/route":      `"error":"no_route"`,
		"?n=[1-24]":           "concurrency_limited",
		"?[1-8]":              "HTTP/1.1 429 Too Many Requests",
		"--http2 https://":    `"model":"resnet50"`,
		"http2-prior-knowle":  `"models"`,

		"batched/encoder/infer#": "X-Batch-Size: ",
		"queued/encoder/infer#":  "queue_full",
		"chat/completions#":      "rate_limited",
		"grpc-timeout: 0m":       "deadline_unreachable",
		"/fn/tokenize -d":        `"count":4`,
		"stream=1":               "one\ntoken\nat\na\ntime",
		"grpc-web-text":          "AAAAAAIIAQ==gAAAA", // SERVING, then the trailer frame
		"access-control-request": "Access-Control-Allow-Origin: http://localhost:3000",
	}
	for _, cmd := range cmds {
		t.Run(cmd, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var out, errb bytes.Buffer
			full := cmd
			if !strings.Contains(cmd, " -w ") { // a second -w would replace the first
				full += ` -w '\nproto=%{http_version}\n'`
			}
			c := exec.CommandContext(ctx, "bash", "-c", full)
			// The protocol curl used is appended, to check HTTP/2 where asked.
			c.Stdout, c.Stderr = &out, &errb
			if err := c.Run(); err != nil {
				t.Fatalf("%v: %s", err, errb.String())
			}
			got := out.String()
			for key, want := range wants {
				if strings.Contains(cmd+"\n", key) && !strings.Contains(got, want) {
					t.Errorf("output lacks %q:\n%s", want, got)
				}
			}
			if strings.Contains(cmd, "--http2") && !strings.Contains(got, "proto=2") {
				t.Errorf("not served over HTTP/2:\n%s", got)
			}
		})
	}

	t.Run("gRPC health check through penstock", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cc, err := grpc.NewClient(g.Addr("http").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "models"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health check: %v, %v; want SERVING", resp.GetStatus(), err)
		}
		_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"})
		if status.Code(err) != codes.NotFound {
			t.Errorf("unknown service: %v, want NotFound from the backend", err)
		}
	})

	// The README's tour asks for the headers only (HEAD) on a GET route.
	t.Run("HEAD on a GET route", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "curl", "-skI", "https://"+g.Addr("https").String()+"/v1/models").CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		got := strings.ToLower(string(out))
		if !strings.HasPrefix(got, "http/2 200") || !strings.Contains(got, "alt-svc: h3=") {
			t.Errorf("curl -skI: want HTTP/2 200 with Alt-Svc, got:\n%s", out)
		}
	})
	// On the native HTTP/1.1 engine: a HEAD answered without a body, so
	// the response to a GET sent behind it on the same connection follows
	// its head at once.
	t.Run("HEAD then GET on one HTTP/1.1 connection", func(t *testing.T) {
		c, err := net.Dial("tcp", g.Addr("http").String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "HEAD /v1/models HTTP/1.1\r\nHost: demo\r\n\r\nGET /v1/models HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
		all, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		head, rest, ok := strings.Cut(string(all), "\r\n\r\n")
		if !ok || !strings.HasPrefix(head, "HTTP/1.1 200") || !strings.HasPrefix(rest, "HTTP/1.1 200") || !strings.HasSuffix(strings.TrimSpace(rest), `"llama-tiny"]}`) {
			t.Errorf("want a 200 head with no body, then the GET's 200 with the model list; got:\n%s", all)
		}
	})
}
