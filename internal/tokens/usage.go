package tokens

import (
	"bytes"
	"encoding/json"
)

// Usage is the token count a response reports.
type Usage struct {
	Prompt, Completion, Total int64
}

// usageField reads the "usage" object of a response or stream event.
type usageField struct {
	Usage *struct {
		Prompt     int64 `json:"prompt_tokens"`
		Completion int64 `json:"completion_tokens"`
		Total      int64 `json:"total_tokens"`
	} `json:"usage"`
}

// ParseUsage reads the usage of a JSON response body; ok is false when it
// has none.
func ParseUsage(body []byte) (u Usage, ok bool) {
	var f usageField
	if json.Unmarshal(body, &f) != nil || f.Usage == nil {
		return Usage{}, false
	}
	u = Usage{Prompt: f.Usage.Prompt, Completion: f.Usage.Completion, Total: f.Usage.Total}
	if u.Total == 0 {
		u.Total = u.Prompt + u.Completion
	}
	return u, true
}

// Stream follows a server-sent event stream of completion chunks: the
// characters of generated text so far, and the usage once an event
// carries it (stream_options.include_usage). Feed it the body as it
// arrives, in any pieces; lines longer than maxLine are skipped.
type Stream struct {
	// OutputChars counts the generated characters seen so far.
	OutputChars int
	// Usage is the reported usage, once seen (Seen).
	Usage Usage
	Seen  bool

	line []byte
}

const maxLine = 1 << 20

// Feed reads the next piece of the stream.
func (s *Stream) Feed(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(s.line)+len(p) <= maxLine {
				s.line = append(s.line, p...)
			} else {
				s.line = s.line[:0]
			}
			return
		}
		if len(s.line)+i <= maxLine {
			s.line = append(s.line, p[:i]...)
			s.event(bytes.TrimRight(s.line, "\r"))
		}
		s.line = s.line[:0]
		p = p[i+1:]
	}
}

// event reads one line of the stream.
func (s *Stream) event(line []byte) {
	data, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return // [DONE], or not JSON
	}
	var chunk struct {
		usageField
		Choices []struct {
			Delta struct {
				Content string `json:"content"`
			} `json:"delta"`
			Text string `json:"text"`
		} `json:"choices"`
	}
	if json.Unmarshal(data, &chunk) != nil {
		return
	}
	for _, c := range chunk.Choices {
		s.OutputChars += len([]rune(c.Delta.Content)) + len([]rune(c.Text))
	}
	if u := chunk.Usage; u != nil {
		s.Usage = Usage{Prompt: u.Prompt, Completion: u.Completion, Total: u.Total}
		if s.Usage.Total == 0 {
			s.Usage.Total = u.Prompt + u.Completion
		}
		s.Seen = true
	}
}
