package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// codec merges the bodies of a batch's requests into one and splits the
// batch response back into one body per request. It keeps no state: what
// it learns from a request body is kept in the member's parsed field.
type codec interface {
	// parse reads one request body. It returns what the codec needs to
	// merge it later, the number of items it carries and the key of the
	// batches it may join: the request with its items taken out, so only
	// requests that differ in their items alone share a batch. An error
	// means the request cannot be batched (it is forwarded alone).
	parse(body []byte) (parsed any, items int, key string, err error)
	// merge writes the batch request of members, which share a key.
	merge(members []*member) ([]byte, error)
	// split cuts a successful batch response into each member's body, in
	// order. An error means the response does not have the batch's shape
	// (each member then gets 502).
	split(body []byte, members []*member) ([][]byte, error)
}

// newCodec returns the codec of a batch format (config.BatchFormats).
func newCodec(format, requestPath, responsePath string) (codec, error) {
	switch format {
	case "kserve_v1":
		return &listCodec{req: []string{"instances"}, resp: []string{"predictions"}}, nil
	case "kserve_v2":
		return kserveV2{}, nil
	case "openai_embeddings":
		return &listCodec{req: []string{"input"}, resp: []string{"data"}, openai: true}, nil
	case "generic":
		return &listCodec{req: strings.Split(requestPath, "."), resp: strings.Split(responsePath, ".")}, nil
	}
	return nil, fmt.Errorf("unknown batch format %q", format)
}

// object is a JSON object whose values are kept as written.
type object = map[string]json.RawMessage

var errNotObject = errors.New("not a JSON object")

func decodeObject(b []byte) (object, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' {
		return nil, errNotObject
	}
	var o object
	if err := json.Unmarshal(b, &o); err != nil {
		return nil, err
	}
	return o, nil
}

// decodeArray decodes a JSON array, keeping its elements as written.
func decodeArray(b []byte) ([]json.RawMessage, error) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '[' {
		return nil, errors.New("not a JSON array")
	}
	var a []json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	return a, nil
}

// take removes the value at path from o and returns it; the objects along
// the path are rewritten without it. o is changed.
func take(o object, path []string) (json.RawMessage, error) {
	v, ok := o[path[0]]
	if !ok {
		return nil, fmt.Errorf("no field %q", path[0])
	}
	if len(path) == 1 {
		delete(o, path[0])
		return v, nil
	}
	child, err := decodeObject(v)
	if err != nil {
		return nil, fmt.Errorf("field %q: %w", path[0], err)
	}
	got, err := take(child, path[1:])
	if err != nil {
		return nil, fmt.Errorf("%s.%w", path[0], err)
	}
	if o[path[0]], err = json.Marshal(child); err != nil {
		return nil, err
	}
	return got, nil
}

// put returns a copy of o with v at path; the objects along the path are
// copied, never changed.
func put(o object, path []string, v json.RawMessage) (object, error) {
	out := make(object, len(o)+1)
	for k, x := range o {
		out[k] = x
	}
	if len(path) == 1 {
		out[path[0]] = v
		return out, nil
	}
	child := object{}
	if raw, ok := o[path[0]]; ok {
		var err error
		if child, err = decodeObject(raw); err != nil {
			return nil, err
		}
	}
	child, err := put(child, path[1:], v)
	if err != nil {
		return nil, err
	}
	if out[path[0]], err = json.Marshal(child); err != nil {
		return nil, err
	}
	return out, nil
}

// listCodec batches formats whose request carries a list of items and
// whose response a list of results, one per item in the same order:
// KServe v1, OpenAI embeddings and the generic format.
type listCodec struct {
	req, resp []string // dotted paths, split
	// openai reads the OpenAI embeddings request and response: input may
	// be one string or one token list, results carry an index, and the
	// usage is shared out.
	openai bool
}

// listRequest is what listCodec keeps of a request.
type listRequest struct {
	rest  object // the body without its items
	items []json.RawMessage
}

func (c *listCodec) parse(body []byte) (any, int, string, error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, 0, "", err
	}
	raw, err := take(o, c.req)
	if err != nil {
		return nil, 0, "", err
	}
	var items []json.RawMessage
	if c.openai {
		items, err = openAIInputs(raw)
		// The end-user id differs per client and does not change the
		// embeddings: it does not keep requests apart.
		delete(o, "user")
	} else {
		items, err = decodeArray(raw)
	}
	if err != nil {
		return nil, 0, "", fmt.Errorf("%s: %w", strings.Join(c.req, "."), err)
	}
	if len(items) == 0 {
		return nil, 0, "", fmt.Errorf("%s: no items", strings.Join(c.req, "."))
	}
	key, err := json.Marshal(o) // sorted keys, values compacted
	if err != nil {
		return nil, 0, "", err
	}
	return &listRequest{rest: o, items: items}, len(items), string(key), nil
}

