package tokens

import (
	"bytes"
	"encoding/json"
	"math"
)

// Request is what admission needs of an OpenAI-compatible request.
type Request struct {
	// PromptChars counts the characters of the prompt: the chat messages'
	// text contents, or the completion prompt.
	PromptChars int
	// MaxTokens is the request's max_tokens or max_completion_tokens; 0
	// when it sets neither.
	MaxTokens int
	// Stream is set for a streamed request; IncludeUsage when it asked
	// for the usage in the stream's last event (stream_options).
	Stream, IncludeUsage bool
}

// ParseRequest reads a chat completion or completion request body. A
// body that is not a JSON object is an error.
func ParseRequest(body []byte) (Request, error) {
	var raw struct {
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Prompt              json.RawMessage `json:"prompt"`
		MaxTokens           *int            `json:"max_tokens"`
		MaxCompletionTokens *int            `json:"max_completion_tokens"`
		Stream              bool            `json:"stream"`
		StreamOptions       *struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return Request{}, err
	}
	r := Request{Stream: raw.Stream, IncludeUsage: raw.StreamOptions != nil && raw.StreamOptions.IncludeUsage}
	for _, m := range raw.Messages {
		r.PromptChars += textChars(m.Content)
	}
	r.PromptChars += textChars(raw.Prompt)
	switch {
	case raw.MaxCompletionTokens != nil:
		r.MaxTokens = max(*raw.MaxCompletionTokens, 0)
	case raw.MaxTokens != nil:
		r.MaxTokens = max(*raw.MaxTokens, 0)
	}
	return r, nil
}

// textChars counts the characters of a content value: a string, a list
// of strings (a batch of prompts) or of content parts ({"type": "text",
// "text": ...}); anything else counts nothing.
func textChars(raw json.RawMessage) int {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return 0
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return len([]rune(s))
	}
	var parts []json.RawMessage
	if json.Unmarshal(raw, &parts) != nil {
		return 0
	}
	n := 0
	for _, p := range parts {
		var part struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(p, &s) == nil {
			n += len([]rune(s))
		} else if json.Unmarshal(p, &part) == nil {
			n += len([]rune(part.Text))
		}
	}
	return n
}

// Tokens converts characters to tokens at charsPerToken (about 4 for
// English text with the common BPE vocabularies), rounding up.
func Tokens(chars int, charsPerToken float64) float64 {
	return math.Ceil(float64(chars) / charsPerToken)
}
