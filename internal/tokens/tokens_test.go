package tokens

import (
	"testing"
	"time"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Request
	}{
		{"chat with max_tokens", `{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"héllo"}],"max_tokens":64}`,
			Request{PromptChars: 13, MaxTokens: 64}},
		{"content parts and max_completion_tokens", `{"messages":[{"role":"user","content":[{"type":"text","text":"abc"},{"type":"image_url","image_url":{"url":"x"}}]}],"max_completion_tokens":9,"max_tokens":99}`,
			Request{PromptChars: 3, MaxTokens: 9}},
		{"completion prompt list, streamed with usage", `{"prompt":["ab","cd"],"stream":true,"stream_options":{"include_usage":true}}`,
			Request{PromptChars: 4, Stream: true, IncludeUsage: true}},
		{"negative max_tokens", `{"prompt":"x","max_tokens":-5}`, Request{PromptChars: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest([]byte(tt.body))
			if err != nil || got != tt.want {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if _, err := ParseRequest([]byte(`[1]`)); err == nil {
		t.Error("a JSON array parsed")
	}
}

func TestStream(t *testing.T) {
	events := "data: {\"choices\":[{\"delta\":{\"content\":\"hel\"}}]}\r\n\r\n" +
		": a comment\n\ndata: {\"choices\":[{\"text\":\"lo\"}]}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n"
	// Fed byte by byte: events split anywhere are read whole.
	var s Stream
	for i := range len(events) {
		s.Feed([]byte{events[i]})
	}
	if s.OutputChars != 5 || !s.Seen || s.Usage != (Usage{Prompt: 3, Completion: 2, Total: 5}) {
		t.Errorf("got %+v", s)
	}
}

func TestBudget(t *testing.T) {
	now := time.Unix(0, 0)
	b := NewBudget(600, 10, 0) // 10 tokens a second, 100 at most
	b.Now = func() time.Time { return now }
	if ok, _ := b.Reserve("a", 0, 100); !ok {
		t.Fatal("a full bucket refused its size")
	}
	if ok, wait := b.Reserve("a", 0, 20); ok || wait != 2*time.Second {
		t.Errorf("empty bucket: %v, wait %v; want refused, 2s", ok, wait)
	}
	b.Settle("a", 0, 100, 60) // used 60 of the 100 reserved
	if got := b.Balance("a", 0); got != 40 {
		t.Errorf("balance %v after settling, want 40", got)
	}
	now = now.Add(time.Minute)
	if got := b.Balance("a", 0); got != 100 {
		t.Errorf("balance %v after a minute, want the burst, 100", got)
	}
	if ok, _ := b.Reserve("b", 60, 1000); !ok {
		t.Error("a request larger than the bucket is admitted once the bucket is full")
	}
	if got := b.Balance("b", 60); got != 10-1000 {
		t.Errorf("balance %v, want the debt of the large request", got)
	}
}
