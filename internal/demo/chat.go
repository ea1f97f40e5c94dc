package demo

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// chat serves POST /v1/chat/completions, OpenAI-style: the answer is
// max_tokens words (16 when unset, at most 256), one token each, with the
// usage (a prompt token per 4 characters) in the JSON body or, streamed,
// in a last event when stream_options.include_usage asks for it.
func (b *Backend) chat(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Model    string `json:"model"`
		Messages []struct {
			Content string `json:"content"`
		} `json:"messages"`
		MaxTokens     int  `json:"max_tokens"`
		Stream        bool `json:"stream"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Messages) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{"message": "body must be a chat completion request with messages", "type": "invalid_request_error"}})
		return
	}
	chars := 0
	for _, m := range req.Messages {
		chars += len(m.Content)
	}
	prompt := (chars + 3) / 4
	n := req.MaxTokens
	if n <= 0 || n > 256 {
		n = 16
	}
	words := strings.Fields("the quick brown fox jumps over the lazy dog while the model streams tokens one by one")
	usage := map[string]int{"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
	if !req.Stream {
		var text []string
		for i := range n {
			text = append(text, words[i%len(words)])
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"object":  "chat.completion",
			"model":   req.Model,
			"choices": []any{map[string]any{"index": 0, "message": map[string]any{"role": "assistant", "content": strings.Join(text, " ")}, "finish_reason": "length"}},
			"usage":   usage,
		})
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	flusher := http.NewResponseController(w)
	for i := range n {
		fmt.Fprintf(w, "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":%q}}]}\n\n", words[i%len(words)]+" ")
		if err := flusher.Flush(); err != nil {
			return
		}
	}
	if req.StreamOptions.IncludeUsage {
		u, _ := json.Marshal(usage)
		fmt.Fprintf(w, "data: {\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":%s}\n\n", u)
	}
	io.WriteString(w, "data: [DONE]\n\n")
	flusher.Flush()
}
