package pipeline

import (
	"slices"
	"strings"
	"testing"

	"github.com/penstock-dev/penstock/internal/exchange"
)

func TestCORSSettingsErrors(t *testing.T) {
	tests := []struct {
		name   string
		fields string // appended to the route; its first line is line 7
		want   []string
	}{
		{name: "valid", fields: `    cors: {allow_origins: ["https://app.example.com", "http://127.0.0.1:8080"], allow_headers: [x-grpc-web, content-type], max_age: 1h}
`},
		{name: "any origin", fields: `    cors: {allow_origins: ["*"]}
`},
		{name: "no origins", fields: `    cors: {max_age: 1m}
`, want: []string{`routes[0].cors.allow_origins (line 7): is required: the origins whose pages may call the route, or "*"`}},
		{name: "origins that are not origins", fields: `    cors:
      allow_origins: [app.example.com, "https://app.example.com/", "https://app.example.com/ui", "ftp://x"]
`, want: []string{
			`routes[0].cors.allow_origins[0] (line 8): "app.example.com" is not an origin: want http://host or https://host[:port]`,
			`routes[0].cors.allow_origins[1] (line 8): "https://app.example.com/" has a trailing slash; browsers send the origin without one`,
			`routes[0].cors.allow_origins[2] (line 8): "https://app.example.com/ui" is not an origin: only scheme://host[:port], no path`,
			`routes[0].cors.allow_origins[3] (line 8): "ftp://x" is not an origin: want http://host or https://host[:port]`,
		}},
		{name: "any origin with credentials", fields: `    cors: {allow_origins: ["*"], allow_credentials: true}
`, want: []string{`routes[0].cors.allow_origins[0] (line 7): "*" cannot be combined with allow_credentials: name the origins`}},
		{name: "bad field names and age", fields: `    cors: {allow_origins: ["*"], allow_headers: ["x y"], expose_headers: ["a:b"], max_age: -1s}
`, want: []string{
			`routes[0].cors.max_age (line 7): invalid duration "-1s": must not be negative`,
			`routes[0].cors.allow_headers[0] (line 7): "x y" is not a field name`,
			`routes[0].cors.expose_headers[0] (line 7): "a:b" is not a field name`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := parseRoute(t, tt.fields)
			if got := errorLines(Standard().Check(cfg)); !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestCORS checks the stage's answers: preflights answered and never
// forwarded, the response fields of allowed requests, and nothing for
// other origins or requests without Origin.
func TestCORS(t *testing.T) {
	named := &RouteCORS{AllowOrigins: []string{"https://app.example.com"}, ExposeHeaders: []string{"grpc-status", "x-head"}}
	fixed := &RouteCORS{AllowOrigins: []string{"https://app.example.com"}, AllowHeaders: []string{"content-type", "x-grpc-web"}, AllowCredentials: true}
	anyOrigin := &RouteCORS{AllowOrigins: []string{"*"}}
	tests := []struct {
		name      string
		policy    *RouteCORS
		method    string
		headers   [][2]string
		forwarded bool
		status    int               // the stage's own answer, when not forwarded
		want      map[string]string // response fields; "" means absent
	}{
		{
			name: "preflight from an allowed origin", policy: named, method: "OPTIONS",
			headers: [][2]string{{"Origin", "https://app.example.com"}, {"Access-Control-Request-Method", "POST"},
				{"Access-Control-Request-Headers", "content-type,x-grpc-web,x-user-agent"}},
			status: 204,
			want: map[string]string{"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Allow-Methods": "POST",
				"Access-Control-Allow-Headers": "content-type,x-grpc-web,x-user-agent", "Access-Control-Max-Age": "600",
				"Vary": "Origin, Access-Control-Request-Headers", "Access-Control-Allow-Credentials": "", "Content-Length": "0"},
		},
		{
			name: "preflight with the origin in another case", policy: named, method: "OPTIONS",
			headers: [][2]string{{"Origin", "https://APP.example.com"}, {"Access-Control-Request-Method", "POST"}},
			status:  204,
			want:    map[string]string{"Access-Control-Allow-Origin": "https://APP.example.com", "Access-Control-Allow-Headers": ""},
		},
		{
			name: "preflight with fixed headers and credentials", policy: fixed, method: "OPTIONS",
			headers: [][2]string{{"Origin", "https://app.example.com"}, {"Access-Control-Request-Method", "PUT"}, {"Access-Control-Request-Headers", "x-other"}},
			status:  204,
			want: map[string]string{"Access-Control-Allow-Headers": "content-type, x-grpc-web", "Access-Control-Allow-Methods": "PUT",
				"Access-Control-Allow-Credentials": "true", "Vary": "Origin"},
		},
		{
			name: "preflight from another origin gets no access", policy: named, method: "OPTIONS",
			headers: [][2]string{{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}},
			status:  204,
			want:    map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Vary": "Origin"},
		},
		{
			name: "call from an allowed origin", policy: named, method: "POST",
			headers:   [][2]string{{"Origin", "https://app.example.com"}},
			forwarded: true,
			want: map[string]string{"Access-Control-Allow-Origin": "https://app.example.com", "Access-Control-Expose-Headers": "grpc-status, x-head",
				"Vary": "Origin", "Access-Control-Allow-Methods": ""},
		},
		{
			name: "call from any origin", policy: anyOrigin, method: "POST",
			headers:   [][2]string{{"Origin", "https://elsewhere.example"}},
			forwarded: true,
			want:      map[string]string{"Access-Control-Allow-Origin": "*", "Vary": ""},
		},
		{
			name: "call from another origin is forwarded without access", policy: named, method: "POST",
			headers:   [][2]string{{"Origin", "https://evil.example"}},
			forwarded: true,
			want:      map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Expose-Headers": ""},
		},
		{
			name: "request without Origin passes untouched", policy: named, method: "POST",
			forwarded: true,
			want:      map[string]string{"Access-Control-Allow-Origin": "", "Vary": ""},
		},
		{
			name: "OPTIONS that is no preflight is forwarded", policy: named, method: "OPTIONS",
			headers:   [][2]string{{"Origin", "https://app.example.com"}},
			forwarded: true,
			want:      map[string]string{"Access-Control-Allow-Origin": "https://app.example.com"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &CORSSettings{CORS: tt.policy}
			s.SetDefaults()
			forwarded := false
			h, err := newCORS(s, nil, exchange.HandlerFunc(func(x *exchange.Exchange) {
				forwarded = true
				x.W.WriteHeader(200)
			}))
			if err != nil {
				t.Fatal(err)
			}
			if !AnswersPreflights(h) {
				t.Error("AnswersPreflights is false for a cors stage")
			}
			x, rec := newExchange(t, tt.method)
			for _, kv := range tt.headers {
				x.Req.Header.Add(kv[0], kv[1])
			}
			h.ServeExchange(x)
			if forwarded != tt.forwarded {
				t.Fatalf("forwarded %v, want %v", forwarded, tt.forwarded)
			}
			if !tt.forwarded && (len(rec.Statuses) != 1 || rec.Statuses[0] != tt.status || x.State.Status != tt.status) {
				t.Errorf("statuses %v (state %d), want %d", rec.Statuses, x.State.Status, tt.status)
			}
			for name, want := range tt.want {
				got := strings.Join(headerValues(&rec.Hdr, name), ", ")
				if got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
		})
	}
	if AnswersPreflights(exchange.HandlerFunc(func(*exchange.Exchange) {})) {
		t.Error("AnswersPreflights is true for another handler")
	}
}
