package batch

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
)

// kserveV2 batches the KServe v2 / Triton HTTP inference protocol: every
// input tensor's first dimension is the batch dimension, so requests whose
// inputs agree in name, datatype and the rest of their shape are merged by
// concatenating each input's data along it, and each output of the
// response is cut along it again. A tensor's data may be flat (row-major,
// prod(shape) elements) or nested (shape[0] rows); both are accepted and
// kept as the request and the response wrote them. Binary tensor data
// (the Inference-Header-Content-Length extension) is never batched.
type kserveV2 struct{}

// v2Tensor is an input or output tensor as written.
type v2Tensor struct {
	Name       string          `json:"name"`
	Shape      []int64         `json:"shape"`
	Datatype   string          `json:"datatype"`
	Parameters json.RawMessage `json:"parameters,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// v2Request is what kserveV2 keeps of a request.
type v2Request struct {
	id     json.RawMessage // the client's request id, echoed in its response
	rest   object          // the body without id and inputs
	inputs []v2Tensor
	rows   [][]json.RawMessage // per input, its data elements
}

// rowSize returns the elements of one row of a tensor of shape (the
// product of the dimensions after the first), or an error for a shape
// without a batch dimension or with a negative or too large dimension.
func rowSize(shape []int64) (int64, error) {
	if len(shape) == 0 || shape[0] < 1 {
		return 0, errors.New("shape needs a batch dimension of at least 1")
	}
	n := int64(1)
	for _, d := range shape[1:] {
		if d < 0 || d > 1<<24 || n*d > 1<<30 {
			return 0, fmt.Errorf("shape %v: dimension out of range", shape)
		}
		n *= d
	}
	return n, nil
}

// nested reports whether data lists rows (arrays) rather than elements.
func nested(data []json.RawMessage) bool {
	return len(data) > 0 && len(bytes.TrimSpace(data[0])) > 0 && bytes.TrimSpace(data[0])[0] == '['
}

// elements checks a tensor's data against its shape and returns its
// elements: rows when nested, flat elements otherwise.
func elements(t *v2Tensor) ([]json.RawMessage, error) {
	row, err := rowSize(t.Shape)
	if err != nil {
		return nil, err
	}
	data, err := decodeArray(t.Data)
	if err != nil {
		return nil, fmt.Errorf("data: %w", err)
	}
	want := t.Shape[0] * row
	if nested(data) {
		want = t.Shape[0]
	}
	if int64(len(data)) != want {
		return nil, fmt.Errorf("data has %d elements, shape %v needs %d", len(data), t.Shape, want)
	}
	return data, nil
}

func (kserveV2) parse(body []byte) (any, int, string, error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, 0, "", err
	}
	r := &v2Request{id: o["id"], rest: o}
	delete(o, "id")
	raw, ok := o["inputs"]
	if !ok {
		return nil, 0, "", errors.New("no inputs")
	}
	delete(o, "inputs")
	if err := json.Unmarshal(raw, &r.inputs); err != nil {
		return nil, 0, "", fmt.Errorf("inputs: %w", err)
	}
	if len(r.inputs) == 0 {
		return nil, 0, "", errors.New("no inputs")
	}
	// The key is the request without its data and batch sizes: the other
	// fields, and per input its name, datatype, parameters, the shape
	// after the batch dimension and whether its data is nested.
	var key bytes.Buffer
	rest, err := json.Marshal(o)
	if err != nil {
		return nil, 0, "", err
	}
	key.Write(rest)
	batch := int64(-1)
	for i := range r.inputs {
		t := &r.inputs[i]
		data, err := elements(t)
		if err != nil {
			return nil, 0, "", fmt.Errorf("inputs[%d]: %w", i, err)
		}
		switch {
		case batch == -1:
			batch = t.Shape[0]
		case t.Shape[0] != batch:
			return nil, 0, "", fmt.Errorf("inputs[%d]: batch dimension %d, inputs[0] has %d", i, t.Shape[0], batch)
		}
		r.rows = append(r.rows, data)
		params, _ := json.Marshal(t.Parameters)
		fmt.Fprintf(&key, "|%q %q %v %t %s", t.Name, t.Datatype, t.Shape[1:], nested(data), params)
	}
	if batch > 1<<20 {
		return nil, 0, "", fmt.Errorf("batch dimension %d is too large", batch)
	}
	return r, int(batch), key.String(), nil
}

func (kserveV2) merge(members []*member) ([]byte, error) {
	first := members[0].parsed.(*v2Request)
	inputs := make([]v2Tensor, len(first.inputs))
	for i, t := range first.inputs {
		var data bytes.Buffer
		data.WriteByte('[')
		n := 0
		for _, m := range members {
			for _, e := range m.parsed.(*v2Request).rows[i] {
				if n > 0 {
					data.WriteByte(',')
				}
				data.Write(e)
				n++
			}
		}
		data.WriteByte(']')
		t.Shape = append([]int64(nil), t.Shape...)
		t.Shape[0] = 0
		for _, m := range members {
			t.Shape[0] += int64(m.items)
		}
		t.Data = data.Bytes()
		inputs[i] = t
	}
	in, err := json.Marshal(inputs)
	if err != nil {
		return nil, err
	}
	o, err := put(first.rest, []string{"inputs"}, in)
	if err != nil {
		return nil, err
	}
	return json.Marshal(o)
}

func (kserveV2) split(body []byte, members []*member) ([][]byte, error) {
	o, err := decodeObject(body)
	if err != nil {
		return nil, err
	}
	raw, ok := o["outputs"]
	if !ok {
		return nil, errors.New("no outputs")
	}
	var outputs []v2Tensor
	if err := json.Unmarshal(raw, &outputs); err != nil {
		return nil, fmt.Errorf("outputs: %w", err)
	}
	total := int64(0)
	for _, m := range members {
		total += int64(m.items)
	}
	// Per output, its data and how many elements one item takes.
	data := make([][]json.RawMessage, len(outputs))
	per := make([]int64, len(outputs))
	for i := range outputs {
		t := &outputs[i]
		if len(t.Shape) == 0 || t.Shape[0] != total {
			return nil, fmt.Errorf("outputs[%d]: shape %v does not have the batch's %d rows first", i, t.Shape, total)
		}
		if data[i], err = elements(t); err != nil {
			return nil, fmt.Errorf("outputs[%d]: %w", i, err)
		}
		per[i] = int64(len(data[i])) / total
	}
	out := make([][]byte, len(members))
	var off int64
	for k, m := range members {
		n := int64(m.items)
		mine := make([]v2Tensor, len(outputs))
		for i, t := range outputs {
			t.Shape = append([]int64(nil), t.Shape...)
			t.Shape[0] = n
			var buf bytes.Buffer
			buf.WriteByte('[')
			for j, e := range data[i][off*per[i] : (off+n)*per[i]] {
				if j > 0 {
					buf.WriteByte(',')
				}
				buf.Write(e)
			}
			buf.WriteByte(']')
			t.Data = buf.Bytes()
			mine[i] = t
		}
		enc, err := json.Marshal(mine)
		if err != nil {
			return nil, err
		}
		mo, err := put(o, []string{"outputs"}, enc)
		if err != nil {
			return nil, err
		}
		delete(mo, "id")
		if id := m.parsed.(*v2Request).id; id != nil {
			mo["id"] = id
		}
		if out[k], err = json.Marshal(mo); err != nil {
			return nil, err
		}
		off += n
	}
	return out, nil
}
