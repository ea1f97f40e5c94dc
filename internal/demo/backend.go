// Package demo is penstock's built-in demonstration: a small model backend
// that behaves like a model server (JSON predictions with simulated compute
// time, model assets, token streaming over server-sent events) and the
// embedded configuration that puts penstock in front of it.
package demo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Models are the model names the demo backend serves.
var Models = []string{"resnet50", "llama-tiny"}

// AssetSize is the size of each demo model asset in bytes (8 KiB, the order
// of a real model_config.json or a small tokenizer file).
const AssetSize = 8 << 10

// Backend is the demo model server's HTTP handler.
type Backend struct {
	// ComputeTime is the simulated inference time of one prediction.
	// Default 5ms.
	ComputeTime time.Duration
	// TokenInterval is the pause between streamed tokens. Default 40ms.
	TokenInterval time.Duration

	slot batchedSlot // the batched model's one slot (batched.go)
}

// Handler returns the backend's routes.
func (b *Backend) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", b.list)
	mux.HandleFunc("POST /v1/models/{model}/predict", b.predict)
	mux.HandleFunc("POST /v1/models/{model}/generate", b.generate)
	mux.HandleFunc("GET /v1/models/{model}/assets/{file}", b.asset)
	mux.HandleFunc("POST /v1/batched/{model}/infer", b.infer)
	mux.HandleFunc("POST /v1/queued/{model}/infer", b.infer)
	mux.HandleFunc("POST /v1/chat/completions", b.chat)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	return withGRPC(newGRPCServer(), mux) // grpc.go
}

func knownModel(name string) bool {
	for _, m := range Models {
		if m == name {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (b *Backend) list(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"models": Models})
}

type predictRequest struct {
	Inputs []float64 `json:"inputs"`
}

func (b *Backend) predict(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	if !knownModel(model) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "unknown model", "model": model})
		return
	}
	var req predictRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body must be JSON like {\"inputs\": [1, 2, 3]}"})
		return
	}
	compute := b.ComputeTime
	if compute == 0 {
		compute = 5 * time.Millisecond
	}
	start := time.Now()
	select {
	case <-time.After(compute):
	case <-r.Context().Done():
		return
	}
	// A deterministic stand-in for a model: a softmax-free score per class.
	sum := 0.0
	for _, v := range req.Inputs {
		sum += v
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"model":      model,
		"outputs":    []float64{sum, sum / float64(max(len(req.Inputs), 1))},
		"compute_ms": float64(time.Since(start).Microseconds()) / 1000,
		"request_id": r.Header.Get("X-Request-Id"),
	})
}

func (b *Backend) generate(w http.ResponseWriter, r *http.Request) {
	model := r.PathValue("model")
	if !knownModel(model) {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "unknown model", "model": model})
		return
	}
	var req struct {
		Prompt    string `json:"prompt"`
		MaxTokens int    `json:"max_tokens"`
	}
	json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req)
	n := req.MaxTokens
	if n <= 0 || n > 256 {
		n = 16
	}
	interval := b.TokenInterval
	if interval == 0 {
		interval = 40 * time.Millisecond
	}
	flusher := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	words := strings.Fields("the quick brown fox jumps over the lazy dog while the model streams tokens one by one")
	for i := 0; i < n; i++ {
		if i > 0 {
			select {
			case <-time.After(interval):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "id: %d\nevent: token\ndata: {\"index\":%d,\"token\":%q}\n\n", i, i, words[i%len(words)])
		if err := flusher.Flush(); err != nil {
			return
		}
	}
	io.WriteString(w, "event: done\ndata: [DONE]\n\n")
	flusher.Flush()
}

// Asset returns the deterministic content of a demo model asset.
func Asset(model, file string) []byte {
	out := make([]byte, 0, AssetSize)
	seed := sha256.Sum256([]byte(model + "/" + file))
	for len(out) < AssetSize {
		out = append(out, seed[:]...)
		seed = sha256.Sum256(seed[:])
	}
	if strings.HasSuffix(file, ".json") {
		// Keep the JSON asset valid JSON of the same size.
		body := fmt.Sprintf(`{"model":%q,"input_shape":[1,3,224,224],"padding":"`, model)
		pad := AssetSize - len(body) - 2
		return []byte(body + strings.Repeat("x", pad) + `"}`)
	}
	return out[:AssetSize]
}

func (b *Backend) asset(w http.ResponseWriter, r *http.Request) {
	model, file := r.PathValue("model"), r.PathValue("file")
	if !knownModel(model) || (file != "model_config.json" && file != "tokenizer.bin") {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "unknown asset", "model": model, "file": file})
		return
	}
	body := Asset(model, file)
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "public, max-age=300")
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	ct := "application/octet-stream"
	if strings.HasSuffix(file, ".json") {
		ct = "application/json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}
