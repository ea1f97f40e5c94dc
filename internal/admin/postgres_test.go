package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/penstock-dev/penstock/internal/admin"
)

// GET /postgres shows what the proxy reports, and 404 without a proxy.
func TestPostgresView(t *testing.T) {
	for _, tc := range []struct {
		name   string
		state  func() any
		status int
	}{
		{"proxy running", func() any { return map[string]any{"clients": 3, "pools": []any{}} }, http.StatusOK},
		{"no postgres section", func() any { return nil }, http.StatusNotFound},
		{"no hook", nil, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(admin.Handler(admin.Options{Postgres: tc.state}))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/postgres")
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
			if tc.status == http.StatusOK && v["clients"] != float64(3) {
				t.Errorf("body = %s", body)
			}
		})
	}
}