// openAIInputs returns the items of an embeddings input: a string or a
// list of integers (token ids) is one item; a list of strings or of token
// lists is one item each.
func openAIInputs(raw json.RawMessage) ([]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '"' {
		return []json.RawMessage{raw}, nil
	}
	a, err := decodeArray(raw)
	if err != nil {
		return nil, errors.New("must be a string or an array")
	}
	if len(a) > 0 {
		if first := bytes.TrimSpace(a[0]); len(first) > 0 && (first[0] == '-' || first[0] >= '0' && first[0] <= '9') {
			return []json.RawMessage{raw}, nil
		}
	}
	return a, nil
}

func (c *listCodec) merge(members []*member) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, m := range members {
		for j, it := range m.parsed.(*listRequest).items {
			if i+j > 0 {
				buf.WriteByte(',')
			}
			buf.Write(it)
		}
	}
	buf.WriteByte(']')
	o, err := put(members[0].parsed.(*listRequest).rest, c.req, buf.Bytes())
	if err != nil {
		return nil, err
	}
	return json.Marshal(o)
}

func (c *listCodec) split(body []byte, members []*member) ([][]byte, error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	raw, err := take(o, c.resp)
	if err != nil {
		return nil, err
	}
	results, err := decodeArray(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", strings.Join(c.resp, "."), err)
	}
	total := 0
	for _, m := range members {
		total += m.items
	}
	if len(results) != total {
		return nil, fmt.Errorf("%s: %d results for %d items", strings.Join(c.resp, "."), len(results), total)
	}
	var usage *openAIUsage
	if c.openai {
		if results, err = byIndex(results); err != nil {
			return nil, err
		}
		usage = readUsage(o)
	}
	out := make([][]byte, len(members))
	off := 0
	for i, m := range members {
		mine := results[off : off+m.items]
		if c.openai {
			if mine, err = reindex(mine, off); err != nil {
				return nil, err
			}
		}
		var buf bytes.Buffer
		buf.WriteByte('[')
		for j, r := range mine {
			if j > 0 {
				buf.WriteByte(',')
			}
			buf.Write(r)
		}
		buf.WriteByte(']')
		mo, err := put(o, c.resp, buf.Bytes())
		if err != nil {
			return nil, err
		}
		if usage != nil {
			mo["usage"] = usage.share(off, off+m.items, total)
		}
		if out[i], err = json.Marshal(mo); err != nil {
			return nil, err
		}
		off += m.items
	}
	return out, nil
}

// byIndex orders embeddings results by their "index" field, which must
// number them 0..n-1 once each (the API does not promise their order).
func byIndex(results []json.RawMessage) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(results))
	for _, r := range results {
		var e struct {
			Index *int `json:"index"`
		}
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, fmt.Errorf("data: %w", err)
		}
		if e.Index == nil || *e.Index < 0 || *e.Index >= len(out) || out[*e.Index] != nil {
			return nil, errors.New("data: each result needs an index from 0 to n-1, once")
		}
		out[*e.Index] = r
	}
	return out, nil
}

// reindex numbers a member's results from 0, as its own request would
// have had them.
func reindex(results []json.RawMessage, off int) ([]json.RawMessage, error) {
	out := make([]json.RawMessage, len(results))
	for i, r := range results {
		o, err := decodeObject(r)
		if err != nil {
			return nil, fmt.Errorf("data[%d]: %w", off+i, err)
		}
		o["index"] = json.RawMessage(fmt.Appendf(nil, "%d", i))
		if out[i], err = json.Marshal(o); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// openAIUsage is the token count of an embeddings response.
type openAIUsage struct {
	Prompt, Total int64
}

func readUsage(o object) *openAIUsage {
	var u struct {
		Prompt int64 `json:"prompt_tokens"`
		Total  int64 `json:"total_tokens"`
	}
	raw, ok := o["usage"]
	if !ok || json.Unmarshal(raw, &u) != nil {
		return nil
	}
	return &openAIUsage{Prompt: u.Prompt, Total: u.Total}
}

// share returns the usage of items [from, to) of n. The response counts
// the tokens of the whole batch only, so they are shared out by items,
// rounded so that the members' shares add up to the batch's count.
func (u *openAIUsage) share(from, to, n int) json.RawMessage {
	part := func(v int64) int64 {
		at := func(k int) int64 { return (v*int64(k) + int64(n)/2) / int64(n) }
		return at(to) - at(from)
	}
	return fmt.Appendf(nil, `{"prompt_tokens":%d,"total_tokens":%d}`, part(u.Prompt), part(u.Total))
}
