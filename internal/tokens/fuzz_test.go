package tokens

import "testing"

// FuzzParse feeds arbitrary bytes to the request, response and stream
// parsers: none may panic, and a stream's counts never go negative.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"messages":[{"content":"hi"}],"max_tokens":5,"stream":true}`))
	f.Add([]byte(`{"usage":{"prompt_tokens":1,"completion_tokens":2}}`))
	f.Add([]byte("data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\ndata: [DONE]\n\n"))
	f.Add([]byte(`{"prompt":[{"text":1},"a",null]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseRequest(b)
		ParseUsage(b)
		var s Stream
		s.Feed(b)
		s.Feed(b)
		if s.OutputChars < 0 {
			t.Errorf("negative output: %d", s.OutputChars)
		}
	})
}
