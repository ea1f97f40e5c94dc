package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/penstock-dev/penstock/internal/admin"
)

// GET /config/source shows the configuration source's state, 404 when the
// configuration is a file, and needs the token off loopback like the other
// reads.
func TestConfigSourceView(t *testing.T) {
	state := func() any {
		return map[string]any{"source": "etcd://127.0.0.1:2379/p", "served": map[string]any{"revision": 42}}
	}
	for _, tc := range []struct {
		name          string
		state         func() any
		tokenForReads bool
		auth          string
		status        int
	}{
		{name: "source", state: state, status: http.StatusOK},
		{name: "file", state: func() any { return nil }, status: http.StatusNotFound},
		{name: "no hook", status: http.StatusNotFound},
		{name: "off loopback without token", state: state, tokenForReads: true, status: http.StatusUnauthorized},
		{name: "off loopback with token", state: state, tokenForReads: true, auth: "Bearer t", status: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(admin.Handler(admin.Options{ConfigSource: tc.state, Token: "t", TokenForReads: tc.tokenForReads}))
			defer srv.Close()
			req, _ := http.NewRequest("GET", srv.URL+"/config/source", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var v map[string]any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("body is not JSON: %s", body)
			}
			if tc.status == http.StatusOK && v["served"].(map[string]any)["revision"] != float64(42) {
				t.Errorf("body %s", body)
			}
		})
	}
}

// GET /config/source/nodes lists the fleet, 502 when the source cannot,
// 404 without a source.
func TestConfigNodesView(t *testing.T) {
	for _, tc := range []struct {
		name   string
		nodes  func(context.Context) (any, error)
		status int
	}{
		{"listed", func(context.Context) (any, error) { return map[string]any{"revision": 7, "nodes": []any{}}, nil }, http.StatusOK},
		{"etcd unreachable", func(context.Context) (any, error) { return nil, errors.New("etcd: context deadline exceeded") }, http.StatusBadGateway},
		{"no source", nil, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(admin.Handler(admin.Options{ConfigNodes: tc.nodes}))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/config/source/nodes")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !json.Valid(body) {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
		})
	}
}
