package admin_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestAdminUpstreamsProtection checks that /upstreams and /metrics show
// active health, breakers and ejection state once a config has them.
func TestAdminUpstreamsProtection(t *testing.T) {
	next := `listeners: [{name: main, address: "127.0.0.1:0"}]
upstreams:
  - name: up
    endpoints: [{address: "127.0.0.1:9"}]
    health_check: {type: tcp, interval: 20ms, timeout: 1s, fall: 1, slow_start: 10s}
    outlier_detection: {}
    circuit_breaker: {}
routes: [{name: r, match: {path: /}, upstream: up}]
admin: {token: ` + secret + `}
`
	srv := newAdmin(t, secret, &next)
	if status, body := call(t, "POST", srv.URL+"/config/reload", secret); status != 200 {
		t.Fatalf("reload: %d %s", status, body)
	}
	type view struct {
		Upstreams []struct {
			CircuitBreaker *struct{ State string } `json:"circuit_breaker"`
			Endpoints      []struct {
				Protection *struct {
					HealthCheck *struct {
						Up        bool
						LastCheck *struct {
							Passed bool
							Error  string
						} `json:"last_check"`
					} `json:"health_check"`
					CircuitBreaker *struct{ State string } `json:"circuit_breaker"`
					TimesEjected   *int                    `json:"times_ejected"`
					SlowStartShare float64                 `json:"slow_start_share"`
				}
			}
		}
	}
	var v view
	var body string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, body = call(t, "GET", srv.URL+"/upstreams", "")
		v = view{}
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Fatal(err)
		}
		if len(v.Upstreams) == 1 && len(v.Upstreams[0].Endpoints) == 1 {
			if p := v.Upstreams[0].Endpoints[0].Protection; p != nil && p.HealthCheck != nil && !p.HealthCheck.Up {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the closed port never went down: %s", body)
		}
	}
	u := v.Upstreams[0]
	p := u.Endpoints[0].Protection
	if u.CircuitBreaker == nil || u.CircuitBreaker.State != "closed" || p.CircuitBreaker == nil || p.CircuitBreaker.State != "closed" ||
		p.TimesEjected == nil || p.SlowStartShare != 1 || p.HealthCheck.LastCheck == nil || p.HealthCheck.LastCheck.Passed ||
		!strings.Contains(p.HealthCheck.LastCheck.Error, "refused") {
		t.Errorf("unexpected /upstreams: %s", body)
	}
	_, metrics := call(t, "GET", srv.URL+"/metrics", "")
	for _, want := range []string{
		`penstock_upstream_health_checks_total{endpoint="127.0.0.1:9",result="failed",upstream="up"}`,
		`penstock_upstream_endpoint_up{endpoint="127.0.0.1:9",upstream="up"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, grep(metrics, "penstock_upstream_"))
		}
	}
}
