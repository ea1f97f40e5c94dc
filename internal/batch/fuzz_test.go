package batch

import (
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/penstock-dev/penstock/internal/config"
	"github.com/penstock-dev/penstock/internal/exchange"
	"github.com/penstock-dev/penstock/internal/exchange/exchangetest"
	"github.com/penstock-dev/penstock/internal/failure"
)

// fuzzBatches are the batches FuzzSplit answers, by format: two or three
// members each.
var fuzzBatches = []struct {
	format, reqPath, respPath string
	bodies                    []string
}{
	{"kserve_v1", "", "", []string{`{"instances":[1]}`, `{"instances":[2,3]}`}},
	{"kserve_v2", "", "", []string{
		`{"id":"a","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`,
		`{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[3,4],[5,6]]}]}`,
	}},
	{"openai_embeddings", "", "", []string{`{"model":"e","input":"a"}`, `{"model":"e","input":["b","c"]}`, `{"model":"e","input":[1,2]}`}},
	{"generic", "p.rows", "r.out", []string{`{"p":{"rows":[1]}}`, `{"p":{"rows":[2]}}`}},
}

// FuzzSplit answers a batch request with an arbitrary 200 response: the
// splitter must not panic, and each client gets either its own well-formed
// part or a 502 upstream_bad_response of its own.
func FuzzSplit(f *testing.F) {
	f.Add(uint8(0), []byte(`{"predictions":[1,2,3]}`))
	f.Add(uint8(0), []byte(`{"predictions":[1]}`))
	f.Add(uint8(1), []byte(`{"outputs":[{"name":"y","shape":[3],"datatype":"FP32","data":[1,2,3]}]}`))
	f.Add(uint8(1), []byte(`{"outputs":[{"name":"y","shape":[3,1],"datatype":"FP32","data":[[1],[2]]}]}`))
	f.Add(uint8(2), []byte(`{"data":[{"index":2,"embedding":[3]},{"index":0,"embedding":[1]},{"index":1,"embedding":[2]},{"index":3,"embedding":[4]}],"usage":{"prompt_tokens":5,"total_tokens":5}}`))
	f.Add(uint8(3), []byte(`{"r":{"out":[1,2]}}`))
	f.Add(uint8(3), []byte(`{"r":[1,2]}`))
	f.Add(uint8(0), []byte(`not json`))
	f.Fuzz(func(t *testing.T, which uint8, resp []byte) {
		fb := fuzzBatches[int(which)%len(fuzzBatches)]
		c, err := newCodec(fb.format, fb.reqPath, fb.respPath)
		if err != nil {
			t.Fatal(err)
		}
		next := exchange.HandlerFunc(func(x *exchange.Exchange) {
			x.W.Header().Set("Content-Type", "application/json")
			x.State.Status = 200
			x.W.WriteHeader(200)
			x.W.Write(resp)
		})
		cfg := config.RouteBatch{Format: fb.format, RequestPath: fb.reqPath, ResponsePath: fb.respPath}
		cfg.SetDefaults()
		b, err := New(&cfg, next, 1, nil, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ms, _ := members(t, c, fb.bodies...)
		for i, m := range ms {
			m.requestID = string(rune('a' + i))
			m.method, m.path, m.done = "POST", "/", make(chan struct{})
		}
		b.send(ms)
		for i, m := range ms {
			<-m.done
			x, rec := exchangetest.NewExchange(t, "POST")
			x.State.RequestID = m.requestID
			m.answer.write(x)
			switch status := rec.Statuses[len(rec.Statuses)-1]; status {
			case 200:
				if !json.Valid(rec.Body) {
					t.Errorf("member %d: 200 with invalid JSON %q", i, rec.Body)
				}
			case 502:
				if x.State.ErrorKind != string(failure.UpstreamProtocol) {
					t.Errorf("member %d: 502 %s", i, x.State.ErrorKind)
				}
				var e struct {
					RequestID string `json:"request_id"`
				}
				if json.Unmarshal(rec.Body, &e) != nil || e.RequestID != m.requestID {
					t.Errorf("member %d: error body %s lacks its request id", i, rec.Body)
				}
			default:
				t.Errorf("member %d: status %d", i, status)
			}
		}
	})
}
