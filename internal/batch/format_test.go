package batch

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// members parses bodies with c as the batcher would; every body must be
// batchable.
func members(t testing.TB, c codec, bodies ...string) ([]*member, []string) {
	t.Helper()
	var ms []*member
	var keys []string
	for _, b := range bodies {
		parsed, n, key, err := c.parse([]byte(b))
		if err != nil {
			t.Fatalf("parse(%s): %v", b, err)
		}
		ms = append(ms, &member{body: []byte(b), parsed: parsed, items: n})
		keys = append(keys, key)
	}
	return ms, keys
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("got invalid JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("want is invalid JSON %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestFormatsMergeAndSplit(t *testing.T) {
	tests := []struct {
		name         string
		format       string
		reqPath      string
		respPath     string
		requests     []string
		wantItems    []int
		wantMerged   string
		response     string
		wantSplit    []string
		wantSplitErr string
	}{
		{
			name:   "kserve v1 instances to predictions",
			format: "kserve_v1",
			requests: []string{
				`{"instances":[[1,2]],"parameters":{"t":1}}`,
				`{"parameters":{"t":1},"instances":[[3,4],[5,6]]}`,
			},
			wantItems:  []int{1, 2},
			wantMerged: `{"instances":[[1,2],[3,4],[5,6]],"parameters":{"t":1}}`,
			response:   `{"predictions":[0.1,0.2,0.3],"model":"m"}`,
			wantSplit:  []string{`{"predictions":[0.1],"model":"m"}`, `{"predictions":[0.2,0.3],"model":"m"}`},
		},
		{
			name:         "kserve v1 response with too few predictions",
			format:       "kserve_v1",
			requests:     []string{`{"instances":[1]}`, `{"instances":[2]}`},
			wantItems:    []int{1, 1},
			wantMerged:   `{"instances":[1,2]}`,
			response:     `{"predictions":[0.1]}`,
			wantSplitErr: "1 results for 2 items",
		},
		{
			name:   "kserve v2 flat data along the batch dimension",
			format: "kserve_v2",
			requests: []string{
				`{"id":"a","inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`,
				`{"id":"b","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[3,4,5,6]}]}`,
			},
			wantItems:  []int{1, 2},
			wantMerged: `{"inputs":[{"name":"x","shape":[3,2],"datatype":"FP32","data":[1,2,3,4,5,6]}]}`,
			response:   `{"model_name":"m","id":"batch","outputs":[{"name":"y","shape":[3,1],"datatype":"FP32","data":[7,8,9]}]}`,
			wantSplit: []string{
				`{"model_name":"m","id":"a","outputs":[{"name":"y","shape":[1,1],"datatype":"FP32","data":[7]}]}`,
				`{"model_name":"m","id":"b","outputs":[{"name":"y","shape":[2,1],"datatype":"FP32","data":[8,9]}]}`,
			},
		},
		{
			name:   "kserve v2 nested data and two inputs",
			format: "kserve_v2",
			requests: []string{
				`{"inputs":[{"name":"x","shape":[1,2],"datatype":"INT32","data":[[1,2]]},{"name":"m","shape":[1],"datatype":"BOOL","data":[true]}]}`,
				`{"inputs":[{"name":"x","shape":[1,2],"datatype":"INT32","data":[[3,4]]},{"name":"m","shape":[1],"datatype":"BOOL","data":[false]}]}`,
			},
			wantItems:  []int{1, 1},
			wantMerged: `{"inputs":[{"name":"x","shape":[2,2],"datatype":"INT32","data":[[1,2],[3,4]]},{"name":"m","shape":[2],"datatype":"BOOL","data":[true,false]}]}`,
			response:   `{"outputs":[{"name":"y","shape":[2,2],"datatype":"INT32","data":[[1,1],[2,2]]}]}`,
			wantSplit: []string{
				`{"outputs":[{"name":"y","shape":[1,2],"datatype":"INT32","data":[[1,1]]}]}`,
				`{"outputs":[{"name":"y","shape":[1,2],"datatype":"INT32","data":[[2,2]]}]}`,
			},
		},
		{
			name:         "kserve v2 output without the batch dimension",
			format:       "kserve_v2",
			requests:     []string{`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`, `{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[2]}]}`},
			wantItems:    []int{1, 1},
			wantMerged:   `{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2]}]}`,
			response:     `{"outputs":[{"name":"y","shape":[1],"datatype":"FP32","data":[3]}]}`,
			wantSplitErr: "does not have the batch's 2 rows first",
		},
		{
			name:   "openai embeddings: a string, a list and token ids",
			format: "openai_embeddings",
			requests: []string{
				`{"model":"e","input":"hello","user":"u1"}`,
				`{"model":"e","input":["a","b"],"user":"u2"}`,
				`{"model":"e","input":[1,2,3]}`,
			},
			wantItems:  []int{1, 2, 1},
			wantMerged: `{"model":"e","input":["hello","a","b",[1,2,3]]}`,
			// Out of order, as the API allows.
			response: `{"object":"list","model":"e","usage":{"prompt_tokens":8,"total_tokens":8},"data":[` +
				`{"object":"embedding","index":3,"embedding":[0.4]},{"object":"embedding","index":0,"embedding":[0.1]},` +
				`{"object":"embedding","index":2,"embedding":[0.3]},{"object":"embedding","index":1,"embedding":[0.2]}]}`,
			wantSplit: []string{
				`{"object":"list","model":"e","usage":{"prompt_tokens":2,"total_tokens":2},"data":[{"object":"embedding","index":0,"embedding":[0.1]}]}`,
				`{"object":"list","model":"e","usage":{"prompt_tokens":4,"total_tokens":4},"data":[{"object":"embedding","index":0,"embedding":[0.2]},{"object":"embedding","index":1,"embedding":[0.3]}]}`,
				`{"object":"list","model":"e","usage":{"prompt_tokens":2,"total_tokens":2},"data":[{"object":"embedding","index":0,"embedding":[0.4]}]}`,
			},
		},
		{
			name:         "openai embeddings with an index twice",
			format:       "openai_embeddings",
			requests:     []string{`{"model":"e","input":"a"}`, `{"model":"e","input":"b"}`},
			wantItems:    []int{1, 1},
			wantMerged:   `{"model":"e","input":["a","b"]}`,
			response:     `{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}`,
			wantSplitErr: "index from 0 to n-1",
		},
		{
			name:     "generic with nested paths",
			format:   "generic",
			reqPath:  "payload.rows",
			respPath: "result.scores",
			requests: []string{
				`{"payload":{"rows":["a"],"lang":"en"}}`,
				`{"payload":{"lang":"en","rows":["b","c"]}}`,
			},
			wantItems:  []int{1, 2},
			wantMerged: `{"payload":{"lang":"en","rows":["a","b","c"]}}`,
			response:   `{"result":{"scores":[1,2,3],"unit":"p"},"took":4}`,
			wantSplit: []string{
				`{"result":{"scores":[1],"unit":"p"},"took":4}`,
				`{"result":{"scores":[2,3],"unit":"p"},"took":4}`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := newCodec(tt.format, tt.reqPath, tt.respPath)
			if err != nil {
				t.Fatal(err)
			}
			ms, keys := members(t, c, tt.requests...)
			for i, m := range ms {
				if m.items != tt.wantItems[i] {
					t.Errorf("request %d: %d items, want %d", i, m.items, tt.wantItems[i])
				}
				if keys[i] != keys[0] {
					t.Errorf("request %d: key %q differs from request 0's %q", i, keys[i], keys[0])
				}
			}
			merged, err := c.merge(ms)
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, merged, tt.wantMerged)
			parts, err := c.split([]byte(tt.response), ms)
			if tt.wantSplitErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantSplitErr) {
					t.Fatalf("split error = %v, want one containing %q", err, tt.wantSplitErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) != len(tt.wantSplit) {
				t.Fatalf("%d parts, want %d", len(parts), len(tt.wantSplit))
			}
			for i := range parts {
				sameJSON(t, parts[i], tt.wantSplit[i])
			}
		})
	}
}

// Requests that differ in more than their items get different keys (they
// go in different batches), and requests of the wrong shape do not parse
// (they go alone).
func TestFormatsKeepApart(t *testing.T) {
	tests := []struct {
		name   string
		format string
		a, b   string // both parse; keys must differ
	}{
		{"kserve v1 other parameters", "kserve_v1", `{"instances":[1],"parameters":{"t":1}}`, `{"instances":[1],"parameters":{"t":2}}`},
		{"kserve v2 other row shape", "kserve_v2",
			`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`,
			`{"inputs":[{"name":"x","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}`},
		{"kserve v2 other datatype", "kserve_v2",
			`{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[1]}]}`,
			`{"inputs":[{"name":"x","shape":[1],"datatype":"FP16","data":[1]}]}`},
		{"kserve v2 nested and flat", "kserve_v2",
			`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}]}`,
			`{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[[1,2]]}]}`},
		{"openai other model", "openai_embeddings", `{"model":"a","input":"x"}`, `{"model":"b","input":"x"}`},
		{"openai other dimensions", "openai_embeddings", `{"model":"a","input":"x","dimensions":8}`, `{"model":"a","input":"x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newCodec(tt.format, "", "")
			_, keys := members(t, c, tt.a, tt.b)
			if keys[0] == keys[1] {
				t.Errorf("same key %q", keys[0])
			}
		})
	}

	unbatchable := []struct {
		name, format, body string
	}{
		{"kserve v1 columnar inputs", "kserve_v1", `{"inputs":{"a":[1]}}`},
		{"kserve v1 no instances", "kserve_v1", `{"x":1}`},
		{"kserve v1 instances not a list", "kserve_v1", `{"instances":3}`},
		{"kserve v1 empty instances", "kserve_v1", `{"instances":[]}`},
		{"not JSON", "kserve_v1", `instances=1`},
		{"a JSON array", "kserve_v1", `[1,2]`},
		{"kserve v2 data shorter than its shape", "kserve_v2", `{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}`},
		{"kserve v2 inputs with other batch sizes", "kserve_v2",
			`{"inputs":[{"name":"x","shape":[2],"datatype":"FP32","data":[1,2]},{"name":"y","shape":[1],"datatype":"FP32","data":[1]}]}`},
		{"kserve v2 scalar shape", "kserve_v2", `{"inputs":[{"name":"x","shape":[],"datatype":"FP32","data":[1]}]}`},
		{"kserve v2 negative dimension", "kserve_v2", `{"inputs":[{"name":"x","shape":[1,-1],"datatype":"FP32","data":[]}]}`},
		{"openai input a number", "openai_embeddings", `{"model":"e","input":3}`},
	}
	for _, tt := range unbatchable {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := newCodec(tt.format, "", "")
			if _, _, _, err := c.parse([]byte(tt.body)); err == nil {
				t.Errorf("parse(%s) succeeded, want an error (sent alone)", tt.body)
			}
		})
	}
}
