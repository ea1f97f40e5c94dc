package demo

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// StartBackend serves the demo backend on address and returns its server.
func StartBackend(address string) (*http.Server, net.Addr, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, nil, fmt.Errorf("demo backend: listen %s: %w", address, err)
	}
	srv := &http.Server{Handler: (&Backend{}).Handler(), ReadHeaderTimeout: 10 * time.Second}
	// HTTP/2 with prior knowledge too, for the gRPC service (grpc.go).
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	return srv, ln.Addr(), nil
}

// Banner is what `penstock serve` prints when it runs the demo: where it
// listens and commands that exercise it. Commands that run penstock itself
// are spelled as [Command] finds this process was started.
func Banner(httpAddr, httpsAddr, adminAddr string) string {
	self := Command()
	var b strings.Builder
	fmt.Fprintf(&b, "\npenstock demo is running\n")
	fmt.Fprintf(&b, "  http   http://%s   (HTTP/1.1, h2c)\n", httpAddr)
	fmt.Fprintf(&b, "  https  https://%s  (HTTP/1.1, HTTP/2, and HTTP/3 over UDP; self-signed certificate)\n", httpsAddr)
	if adminAddr != "" {
		fmt.Fprintf(&b, "  admin  http://%s/healthz\n", adminAddr)
		fmt.Fprintf(&b, "  admin  http://%s/dashboard   (the live dashboard: open it in a browser)\n", adminAddr)
	}
	fmt.Fprintf(&b, "\nTry:\n")
	fmt.Fprintf(&b, "  curl -s http://%s/v1/models/resnet50/predict -d '{\"inputs\":[1,2,3]}'\n", httpAddr)
	fmt.Fprintf(&b, "  curl -sk --http2 https://%s/v1/models/resnet50/predict -d '{\"inputs\":[1,2,3]}'\n", httpsAddr)
	fmt.Fprintf(&b, "  curl -si http://%s/v1/models/resnet50/predict -d '{\"inputs\":[4]}'   # 103 Early Hints first\n", httpAddr)
	fmt.Fprintf(&b, "  curl -si -H 'x-model-version: v2' http://%s/v1/models/resnet50/predict -d '{\"inputs\":[1]}' | grep -iE '^x-penstock-arm|model'   # the models-v2 arm, forced\n", httpAddr)
	fmt.Fprintf(&b, "  curl -sN http://%s/v1/models/llama-tiny/generate -d '{\"prompt\":\"hi\",\"max_tokens\":8}'\n", httpAddr)
	fmt.Fprintf(&b, "  curl -sZ -d '{\"prompt\":\"hi\",\"max_tokens\":16}' 'http://%s/v1/models/llama-tiny/generate?n=[1-24]' | grep -o concurrency_limited | uniq -c   # 8 at once, the rest shed\n", httpAddr)
	fmt.Fprintf(&b, "  curl -sZ -o /dev/null -D - -d '{\"instances\":[[1,2]]}' 'http://%s/v1/batched/encoder/infer#[1-16]' | grep -i '^x-batch-size' | sort | uniq -c   # 16 requests, a few batches upstream\n", httpAddr)
	fmt.Fprintf(&b, "  curl -sZ -H 'x-priority: batch' -d '{\"instances\":[1]}' 'http://%s/v1/queued/encoder/infer#[1-16]' | grep -oE 'predictions|queue_full' | sort | uniq -c   # batch class past its queue: 503 at once\n", httpAddr)
	fmt.Fprintf(&b, "  curl -si -H 'grpc-timeout: 0m' -d '{\"instances\":[1]}' http://%s/v1/queued/encoder/infer | grep -iE '^HTTP|^retry-after|error'   # a deadline that cannot be met\n", httpAddr)
	fmt.Fprintf(&b, "  curl -s -H 'x-tenant: demo' -d '{\"model\":\"llama-tiny\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":200}' 'http://%s/v1/chat/completions#[1-4]' | grep -oE '\"total_tokens\":[0-9]+|rate_limited' | sort | uniq -c   # a tenant's tokens per minute\n", httpAddr)
	fmt.Fprintf(&b, "  curl -s -o /dev/null -w '%%{http_code} %%{size_download} bytes\\n' http://%s/v1/models/resnet50/assets/tokenizer.bin\n", httpAddr)
	fmt.Fprintf(&b, "  curl -sI 'http://%s/v1/models/resnet50/assets/model_config.json?[1-8]' | grep -E '^HTTP|^RateLimit|^Retry'   # 429 past the limit\n", httpAddr)
	fmt.Fprintf(&b, "  curl -s http://%s/fn/tokenize -d '{\"text\":\"the quick brown fox\"}'   # a Lambda function (aws-lambda-go), cold then warm\n", httpAddr)
	fmt.Fprintf(&b, "  curl -sN 'http://%s/fn/tokenize?stream=1' -d '{\"text\":\"one token at a time\"}'   # Lambda response streaming\n", httpAddr)
	fmt.Fprintf(&b, "  curl -s --http2-prior-knowledge http://%s/v1/models\n", httpAddr)
	fmt.Fprintf(&b, "  curl -s --http2 -o /dev/null -w 'proto=%%{http_version}\\n' http://%s/v1/models   # HTTP/1.1 with Upgrade: h2c, answered 101 then over HTTP/2\n", httpAddr)
	fmt.Fprintf(&b, "  %s probe once -module grpc_plain %s   # gRPC health check through penstock to the backend's gRPC server (h2c)\n", self, httpAddr)
	fmt.Fprintf(&b, "  curl -s -H 'content-type: application/grpc-web-text' -d AAAAAAA= http://%s/grpc.health.v1.Health/Check; echo   # the same call as gRPC-Web (text mode): base64 frames, the last (gAAAA...) the trailers\n", httpAddr)
	fmt.Fprintf(&b, "  curl -si -X OPTIONS -H 'origin: http://localhost:3000' -H 'access-control-request-method: POST' http://%s/grpc.health.v1.Health/Check | grep -iE '^HTTP|^access-control'   # a browser's CORS preflight, answered by penstock\n", httpAddr)
	fmt.Fprintf(&b, "  curl -si http://%s/no/such/route\n", httpAddr)
	if adminAddr != "" {
		fmt.Fprintf(&b, "  curl -s http://%s/upstreams   # health checks, warm-ups, circuit breakers, ejections\n", adminAddr)
		fmt.Fprintf(&b, "  curl -s http://%s/limits   # rate limits and their hottest keys\n", adminAddr)
		fmt.Fprintf(&b, "  curl -s http://%s/mirrors   # the shadow model's answers compared with the arms' (20 %% of predictions copied)\n", adminAddr)
		fmt.Fprintf(&b, "  %s bench run --method POST --body '{\"prompt\":\"hi\",\"max_tokens\":4}' --rate 20 --duration 40s http://%s/v1/models/llama-tiny/generate &\n", self, httpAddr)
		fmt.Fprintf(&b, "  %s rollout show generate   # models-v2 rolled out 20 %% → 50 %% → 100 %%, judged live (pause: PENSTOCK_ADMIN_TOKEN=demo-admin-token %s rollout pause generate)\n", self, self)
		fmt.Fprintf(&b, "  curl -s http://%s/functions   # function instances, their state and limits\n", adminAddr)
		fmt.Fprintf(&b, "  curl -s http://%s/dashboard/state | head -40   # what the dashboard shows, as JSON (open http://%s/dashboard while the bench commands run)\n", adminAddr, adminAddr)
	}
	fmt.Fprintf(&b, "  %s probe once -insecure -module tls_connect %s   # TLS version, ALPN, key-exchange group, certificate, as JSON (docs/probe.md)\n", self, httpsAddr)
	fmt.Fprintf(&b, "  %s bench run --proto h3 --insecure --rate 200 --duration 5s https://%s/v1/models   # HTTP/3, measured\n", self, httpsAddr)
	fmt.Fprintf(&b, "\nTo start from this configuration, stop the demo (Ctrl-C: it holds the ports), then:\n")
	if self == GoRunCommand {
		// A backgrounded go run cannot be stopped by its job: the
		// signal stops go, not penstock. Build the binary once instead.
		fmt.Fprintf(&b, "  go build -o penstock ./cmd/penstock   # or go install ./cmd/penstock\n")
		self = "./penstock"
	}
	fmt.Fprintf(&b, "  %s config demo > penstock.yaml\n", self)
	fmt.Fprintf(&b, "  %s demo-backend &   # the model backend alone, on %s (stop: kill %%1)\n", self, BackendAddress)
	fmt.Fprintf(&b, "  %s serve -c penstock.yaml\n", self)
	fmt.Fprintf(&b, "A fleet keeps it in etcd instead (with an etcd on 127.0.0.1:2379; docs/operations.md, Running a fleet):\n")
	fmt.Fprintf(&b, "  %s config push -c penstock.yaml etcd://127.0.0.1:2379/penstock\n", self)
	fmt.Fprintf(&b, "  %s serve --config-source etcd://127.0.0.1:2379/penstock   # then: %s config nodes etcd://127.0.0.1:2379/penstock\n\n", self, self)
	return b.String()
}
