package demo

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"time"
)

// BatchedModel is the demo backend's model whose cost is per batch, not per
// item, as a GPU's is: a request of n instances takes BatchBaseCost +
// n × BatchItemCost, and the backend runs one request of this model at a
// time (the rest wait in arrival order). It speaks KServe v1 (instances →
// predictions), so a route with batch: {format: kserve_v1} in front of it
// turns many small requests into few large ones.
const BatchedModel = "encoder"

// The batched model's costs.
const (
	BatchBaseCost = 20 * time.Millisecond
	BatchItemCost = 500 * time.Microsecond
)

// batchedSlot serializes the batched model: one request at a time per
// backend, like one model instance on one GPU.
type batchedSlot struct {
	once sync.Once
	ch   chan struct{}
}

func (s *batchedSlot) get() chan struct{} {
	s.once.Do(func() { s.ch = make(chan struct{}, 1) })
	return s.ch
}

// infer serves POST /v1/batched/{model}/infer and /v1/queued/{model}/infer: {"instances": [x, ...]}
// → {"predictions": [...]}, one prediction per instance (the sum of its
// numbers).
func (b *Backend) infer(w http.ResponseWriter, r *http.Request) {
	if model := r.PathValue("model"); model != BatchedModel {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "unknown model", "model": model})
		return
	}
	var req struct {
		Instances []json.RawMessage `json:"instances"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&req); err != nil || len(req.Instances) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "body must be JSON like {\"instances\": [[1, 2], [3, 4]]}"})
		return
	}
	preds := make([]float64, len(req.Instances))
	for i, in := range req.Instances {
		var v float64
		var vs []float64
		switch {
		case json.Unmarshal(in, &v) == nil:
			preds[i] = v
		case json.Unmarshal(in, &vs) == nil:
			for _, x := range vs {
				preds[i] += x
			}
		default:
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "each instance must be a number or a list of numbers", "instance": i})
			return
		}
	}
	slot := b.slot.get()
	select {
	case slot <- struct{}{}:
	case <-r.Context().Done():
		return
	}
	cost := BatchBaseCost + time.Duration(len(req.Instances))*BatchItemCost
	select {
	case <-time.After(cost):
	case <-r.Context().Done():
	}
	<-slot
	if r.Context().Err() != nil {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"model": BatchedModel, "predictions": preds})
}
