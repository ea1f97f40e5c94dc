package batch

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkCodec measures what batching adds per batch: parsing each
// request, merging them, and splitting the response, for 32 requests of
// one item each.
func BenchmarkCodec(b *testing.B) {
	const n = 32
	formats := []struct {
		name, format, request, response string
	}{
		{"kserve_v1", "kserve_v1", `{"instances":[[%d,2,3,4,5,6,7,8]]}`, `{"predictions":[%s]}`},
		{"openai_embeddings", "openai_embeddings", `{"model":"e","input":"sentence number %d"}`, `{"object":"list","data":[%s],"usage":{"prompt_tokens":96,"total_tokens":96}}`},
	}
	for _, f := range formats {
		b.Run(f.name, func(b *testing.B) {
			c, _ := newCodec(f.format, "", "")
			bodies := make([][]byte, n)
			results := make([]string, n)
			for i := range n {
				bodies[i] = fmt.Appendf(nil, f.request, i)
				if f.format == "openai_embeddings" {
					results[i] = fmt.Sprintf(`{"object":"embedding","index":%d,"embedding":[0.1,0.2,0.3,0.4]}`, i)
				} else {
					results[i] = fmt.Sprintf("[%d.5,0.25]", i)
				}
			}
			resp := []byte(fmt.Sprintf(f.response, strings.Join(results, ",")))
			ms := make([]*member, n)
			b.ReportAllocs()
			for b.Loop() {
				for i, body := range bodies {
					parsed, items, _, err := c.parse(body)
					if err != nil {
						b.Fatal(err)
					}
					ms[i] = &member{parsed: parsed, items: items}
				}
				if _, err := c.merge(ms); err != nil {
					b.Fatal(err)
				}
				if _, err := c.split(resp, ms); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n/1000, "µs/request")
		})
	}
}
